"""NObLe (Neighbor Oblivious Learning) for WiFi fingerprints: classify an RSSI vector into fine cells.

The output space (longitude, latitude of every building-floor) is quantized into square cells of one or
several sizes (``cell_sizes``); only cells holding training reference points exist, so every class lies
on the manifold of places people were measured. A network classifies an RSSI vector into the cells of
each resolution (cross-entropy, no neighbourhood in the loss) beside building and floor heads; a
prediction is decoded back to coordinates by

- ``centre``: the centre of the most probable finest cell, or
- ``topk``: the probability-weighted mean of the centres of the ``top_k`` most probable cells of ALL
  building-floors, averaged over the resolutions.

A cell's centre is the mean of the training positions inside it (not the square's middle), which keeps
it on the walkable manifold. Building and floor come from the argmax of the building-floor marginal:
the cell probabilities summed per building-floor (mean over resolutions), multiplied by the building
and floor heads' probabilities.

Input preprocessing (inside the model, so the exported graph takes raw dBm): "not detected" (100) and
anything below -104 dBm become -104; x = ((rssi + 104) / 104) clipped to [0, 1] and raised to the power
``exponent`` (e by default: the "powed" representation, which stretches the strong, informative
readings and squashes the weak, noisy ones). With ``relative_db > 0`` a second, gain-free channel is
appended (``RelativeRssi``): each detected access point's level below the row's strongest one,
(rssi - max + relative_db) / relative_db clipped to [0, 1], 0 when not detected. A phone with another
antenna gain shifts every reading of a row by about the same dB; this channel does not move.

Coordinates inside the model are metres relative to ``origin`` (float32 is exact enough there; UTM
latitudes near 4.86e6 m are not: float32 spacing there is 0.5 m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from training.noble.decoding import FLOORS_PER_BUILDING, Decode, DecodeConfig, decode_xy

__all__ = ["FLOORS_PER_BUILDING", "NOT_DETECTED", "NUM_APS", "CellGrid", "Decode", "DecodeConfig",
           "NobleConfig", "NobleLocalizer", "NobleNet", "PowedRssi", "RelativeRssi", "powed_rssi"]

NUM_APS = 520
NOT_DETECTED = 100.0
FLOOR_DBM = -104.0


def powed_rssi(rssi: npt.NDArray[np.floating], exponent: float = math.e) -> npt.NDArray[np.float32]:
    """NumPy twin of ``PowedRssi``: raw dBm [N, 520] (100 = not seen) -> features in [0, 1]."""
    x = np.where(rssi == NOT_DETECTED, FLOOR_DBM, rssi)
    return (np.clip((x - FLOOR_DBM) / -FLOOR_DBM, 0.0, 1.0) ** exponent).astype(np.float32)


class PowedRssi(nn.Module):
    """Raw dBm (100 = not detected) -> ((rssi + 104) / 104) clipped to [0, 1], to the power ``exponent``.

    Args:
        exponent: the power (e in the powed representation).
    """

    def __init__(self, exponent: float = math.e) -> None:
        super().__init__()
        self.exponent = exponent

    def forward(self, rssi: torch.Tensor) -> torch.Tensor:
        x = torch.where(rssi == NOT_DETECTED, torch.full_like(rssi, FLOOR_DBM), rssi)
        return torch.clamp((x - FLOOR_DBM) / -FLOOR_DBM, 0.0, 1.0) ** self.exponent


class RelativeRssi(nn.Module):
    """Raw dBm (100 = not detected) -> every detected reading's level below the row's strongest one:
    (rssi - row max + span_db) / span_db clipped to [0, 1]; 0 when not detected (or when nothing is).

    Args:
        span_db: readings this far or farther below the strongest one become 0.
    """

    def __init__(self, span_db: float) -> None:
        super().__init__()
        if not span_db > 0:
            raise ValueError(f"span_db must be positive, got {span_db}")
        self.span_db = span_db

    def forward(self, rssi: torch.Tensor) -> torch.Tensor:
        seen = rssi != NOT_DETECTED
        level = torch.where(seen, rssi, torch.full_like(rssi, 2 * FLOOR_DBM))
        strongest = torch.amax(level, dim=1, keepdim=True)  # (B, 1)
        relative = torch.clamp((level - strongest + self.span_db) / self.span_db, 0.0, 1.0)
        return torch.where(seen, relative, torch.zeros_like(relative))


class RssiFeatures(nn.Module):
    """The network's input: powed RSSI [B, 520], and with ``relative_db > 0`` the ``RelativeRssi``
    channel after it [B, 1040].

    Args:
        exponent: power of the powed representation.
        relative_db: span of the relative channel (0: no relative channel).
    """

    def __init__(self, exponent: float, relative_db: float) -> None:
        super().__init__()
        self.powed = PowedRssi(exponent)
        self.relative = RelativeRssi(relative_db) if relative_db > 0 else None

    def forward(self, rssi: torch.Tensor) -> torch.Tensor:
        powed = self.powed(rssi)
        if self.relative is None:
            return powed
        return torch.cat([powed, self.relative(rssi)], dim=1)


@dataclass(frozen=True)
class CellGrid:
    """Occupied square cells of one size over every building-floor.

    Args:
        size: cell side in metres.
        centres: [C, 2] mean local (x, y) of the training positions in each cell.
        building_floor: [C] building * 5 + floor of each cell.
    """

    size: float
    centres: npt.NDArray[np.float64]
    building_floor: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if not self.size > 0:
            raise ValueError(f"cell size must be positive, got {self.size}")
        shape_ok = self.centres.ndim == 2 and self.centres.shape[1] == 2
        if not shape_ok or len(self.centres) != len(self.building_floor):
            raise ValueError("centres must be [C, 2] with one building_floor per cell")

    @staticmethod
    def fit(xy: npt.NDArray[np.float64], building_floor: npt.NDArray[np.int64],
            size: float) -> tuple[CellGrid, npt.NDArray[np.int64]]:
        """Cells of side ``size`` holding the training positions ``xy`` [N, 2]; also each row's cell label."""
        if not size > 0:
            raise ValueError(f"cell size must be positive, got {size}")
        ix = np.floor(xy / size).astype(np.int64)  # (N, 2)
        keys = np.stack([building_floor, ix[:, 0], ix[:, 1]], axis=1)
        unique, labels = np.unique(keys, axis=0, return_inverse=True)
        labels = labels.reshape(-1)
        counts = np.bincount(labels, minlength=len(unique))
        centres = np.zeros((len(unique), 2))
        np.add.at(centres, labels, xy)
        return CellGrid(size, centres / counts[:, None], unique[:, 0].copy()), labels

    def __len__(self) -> int:
        return len(self.centres)


@dataclass(frozen=True)
class NobleConfig:
    """Architecture of one NObLe network (saved with ``asdict`` in the checkpoint).

    Args:
        num_cells: classes per resolution (from the fitted ``CellGrid``s), finest first.
        hidden: widths of the hidden layers (each Linear + BatchNorm + ReLU + Dropout).
        dropout: dropout after each hidden layer.
        exponent: power of the powed input representation.
        num_buildings: building classes.
        top_k: cells averaged by the ``topk`` decode.
        relative_db: span of the gain-free ``RelativeRssi`` input channel (0: powed RSSI only).

    Example:
        >>> NobleConfig(num_cells=(700, 400)).hidden
        (512, 512)
    """

    num_cells: tuple[int, ...]
    hidden: tuple[int, ...] = (512, 512)
    dropout: float = 0.3
    exponent: float = math.e
    num_buildings: int = 3
    top_k: int = 4
    num_aps: int = field(default=NUM_APS)
    relative_db: float = 0.0

    def __post_init__(self) -> None:
        if not self.num_cells or min(self.num_cells) < 1:
            raise ValueError(f"num_cells must list >= 1 class per resolution, got {self.num_cells}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.exponent > 0:
            raise ValueError(f"exponent must be positive, got {self.exponent}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.relative_db < 0:
            raise ValueError(f"relative_db must be >= 0 (0: off), got {self.relative_db}")

    @property
    def input_width(self) -> int:
        """Features per row after preprocessing (520, or 1040 with the relative channel)."""
        return self.num_aps * (2 if self.relative_db > 0 else 1)


class NobleNet(nn.Module):
    """One NObLe classifier: powed RSSI (and the relative channel) -> MLP -> logits of cells (per
    resolution), building and floor.

    Args:
        config: the architecture.
    """

    def __init__(self, config: NobleConfig) -> None:
        super().__init__()
        self.config = config
        self.preprocess = RssiFeatures(config.exponent, config.relative_db)
        layers: list[nn.Module] = []
        width = config.input_width
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                       nn.Dropout(config.dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.cell_heads = nn.ModuleList(nn.Linear(width, n) for n in config.num_cells)
        self.building_head = nn.Linear(width, config.num_buildings)
        self.floor_head = nn.Linear(width, FLOORS_PER_BUILDING)

    def forward(self, rssi: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Raw dBm [B, 520] -> ([cell logits [B, C_r] per resolution], building [B, 3], floor [B, 5])."""
        hidden = self.body(self.preprocess(rssi))  # (B, H)
        return [head(hidden) for head in self.cell_heads], self.building_head(hidden), self.floor_head(hidden)


class NobleLocalizer(nn.Module):
    """An ensemble of ``NobleNet``s (probabilities averaged) with the cell tables needed to decode.

    ``forward`` is what is exported: raw dBm [B, 520] -> longitude, latitude (float32 [B]), floor,
    building (int64 [B]).

    Args:
        members: trained networks sharing one ``NobleConfig``.
        grids: the cell grids, one per resolution, in the order of ``num_cells``.
        origin: (longitude, latitude) of the local frame's zero.
        decode: how ``forward`` turns cell probabilities into coordinates (a bare ``Decode`` uses the
            config's ``top_k``, every resolution and no snapping).
    """

    def __init__(self, members: list[NobleNet], grids: list[CellGrid], origin: tuple[float, float],
                 decode: DecodeConfig | Decode = Decode.TOPK) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        config = members[0].config
        if tuple(len(g) for g in grids) != config.num_cells:
            raise ValueError(f"grids hold {[len(g) for g in grids]} cells, config says {config.num_cells}")
        self.config = config
        self.members = nn.ModuleList(members)
        self.grids = list(grids)
        self.cell_sizes = tuple(g.size for g in grids)
        self.decode = self.decode_config(decode)
        self.origin = (float(origin[0]), float(origin[1]))
        self.num_building_floors = config.num_buildings * FLOORS_PER_BUILDING
        for r, grid in enumerate(grids):
            self.register_buffer(f"centres_{r}", torch.tensor(grid.centres, dtype=torch.float32))
            onehot = np.eye(self.num_building_floors, dtype=np.float32)[grid.building_floor]
            self.register_buffer(f"cell_building_floor_{r}", torch.from_numpy(onehot))

    def decode_config(self, decode: DecodeConfig | Decode | str) -> DecodeConfig:
        """``decode`` as a full ``DecodeConfig`` (checked against this model's resolutions)."""
        if not isinstance(decode, DecodeConfig):
            kind = Decode(decode)  # building always snaps: beyond the finest cell
            decode = DecodeConfig(kind, top_k=self.config.top_k,
                                  snap_m=self.cell_sizes[0] if kind is Decode.BUILDING else None)
        if decode.cell_sizes is not None and not set(decode.cell_sizes) <= set(self.cell_sizes):
            raise ValueError(f"decode uses cell sizes {decode.cell_sizes}, the model has {self.cell_sizes}")
        return decode

    def centres(self, r: int) -> torch.Tensor:
        centres: torch.Tensor = getattr(self, f"centres_{r}")
        return centres

    def on_floor(self, r: int) -> torch.Tensor:
        onehot: torch.Tensor = getattr(self, f"cell_building_floor_{r}")
        return onehot

    def probabilities(self, rssi: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Mean member probabilities: ([cells [B, C_r] per resolution], building-floor [B, 15])."""
        cells: list[torch.Tensor] = [torch.zeros(0)] * len(self.cell_sizes)
        building_floor = torch.zeros(0)
        for i, member in enumerate(self.members):
            logits, building, floor = member(rssi)
            probs = [torch.softmax(x, dim=1) for x in logits]
            heads = torch.softmax(building, 1)[:, :, None] * torch.softmax(floor, 1)[:, None, :]  # (B, 3, 5)
            joint = heads.reshape(heads.shape[0], -1)  # (B, 15)
            if i == 0:
                cells, building_floor = probs, joint
            else:
                cells = [a + p for a, p in zip(cells, probs, strict=True)]
                building_floor = building_floor + joint
        scale = 1.0 / len(self.members)
        cells = [c * scale for c in cells]
        marginal = sum(c @ self.on_floor(r) for r, c in enumerate(cells))
        assert isinstance(marginal, torch.Tensor)
        return cells, building_floor * scale * marginal / len(cells)

    def local_xy(self, cells: list[torch.Tensor], building_floor: torch.Tensor,
                 decode: DecodeConfig | Decode) -> torch.Tensor:
        """Decoded local (x, y) [B, 2] from per-resolution cell probabilities and the predicted
        building-floor index [B]."""
        return decode_xy(cells, [self.centres(r) for r in range(len(cells))],
                         [self.on_floor(r) for r in range(len(cells))], building_floor, self.cell_sizes,
                         self.decode_config(decode))

    def predict(self, rssi: torch.Tensor, decode: DecodeConfig | Decode
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Local (x, y) float32 [B, 2], floor and building int64 [B] with the given decode."""
        cells, building_floor = self.probabilities(rssi)
        best = torch.argmax(building_floor, dim=1)
        return self.local_xy(cells, best, decode), best % FLOORS_PER_BUILDING, best // FLOORS_PER_BUILDING

    def forward(self, rssi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        xy, floor, building = self.predict(rssi, self.decode)
        longitude = (xy[:, 0].double() + self.origin[0]).float()
        latitude = (xy[:, 1].double() + self.origin[1]).float()
        return longitude, latitude, floor, building
