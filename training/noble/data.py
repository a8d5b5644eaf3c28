"""UJIIndoorLoc splits for NObLe and its baselines: the training and standard validation files, a local
metric frame, and a user-held-out split for model selection."""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data.uji import UjiData, load_uji
from training.noble.metrics import Predictions

logger = logging.getLogger(__name__)

SPLIT_FILES = {"train": "trainingData", "validation": "validationData"}


class UjiNotFound(FileNotFoundError):
    """The data directory lacks a UJIIndoorLoc file."""


@dataclass(frozen=True)
class UjiSplit:
    """The arrays NObLe uses from one UJIIndoorLoc file (or a subset of its rows).

    Args:
        rssi: float32 [N, 520] raw dBm, 100 = not detected.
        longitude: float64 [N].
        latitude: float64 [N].
        floor: int64 [N].
        building: int64 [N].
        user_id: int64 [N].
        phone_id: int64 [N].
    """

    rssi: npt.NDArray[np.float32]
    longitude: npt.NDArray[np.float64]
    latitude: npt.NDArray[np.float64]
    floor: npt.NDArray[np.int64]
    building: npt.NDArray[np.int64]
    user_id: npt.NDArray[np.int64]
    phone_id: npt.NDArray[np.int64]

    @staticmethod
    def from_uji(data: UjiData) -> UjiSplit:
        return UjiSplit(data.rssi, data.longitude, data.latitude, data.floor, data.building,
                        data.user_id, data.phone_id)

    def __len__(self) -> int:
        return len(self.rssi)

    def subset(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> UjiSplit:
        return UjiSplit(self.rssi[rows], self.longitude[rows], self.latitude[rows], self.floor[rows],
                        self.building[rows], self.user_id[rows], self.phone_id[rows])

    def origin(self) -> tuple[float, float]:
        """The local frame's zero: the smallest longitude and latitude, rounded down to whole metres."""
        return float(np.floor(self.longitude.min())), float(np.floor(self.latitude.min()))

    def local_xy(self, origin: tuple[float, float]) -> npt.NDArray[np.float64]:
        """Positions [N, 2] in metres relative to ``origin``."""
        return np.stack([self.longitude - origin[0], self.latitude - origin[1]], axis=1)

    def truth(self) -> Predictions:
        return Predictions(self.longitude, self.latitude, self.floor, self.building)


def find_file(data_dir: Path, split: str) -> Path:
    """``data_dir/{trainingData,validationData}.csv[.gz]``, or a readable error."""
    stem = SPLIT_FILES[split]
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        if (data_dir / name).is_file():
            return data_dir / name
    raise UjiNotFound(f"{data_dir} holds no {stem}.csv or {stem}.csv.gz (the UJIIndoorLoc files)")


def load_splits(data_dir: Path) -> tuple[UjiSplit, UjiSplit]:
    """The training file and the standard validation file of the UJIIndoorLoc directory ``data_dir``."""
    if not data_dir.is_dir():
        raise UjiNotFound(f"{data_dir} is not a directory (expected the UJIIndoorLoc folder)")
    train = UjiSplit.from_uji(load_uji(find_file(data_dir, "train")))
    validation = UjiSplit.from_uji(load_uji(find_file(data_dir, "validation")))
    logger.info("UJIIndoorLoc: %d training and %d validation rows", len(train), len(validation))
    return train, validation


def user_holdout(train: UjiSplit, users: tuple[int, ...]) -> tuple[UjiSplit, UjiSplit]:
    """(rows of every other user, rows of ``users``): new people and phones, for model selection."""
    held = np.isin(train.user_id, users)
    if not held.any() or held.all():
        raise ValueError(f"holding out users {users} must leave rows on both sides")
    return train.subset(~held), train.subset(held)


def write_synthetic_uji(directory: Path, train_rows: int = 600, validation_rows: int = 120,
                        seed: int = 0) -> Path:
    """Write a small UJIIndoorLoc-format folder (``trainingData.csv.gz``, ``validationData.csv.gz``) for
    tests and demos: 3 buildings x 2 floors of 40 x 40 m, reference points on an 8 m grid, 40 access
    points per building-floor with log-distance path loss (-35 - 25 log10(1 + d) dBm, 15 dB per floor
    crossed, N(0, 3) dB noise; below -100 dBm = not seen). Validation rows lie between the grid points.
Training rows come from users 1-3, each with their own phone (11-13), so users can be held out.
    """
    rng = np.random.default_rng(seed)
    aps = rng.uniform(0, 40, size=(3, 2, 40, 2))  # (building, floor, ap, xy)
    directory.mkdir(parents=True, exist_ok=True)
    header = ",".join([f"WAP{i:03d}" for i in range(1, 521)] + [
        "LONGITUDE", "LATITUDE", "FLOOR", "BUILDINGID", "SPACEID", "RELATIVEPOSITION", "USERID", "PHONEID",
        "TIMESTAMP"])
    for stem, rows, jitter in (("trainingData", train_rows, 0.0), ("validationData", validation_rows, 3.0)):
        building = rng.integers(0, 3, rows)
        floor = rng.integers(0, 2, rows)
        xy = rng.integers(0, 6, size=(rows, 2)) * 8.0 + rng.uniform(-jitter, jitter, size=(rows, 2))
        rssi = np.full((rows, 520), 100.0)
        for i in range(rows):
            for f in range(2):
                distance = np.linalg.norm(aps[building[i], f] - xy[i], axis=1)
                level = -35 - 25 * np.log10(1 + distance) - 15 * abs(f - floor[i]) + rng.normal(0, 3, 40)
                first = 80 * (2 * building[i] + f)
                rssi[i, first:first + 40] = np.where(level < -100, 100, np.round(level))
        lines = [header] + [
            ",".join([*(f"{v:.0f}" for v in rssi[i]), f"{-7600 + 60 * building[i] + xy[i, 0]:.4f}",
                      f"{4864800 + xy[i, 1]:.4f}", str(floor[i]), str(building[i]), "1", "1",
                      str(1 + i % 3 if stem == "trainingData" else 0),
                      str(11 + i % 3 if stem == "trainingData" else i % 4), "1371713733"])
            for i in range(rows)]
        with gzip.open(directory / f"{stem}.csv.gz", "wt") as file:
            file.write("\n".join(lines) + "\n")
    return directory
