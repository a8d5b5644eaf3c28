"""Train a NObLe ensemble on UJIIndoorLoc, with device augmentation, and save/load its run directory.

Augmentation (for phones the training set never saw: the validation file has 9 unseen phone models)
acts on raw dBm before the powed preprocessing: every detected access point of a row is shifted by one
offset drawn uniformly from [-offset_db, offset_db] (a phone's gain differs), and each detected access
point is dropped (set to 100, not detected) with probability ``drop_prob`` (phones differ in
sensitivity and scan timing).

Checkpoint (``RUN_DIR/checkpoint.pt``, a ``torch.save`` of one dict, same top level as the DLRM one)::

    {"format_version": 1, "kind": "noble", "model_config": asdict(NobleConfig),
     "embedding": {"method": "none", "config": None, "hash": None, "arrays": {}},
     "state_dict": NobleLocalizer.state_dict(),    # members.{i}.*, centres_{r}, cell_building_floor_{r}
     "noble": {"members", "decode": DecodeConfig.to_dict(), "origin": [lon, lat],
               "grids": [{"size", "centres" [C, 2] float64, "building_floor" [C] int64}, ...]},
     "data": {"path", "dataset", "rows": {"train", "validation"}, "verify_rssi": float32 [256, 520]},
     "metrics": {...}, "train": asdict(NobleTrainConfig)}
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.noble.data import UjiSplit
from training.noble.metrics import Predictions
from training.noble.model import (
    FLOORS_PER_BUILDING,
    NOT_DETECTED,
    CellGrid,
    Decode,
    DecodeConfig,
    NobleConfig,
    NobleLocalizer,
    NobleNet,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


class NobleCheckpointError(ValueError):
    """A run directory without a NObLe checkpoint."""


@dataclass(frozen=True)
class NobleTrainConfig:
    """How to train a NObLe ensemble.

    Args:
        cell_sizes: cell sides in metres, finest first (one classification head each).
        members: networks in the ensemble (seeds ``seed .. seed + members - 1``).
        epochs: passes over the training rows per member.
        batch_size: rows per step.
        lr: peak Adam learning rate (one-cycle schedule).
        weight_decay: Adam weight decay.
        offset_db: half-width of the per-row RSSI offset augmentation (0: off).
        drop_prob: probability of dropping each detected access point (0: off).
        hidden: hidden layer widths.
        dropout: dropout after each hidden layer.
        top_k: cells averaged by the top-k decode.
        relative_db: span of the gain-free relative input channel (``training.noble.model.RelativeRssi``;
            0: powed RSSI only).
        seed: first member's seed.

    Example:
        >>> NobleTrainConfig(members=3).cell_sizes
        (2.0, 4.0, 8.0)
    """

    cell_sizes: tuple[float, ...] = (2.0, 4.0, 8.0)
    members: int = 5
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    offset_db: float = 8.0
    drop_prob: float = 0.2
    hidden: tuple[int, ...] = (512, 512)
    dropout: float = 0.3
    top_k: int = 4
    seed: int = 0
    relative_db: float = 0.0

    def __post_init__(self) -> None:
        if not self.cell_sizes or min(self.cell_sizes) <= 0:
            raise ValueError(f"cell sizes must be positive, got {self.cell_sizes}")
        if list(self.cell_sizes) != sorted(self.cell_sizes):
            raise ValueError(f"cell sizes must be listed finest first, got {self.cell_sizes}")
        if self.members < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("members, epochs and batch size must be >= 1")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError("lr must be positive and weight decay >= 0")
        if self.offset_db < 0 or not 0 <= self.drop_prob < 1:
            raise ValueError("offset_db must be >= 0 and drop_prob in [0, 1)")
        if self.relative_db < 0:
            raise ValueError(f"relative_db must be >= 0 (0: off), got {self.relative_db}")


def augment(rssi: torch.Tensor, config: NobleTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Device augmentation of raw dBm rows [B, 520] (see the module docstring)."""
    seen = rssi != NOT_DETECTED
    out = rssi
    if config.offset_db > 0:
        offset = (torch.rand(rssi.shape[0], 1, generator=generator) * 2 - 1) * config.offset_db  # (B, 1)
        out = torch.where(seen, torch.clamp(out + offset, max=0.0), out)
    if config.drop_prob > 0:
        drop = torch.rand(rssi.shape, generator=generator) < config.drop_prob
        out = torch.where(seen & drop, torch.full_like(out, NOT_DETECTED), out)
    return out


def fit_grids(train: UjiSplit, origin: tuple[float, float],
              cell_sizes: tuple[float, ...]) -> tuple[list[CellGrid], list[npt.NDArray[np.int64]]]:
    """One cell grid per size over the training positions, and each training row's label in each."""
    xy = train.local_xy(origin)
    building_floor = train.building * FLOORS_PER_BUILDING + train.floor
    fitted = [CellGrid.fit(xy, building_floor, size) for size in cell_sizes]
    return [g for g, _ in fitted], [labels for _, labels in fitted]


def train_member(train: UjiSplit, labels: list[npt.NDArray[np.int64]], model_config: NobleConfig,
                 config: NobleTrainConfig, seed: int) -> NobleNet:
    """Train one network (Adam, one-cycle lr, cross-entropy on every head) and return it in eval mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = NobleNet(model_config)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rssi = torch.from_numpy(train.rssi)
    targets = [torch.from_numpy(y) for y in labels] + [torch.from_numpy(train.building),
                                                       torch.from_numpy(train.floor)]
    batches = (len(rssi) + config.batch_size - 1) // config.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                   total_steps=config.epochs * batches)
    net.train()
    with tqdm(total=config.epochs * batches, desc=f"noble member seed {seed}", unit="step",
              leave=False) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(len(rssi), generator=generator)
            for start in range(0, len(rssi), config.batch_size):
                index = order[start:start + config.batch_size]
                cells, building, floor = net(augment(rssi[index], config, generator))
                outputs = [*cells, building, floor]
                loss = sum(F.cross_entropy(o, t[index]) for o, t in zip(outputs, targets, strict=True))
                assert isinstance(loss, torch.Tensor)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


def train_noble(train: UjiSplit, config: NobleTrainConfig,
                decode: DecodeConfig | Decode = Decode.TOPK) -> NobleLocalizer:
    """Train ``config.members`` networks on all of ``train`` and return the ensemble (decoding with
    ``decode``)."""
    origin = train.origin()
    grids, labels = fit_grids(train, origin, config.cell_sizes)
    model_config = NobleConfig(num_cells=tuple(len(g) for g in grids), hidden=config.hidden,
                               dropout=config.dropout, top_k=config.top_k, relative_db=config.relative_db)
    logger.info("cells per resolution %s: %s", config.cell_sizes, model_config.num_cells)
    members = []
    for i in tqdm(range(config.members), desc="noble ensemble", unit="member"):
        members.append(train_member(train, labels, model_config, config, config.seed + i))
    return NobleLocalizer(members, grids, origin, decode).eval()


@torch.no_grad()
def predict(model: NobleLocalizer, rssi: npt.NDArray[np.float32], decode: DecodeConfig | Decode,
            batch_size: int = 4096) -> Predictions:
    """Positions of raw dBm rows [N, 520] decoded with ``decode`` (float64 UTM coordinates)."""
    parts = [model.predict(torch.from_numpy(rssi[i:i + batch_size]), decode)
             for i in range(0, len(rssi), batch_size)]
    xy = torch.cat([p[0] for p in parts]).double().numpy()
    return Predictions(xy[:, 0] + model.origin[0], xy[:, 1] + model.origin[1],
                       torch.cat([p[1] for p in parts]).numpy(), torch.cat([p[2] for p in parts]).numpy())


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_noble(run_dir: Path, model: NobleLocalizer, data: dict[str, Any], metrics: dict[str, Any],
               config: NobleTrainConfig) -> Path:
    """Write ``run_dir/checkpoint.pt`` (layout in the module docstring)."""
    state = {
        "format_version": FORMAT_VERSION,
        "kind": "noble",
        "model_config": asdict(model.config),
        "embedding": {"method": "none", "config": None, "hash": None, "arrays": {}},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "noble": {"members": len(model.members), "decode": model.decode.to_dict(),
                  "origin": list(model.origin),
                  "grids": [{"size": g.size, "centres": g.centres, "building_floor": g.building_floor}
                            for g in model.grids]},
        "data": data,
        "metrics": metrics,
        "train": asdict(config),
    }
    path = run_dir / CHECKPOINT_NAME
    _atomic_save(state, path)
    return path


def load_noble(run_dir: Path) -> tuple[NobleLocalizer, dict[str, Any]]:
    """The ensemble (eval mode) and the raw checkpoint dict of a NObLe run directory (or its file)."""
    file = run_dir / CHECKPOINT_NAME if run_dir.is_dir() else run_dir
    if not file.exists():
        raise NobleCheckpointError(f"no checkpoint at {file}")
    state = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != "noble":
        raise NobleCheckpointError(f"{file} is not a NObLe checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise NobleCheckpointError(
            f"{file} has format {state.get('format_version')}, expected {FORMAT_VERSION}")
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in state["model_config"].items()}
    config = NobleConfig(**fields)
    extra = state["noble"]
    grids = [CellGrid(g["size"], np.asarray(g["centres"]), np.asarray(g["building_floor"]))
             for g in extra["grids"]]
    members = [NobleNet(config) for _ in range(extra["members"])]
    decode = DecodeConfig.from_dict(extra["decode"], config.top_k)
    model = NobleLocalizer(members, grids, tuple(extra["origin"]), decode)
    model.load_state_dict(state["state_dict"])
    return model.eval(), state
