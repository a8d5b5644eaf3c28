"""Localization baselines in the NObLe harness: weighted kNN on powed RSSI, and MLP coordinate regression.

- ``WeightedKnn``: Euclidean distance between powed fingerprints (``training.noble.model.powed_rssi``), the k
  nearest training rows weighted by 1 / distance; position = weighted mean, building and floor =
  weighted vote. k = 3 gives 8.40 m mean 2D error on the UJIIndoorLoc validation file.
- ``RegressionNet``: the NObLe body (powed input, MLP with batch norm and dropout) regressing the local
  (x, y), standardised, with MSE, beside building and floor heads (cross-entropy): the Euclidean loss
  NObLe replaces. Trained with the same augmentation and schedule as NObLe.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.noble.data import UjiSplit
from training.noble.metrics import Predictions
from training.noble.model import FLOORS_PER_BUILDING, NUM_APS, PowedRssi, powed_rssi
from training.noble.train import NobleTrainConfig, augment

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnnConfig:
    """Weighted kNN settings.

    Args:
        k: neighbours.
        exponent: power of the powed representation.
        chunk_rows: query rows per distance block (bounds memory).
    """

    k: int = 3
    exponent: float = math.e
    chunk_rows: int = 1024

    def __post_init__(self) -> None:
        if self.k < 1 or self.chunk_rows < 1:
            raise ValueError("k and chunk_rows must be >= 1")


class WeightedKnn:
    """Inverse-distance weighted kNN over the training fingerprints.

    Args:
        train: the reference fingerprints.
        config: k and the representation.

    Example:
        >>> knn = WeightedKnn(train, KnnConfig(k=3))  # doctest: +SKIP
        >>> knn.predict(validation.rssi)  # doctest: +SKIP
    """

    def __init__(self, train: UjiSplit, config: KnnConfig) -> None:
        if config.k > len(train):
            raise ValueError(f"k = {config.k} exceeds the {len(train)} training rows")
        self.config = config
        self.train = train
        self.features = powed_rssi(train.rssi, config.exponent).astype(np.float64)
        self.squared_norms = (self.features**2).sum(axis=1)

    def neighbours(self, rssi: npt.NDArray[np.float32]
                   ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Indices and distances [N, k] of each query's k nearest training rows, nearest first."""
        k = self.config.k
        indices, distances = [], []
        for start in range(0, len(rssi), self.config.chunk_rows):
            rows = rssi[start:start + self.config.chunk_rows]
            query = powed_rssi(rows, self.config.exponent).astype(np.float64)
            squared = (query**2).sum(1)[:, None] + self.squared_norms[None, :] - 2 * query @ self.features.T
            distance = np.sqrt(np.maximum(squared, 0.0))  # (n, T)
            part = np.argpartition(distance, k - 1, axis=1)[:, :k]
            part_distance = np.take_along_axis(distance, part, axis=1)
            order = np.argsort(part_distance, axis=1, kind="stable")
            indices.append(np.take_along_axis(part, order, axis=1))
            distances.append(np.take_along_axis(part_distance, order, axis=1))
        return np.concatenate(indices), np.concatenate(distances)

    def predict(self, rssi: npt.NDArray[np.float32]) -> Predictions:
        index, distance = self.neighbours(rssi)
        weights = 1.0 / (distance + 1e-6)
        weights /= weights.sum(axis=1, keepdims=True)
        t = self.train
        floor = _weighted_vote(t.floor[index], weights)
        building = _weighted_vote(t.building[index], weights)
        return Predictions((weights * t.longitude[index]).sum(1), (weights * t.latitude[index]).sum(1),
                           floor, building)


def _weighted_vote(labels: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Per row, the label with the largest total weight (ties: the smallest label)."""
    classes = int(labels.max()) + 1
    totals = np.zeros((len(labels), classes))
    np.add.at(totals, (np.arange(len(labels))[:, None], labels), weights)
    return totals.argmax(axis=1).astype(np.int64)


class RegressionNet(nn.Module):
    """MLP regressing standardised local (x, y) with building and floor heads.

    Args:
        hidden: hidden layer widths.
        dropout: dropout after each hidden layer.
        num_buildings: building classes.
    """

    def __init__(self, hidden: tuple[int, ...] = (512, 512), dropout: float = 0.3,
                 num_buildings: int = 3) -> None:
        super().__init__()
        self.preprocess = PowedRssi()
        layers: list[nn.Module] = []
        width = NUM_APS
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.xy_head = nn.Linear(width, 2)
        self.building_head = nn.Linear(width, num_buildings)
        self.floor_head = nn.Linear(width, FLOORS_PER_BUILDING)

    def forward(self, rssi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.body(self.preprocess(rssi))  # (B, H)
        return self.xy_head(hidden), self.building_head(hidden), self.floor_head(hidden)


class CoordinateRegressor:
    """Trains a ``RegressionNet`` with MSE on standardised coordinates and predicts UTM positions.

    Args:
        train: training fingerprints.
        config: the NObLe training settings reused (epochs, batch, lr, augmentation, hidden, dropout, seed).
    """

    def __init__(self, train: UjiSplit, config: NobleTrainConfig) -> None:
        self.config = config
        xy = np.stack([train.longitude, train.latitude], axis=1)
        self.mean, self.std = xy.mean(axis=0), xy.std(axis=0)
        self.net = self._fit(train, torch.from_numpy(((xy - self.mean) / self.std).astype(np.float32)))

    def _fit(self, train: UjiSplit, target_xy: torch.Tensor) -> RegressionNet:
        config = self.config
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        net = RegressionNet(config.hidden, config.dropout)
        optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        rssi = torch.from_numpy(train.rssi)
        building, floor = torch.from_numpy(train.building), torch.from_numpy(train.floor)
        batches = (len(rssi) + config.batch_size - 1) // config.batch_size
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                       total_steps=config.epochs * batches)
        net.train()
        for _ in tqdm(range(config.epochs), desc="MLP regression", unit="epoch", leave=False):
            order = torch.randperm(len(rssi), generator=generator)
            for start in range(0, len(rssi), config.batch_size):
                index = order[start:start + config.batch_size]
                xy, building_logits, floor_logits = net(augment(rssi[index], config, generator))
                loss = (F.mse_loss(xy, target_xy[index]) + F.cross_entropy(building_logits, building[index])
                        + F.cross_entropy(floor_logits, floor[index]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
        return net.eval()

    @torch.no_grad()
    def predict(self, rssi: npt.NDArray[np.float32]) -> Predictions:
        xy, building, floor = self.net(torch.from_numpy(rssi))
        position = xy.double().numpy() * self.std + self.mean
        return Predictions(position[:, 0], position[:, 1], floor.argmax(1).numpy(),
                           building.argmax(1).numpy())
