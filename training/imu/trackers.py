"""IMU trackers on simulated walks: a NObLe tracker (a GRU classifying the cell at every 1 s window)
against a coordinate-regression GRU (same network, MSE on the position) and dead reckoning.

Inputs per window, the same for both networks: the raw 50 Hz accelerometer and gyroscope samples of
the window (gravity removed from z), the PDR position and heading at the window's end (a deterministic
function of the IMU, see ``training.imu.pdr``), and, as conditioning, the known start position and
heading. Positions enter as floor-centred metres / 50 plus a sinusoidal encoding at wavelengths 2-128 m,
so a network can represent functions of place as fine as a corridor. The NObLe tracker's classes are
2 m cells of the walkable graph (``training.noble.model.CellGrid`` over points along every edge) of the
walker's floor; it decodes the probability-weighted mean of the top-k cells of that floor.

No parameter belongs to a floor or a cell: a cell's logit is a learned query (from the GRU state)
dotted with the cell centre's position encoding, minus a learned prior on its distance to the PDR
position. The trackers can therefore run on floors they never saw in training, given the floor's
graph (as the map-aware particle filter of ``training.imu.mapmatch`` is given it): the results train
on walks of some floors and test on walks of held-out floors. Each batch holds walks of one floor, so
only that floor's cells are scored.

A first version without the PDR anchor (the networks had to integrate position from raw IMU alone)
learned little within a CPU budget of minutes; both networks now refine PDR (``TrackerNet``).

``anchored`` swaps the position the networks refine: with the map-matched track of
``training.imu.mapmatch`` in place of PDR, the NObLe tracker's cell prior is centred on the filter's
estimate (and ``TrackerConfig.shift`` lets it learn a displacement of that centre). The other way
round, ``Tracker.probabilities`` gives the cell probabilities the hybrid filter
(``training.imu.mapmatch.CellEvidence``) multiplies into its particle weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.imu.pdr import PdrConfig, dead_reckon
from training.imu.simulator import GRAVITY, FloorGraph, Trajectory
from training.noble.model import CellGrid

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
POSITION_SCALE_M = 50.0  # positions and displacements enter the networks divided by this
WAVELENGTHS_M = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
POSITION_FEATURES = 2 + 4 * len(WAVELENGTHS_M)


def encode_position(xy: FloatArray) -> npt.NDArray[np.float32]:
    """Floor-centred positions [..., 2] -> [..., 30]: xy / 50 m, sin and cos at each wavelength."""
    angles = 2 * np.pi * xy[..., None, :] / np.asarray(WAVELENGTHS_M)[:, None]  # (..., L, 2)
    flat = angles.reshape(*xy.shape[:-1], -1)
    return np.concatenate([xy / POSITION_SCALE_M, np.sin(flat), np.cos(flat)], axis=-1).astype(np.float32)


class TrackerHead(StrEnum):
    """What the sequence model outputs."""

    CELLS = "cells"
    COORDINATES = "coordinates"


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker network and training settings.

    Args:
        window_s: seconds of IMU per sequence step.
        cell_size_m: NObLe cell side.
        hidden: GRU width.
        epochs: passes over the training walks.
        batch_size: walks per step (all from one floor).
        lr: Adam learning rate.
        top_k: cells averaged when decoding.
        seed: initialisation and batch order.
        shift: cells head only: add a learned shift of the prior's centre (``TrackerNet``).
    """

    window_s: float = 1.0
    cell_size_m: float = 2.0
    hidden: int = 128
    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    top_k: int = 4
    seed: int = 0
    shift: bool = False

    def __post_init__(self) -> None:
        if not self.window_s > 0 or not self.cell_size_m > 0 or not self.lr > 0:
            raise ValueError("window, cell size and lr must be positive")
        if min(self.hidden, self.epochs, self.batch_size, self.top_k) < 1:
            raise ValueError("hidden, epochs, batch size and top_k must be >= 1")


@dataclass(frozen=True)
class WalkSet:
    """Walks cut into windows.

    Args:
        imu: float32 [N, W, 6 * samples] window signals.
        pdr_features: float32 [N, W, 32] encoded PDR position (floor-centred), cos and sin of its heading.
        condition: float32 [N, 32] encoded start position (floor-centred), cos and sin of the start heading.
        floor: int64 [N] index into the graph list.
        start: [N, 2] start position (m).
        position: [N, W, 2] true position at each window's end.
        pdr: [N, W, 2] PDR position at each window's end.
        distance: [N, W] distance walked at each window's end.
    """

    imu: npt.NDArray[np.float32]
    pdr_features: npt.NDArray[np.float32]
    condition: npt.NDArray[np.float32]
    floor: npt.NDArray[np.int64]
    start: FloatArray
    position: FloatArray
    pdr: FloatArray
    distance: FloatArray


def make_walkset(walks: list[Trajectory], graphs: list[FloorGraph], config: TrackerConfig,
                 pdr_config: PdrConfig) -> WalkSet:
    """Windows, PDR tracks and targets of ``walks`` (all of the same duration)."""
    floor_of = {g.building_floor: i for i, g in enumerate(graphs)}
    samples = round(config.window_s * pdr_config.rate_hz)
    columns: dict[str, list[npt.NDArray[np.generic]]] = {k: [] for k in WalkSet.__dataclass_fields__}
    for walk in tqdm(walks, desc="PDR + windows", unit="walk", leave=False):
        count = len(walk.accel) // samples
        ends = np.arange(1, count + 1) * samples - 1
        pdr, pdr_heading = dead_reckon(walk.accel, walk.gyro, walk.position[0], float(walk.heading[0]),
                                       pdr_config)
        signals = np.concatenate([walk.accel - [0.0, 0.0, GRAVITY], walk.gyro], axis=1)[:count * samples]
        floor = floor_of[walk.building_floor]
        centre = graphs[floor].nodes.mean(axis=0)
        columns["imu"].append(signals.reshape(count, samples * 6).astype(np.float32))
        pdr_direction = np.stack([np.cos(pdr_heading[ends]), np.sin(pdr_heading[ends])], axis=1)
        columns["pdr_features"].append(
            np.concatenate([encode_position(pdr[ends] - centre), pdr_direction], axis=1).astype(np.float32))
        columns["condition"].append(np.concatenate(
            [encode_position(walk.position[0] - centre),
             [np.cos(walk.heading[0]), np.sin(walk.heading[0])]]).astype(np.float32))
        columns["floor"].append(np.asarray(floor, dtype=np.int64))
        columns["start"].append(walk.position[0])
        columns["position"].append(walk.position[ends])
        columns["pdr"].append(pdr[ends])
        columns["distance"].append(walk.distance[ends])
    return WalkSet(**{k: np.stack(v) for k, v in columns.items()})


def anchored(walks: WalkSet, positions: FloatArray, graphs: list[FloorGraph]) -> WalkSet:
    """The same walks with the position estimate the networks refine (``WalkSet.pdr`` and the encoded
    position in ``pdr_features``) replaced by ``positions`` [N, W, 2], e.g. the map-matched track of
    ``training.imu.mapmatch``; the PDR heading features are kept."""
    if positions.shape != walks.pdr.shape:
        raise ValueError(f"positions {positions.shape} do not match the walks {walks.pdr.shape}")
    centres = np.stack([graphs[int(f)].nodes.mean(axis=0) for f in walks.floor])[:, None, :]  # (N, 1, 2)
    features = walks.pdr_features.copy()
    features[..., :POSITION_FEATURES] = encode_position(positions - centres)
    return replace(walks, pdr=np.asarray(positions, dtype=np.float64), pdr_features=features)


class FloorCells:
    """The NObLe tracker's classes: ``cell_size_m`` cells along the edges of every floor graph.

    Args:
        graphs: the floors, in walk-set order.
        cell_size_m: cell side.
    """

    def __init__(self, graphs: list[FloorGraph], cell_size_m: float) -> None:
        grids = [CellGrid.fit(g.edge_points(), np.full(len(g.edge_points()), i), cell_size_m)[0]
                 for i, g in enumerate(graphs)]
        self.centres = [g.centres for g in grids]
        self.keys = [encode_position(g.centres - graph.nodes.mean(axis=0)) for g, graph in zip(grids, graphs,
                                                                                               strict=True)]
        self.offsets = np.concatenate([[0], np.cumsum([len(g) for g in grids])])

    @property
    def total(self) -> int:
        return int(self.offsets[-1])

    def labels(self, floor: int, positions: FloatArray) -> npt.NDArray[np.int64]:
        """Global class of the cell whose centre is nearest to each position [..., 2]."""
        flat = positions.reshape(-1, 2)
        distance = np.linalg.norm(flat[:, None, :] - self.centres[floor][None, :, :], axis=2)
        return (distance.argmin(axis=1) + self.offsets[floor]).reshape(positions.shape[:-1])


class TrackerNet(nn.Module):
    """Window encoder + GRU + a head that refines the PDR estimate.

    Cells head (NObLe): the logit of cell c is ``q(h) . enc(c) - w * d^2`` (q: a linear query of the GRU
    state, enc: the floor-centred position encoding of the cell centre, d: distance from the cell centre
    to the PDR position in units of 10 m, w >= 0 learned). Coordinates head: PDR displacement / 50 m
    plus a learned correction. Both networks thus start from dead reckoning and learn what the map and
    the signals add; neither has a per-floor or per-cell parameter.

    Args:
        window_features: values per window of IMU signal.
        hidden: GRU width.
    """

    def __init__(self, window_features: int, hidden: int, shift: bool = False) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(window_features, 64), nn.ReLU())
        inputs = 64 + 2 * (POSITION_FEATURES + 2)
        self.project = nn.Sequential(nn.Linear(inputs, 128), nn.ReLU())
        self.gru = nn.GRU(128, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)
        self.query = nn.Linear(hidden, POSITION_FEATURES)
        self.prior_weight = nn.Parameter(torch.tensor(1.0))
        self.shift = nn.Linear(hidden, 2) if shift else None

    def forward(self, imu: torch.Tensor, pdr: torch.Tensor, condition: torch.Tensor, base: torch.Tensor,
                keys: torch.Tensor | None = None, centres: torch.Tensor | None = None) -> torch.Tensor:
        """[B, W, ...] windows -> [B, W, 2] (coordinates) or [B, W, C] cell logits.

        ``base`` is the PDR position [B, W, 2] in metres (cells head, with the floor's cell ``keys``
        [C, 30] (encoded centres) and ``centres`` [C, 2]) or the PDR displacement / 50 m (coordinates).
        """
        steps = imu.shape[1]
        x = torch.cat([self.encoder(imu), pdr, condition[:, None, :].expand(-1, steps, -1)], dim=2)
        hidden, _ = self.gru(self.project(x))  # (B, W, H)
        if keys is None or centres is None:
            return base + self.head(hidden)
        offset = (centres[None, None, :, :] - base[:, :, None, :]) / 10.0  # (B, W, C, 2)
        logits = self.query(hidden) @ keys.T - F.softplus(self.prior_weight) * offset.pow(2).sum(dim=3)
        if self.shift is not None:  # a learned displacement of the prior's centre (see the class docstring)
            logits = logits + (offset * self.shift(hidden)[:, :, None, :]).sum(dim=3)
        return logits


def _floor_batches(floors: npt.NDArray[np.int64], batch_size: int,
                   rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    """Shuffled batches of walk indices, each from one floor."""
    batches = []
    for floor in np.unique(floors):
        members = rng.permutation(np.flatnonzero(floors == floor))
        batches += [members[i:i + batch_size] for i in range(0, len(members), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class Tracker:
    """Trains a ``TrackerNet`` on simulated walks and predicts positions along new ones.

    Args:
        head: cells (NObLe) or coordinates (regression with MSE).
        graphs: the floors.
        config: network and training settings.

    Example:
        >>> tracker = Tracker(TrackerHead.CELLS, graphs, TrackerConfig()).fit(train_walks)  # doctest: +SKIP
        >>> tracker.predict(test_walks).shape  # doctest: +SKIP
    """

    def __init__(self, head: TrackerHead, graphs: list[FloorGraph], config: TrackerConfig) -> None:
        self.head = TrackerHead(head)
        self.graphs = graphs
        self.config = config
        self.cells = FloorCells(graphs, config.cell_size_m)
        self.centres = [torch.tensor(c, dtype=torch.float32) for c in self.cells.centres]
        self.keys = [torch.from_numpy(k) for k in self.cells.keys]
        self.net: TrackerNet | None = None

    def _forward(self, walks: WalkSet, index: npt.NDArray[np.int64], floor: int) -> torch.Tensor:
        assert self.net is not None
        inputs = (torch.from_numpy(walks.imu[index]), torch.from_numpy(walks.pdr_features[index]),
                  torch.from_numpy(walks.condition[index]))
        if self.head is TrackerHead.COORDINATES:
            base = (walks.pdr[index] - walks.start[index][:, None, :]) / POSITION_SCALE_M
            return self.net(*inputs, base=torch.from_numpy(base.astype(np.float32)))
        return self.net(*inputs, base=torch.from_numpy(walks.pdr[index].astype(np.float32)),
                        keys=self.keys[floor], centres=self.centres[floor])

    def _loss(self, output: torch.Tensor, walks: WalkSet, index: npt.NDArray[np.int64],
              floor: int) -> torch.Tensor:
        if self.head is TrackerHead.CELLS:
            labels = self.cells.labels(floor, walks.position[index]) - self.cells.offsets[floor]
            return F.cross_entropy(output.flatten(0, 1), torch.from_numpy(labels).flatten())
        target = (walks.position[index] - walks.start[index][:, None, :]) / POSITION_SCALE_M
        return F.mse_loss(output, torch.from_numpy(target.astype(np.float32)))

    def fit(self, walks: WalkSet) -> Tracker:
        config = self.config
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        self.net = net = TrackerNet(walks.imu.shape[2], config.hidden, config.shift)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
        batches_per_epoch = len(_floor_batches(walks.floor, config.batch_size, rng))
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                       total_steps=config.epochs * batches_per_epoch + 1)
        with tqdm(total=config.epochs * batches_per_epoch, desc=f"{self.head.value} tracker", unit="step",
                  leave=False) as bar:
            for _ in range(config.epochs):
                for index in _floor_batches(walks.floor, config.batch_size, rng):
                    floor = int(walks.floor[index[0]])
                    loss = self._loss(self._forward(walks, index, floor), walks, index, floor)
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    optimizer.step()
                    schedule.step()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
        net.eval()
        return self

    @torch.no_grad()
    def probabilities(self, walks: WalkSet) -> list[FloatArray]:
        """The NObLe tracker's cell probabilities per walk: [W, C] over the cells of the walk's floor
        (``self.cells.centres[floor]``), at each window's end."""
        if self.net is None or self.head is not TrackerHead.CELLS:
            raise RuntimeError("cell probabilities need a fitted cells (NObLe) tracker")
        result: list[FloatArray] = [np.empty((0, 0))] * len(walks.floor)
        for floor in np.unique(walks.floor):
            index = np.flatnonzero(walks.floor == floor)
            probs = torch.softmax(self._forward(walks, index, int(floor)), dim=2).double().numpy()
            for k, i in enumerate(index):
                result[i] = probs[k]
        return result

    @torch.no_grad()
    def predict(self, walks: WalkSet) -> FloatArray:
        """Positions [N, W, 2] at each window's end."""
        if self.net is None:
            raise RuntimeError("fit the tracker before predicting")
        result = np.zeros_like(walks.position)
        for floor in np.unique(walks.floor):
            index = np.flatnonzero(walks.floor == floor)
            output = self._forward(walks, index, int(floor))
            if self.head is TrackerHead.COORDINATES:
                result[index] = walks.start[index][:, None, :] + output.double().numpy() * POSITION_SCALE_M
                continue
            top, cells = torch.topk(torch.softmax(output, dim=2), self.config.top_k, dim=2)  # (B, W, k)
            weights = top / top.sum(dim=2, keepdim=True)
            result[index] = (weights[..., None] * self.centres[int(floor)][cells]).sum(dim=2).double().numpy()
        return result


def error_by_distance(predicted: FloatArray, walks: WalkSet, marks_m: tuple[float, ...]) -> dict[str, float]:
    """Mean error over all windows (``mean``) and at the first window past each distance mark."""
    error = np.linalg.norm(predicted - walks.position, axis=2)  # (N, W)
    result = {"mean": float(error.mean())}
    for mark in marks_m:
        first = np.argmax(walks.distance >= mark, axis=1)
        reached = walks.distance[np.arange(len(first)), first] >= mark
        result[f"at_{mark:g}m"] = float(error[np.arange(len(first)), first][reached].mean())
    return result
