"""Localization metrics shared by NObLe and its baselines: 2D error percentiles, hit rates, EvAAL error."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

FLOOR_MISS_M = 4.0
BUILDING_MISS_M = 50.0


@dataclass(frozen=True)
class Predictions:
    """Predicted positions of N fingerprints.

    Args:
        longitude: [N] metres (UTM easting).
        latitude: [N] metres (UTM northing).
        floor: [N] floor index.
        building: [N] building index.
    """

    longitude: npt.NDArray[np.float64]
    latitude: npt.NDArray[np.float64]
    floor: npt.NDArray[np.int64]
    building: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        n = len(self.longitude)
        if any(len(a) != n for a in (self.latitude, self.floor, self.building)):
            raise ValueError("longitude, latitude, floor and building must have the same length")


@dataclass(frozen=True)
class LocalizationMetrics:
    """Errors in metres and hit rates in [0, 1] (the keys of docs/results/noble.json)."""

    mean_error_m: float
    median_error_m: float
    p75_error_m: float
    p95_error_m: float
    building_hit: float
    floor_hit: float
    evaal_error_m: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def errors_2d(pred: Predictions, truth: Predictions) -> npt.NDArray[np.float64]:
    """Euclidean 2D error of each row in metres (floor and building ignored)."""
    return np.hypot(np.asarray(pred.longitude, np.float64) - truth.longitude,
                    np.asarray(pred.latitude, np.float64) - truth.latitude)


def evaluate(pred: Predictions, truth: Predictions) -> LocalizationMetrics:
    """Metrics of ``pred`` against ``truth``.

    The EvAAL-style error adds 4 m per floor miss and 50 m per building miss to the 2D error; a floor
    hit compares the floor index alone.
    """
    if len(pred.longitude) != len(truth.longitude) or len(truth.longitude) == 0:
        raise ValueError("predictions and truth must be non-empty and of equal length")
    error = errors_2d(pred, truth)
    building_hit = np.asarray(pred.building) == truth.building
    floor_hit = np.asarray(pred.floor) == truth.floor
    evaal = error + FLOOR_MISS_M * ~floor_hit + BUILDING_MISS_M * ~building_hit
    return LocalizationMetrics(
        mean_error_m=float(error.mean()),
        median_error_m=float(np.median(error)),
        p75_error_m=float(np.percentile(error, 75)),
        p95_error_m=float(np.percentile(error, 95)),
        building_hit=float(building_hit.mean()),
        floor_hit=float(floor_hit.mean()),
        evaal_error_m=float(evaal.mean()),
    )
