"""The figures of docs/results/noble.md (matplotlib, Agg backend, PNG files)."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt

from training.imu.simulator import FloorGraph
from training.imu.trackers import WalkSet
from training.noble.data import UjiSplit
from training.noble.metrics import Predictions

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def error_cdf(errors: dict[str, FloatArray], path: Path) -> Path:
    """Empirical CDF of the 2D error of every method."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, error in errors.items():
        ordered = np.sort(error)
        fraction = np.arange(1, len(ordered) + 1) / len(ordered)
        ax.plot(ordered, fraction, label=f"{name} (mean {error.mean():.2f} m)")
    ax.set_xlim(0, 30)
    ax.set_xlabel("2D error (m)")
    ax.set_ylabel("fraction of validation fingerprints")
    ax.set_title("UJIIndoorLoc validation file: error CDF")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def positions(train: UjiSplit, validation: UjiSplit, predicted: Predictions, method: str, path: Path) -> Path:
    """Per building: training reference points, true validation positions and the predictions (a line
    joins each truth to its prediction)."""
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    for building, ax in enumerate(axes):
        ref = train.building == building
        ax.scatter(train.longitude[ref], train.latitude[ref], s=4, c="0.8", label="training reference points")
        rows = validation.building == building
        truth = np.stack([validation.longitude[rows], validation.latitude[rows]], axis=1)
        guess = np.stack([predicted.longitude[rows], predicted.latitude[rows]], axis=1)
        ax.plot(np.stack([truth[:, 0], guess[:, 0]]), np.stack([truth[:, 1], guess[:, 1]]), c="tab:red",
                lw=0.5, alpha=0.5)
        ax.scatter(*truth.T, s=6, c="k", label="validation truth")
        ax.scatter(*guess.T, s=6, c="tab:blue", label=f"{method} prediction")
        ax.set_title(f"building {building} ({rows.sum()} validation rows, all floors)")
        ax.set_aspect("equal")
        ax.set_xlabel("longitude (UTM m)")
    axes[0].set_ylabel("latitude (UTM m)")
    axes[0].legend(fontsize=7, loc="best")
    return _save(fig, path)


def trajectories(graphs: list[FloorGraph], walks: WalkSet, tracks: dict[str, FloatArray], path: Path,
                 count: int = 4) -> Path:
    """A few test walks over their floor's walkable graph: truth and every method's track."""
    fig, axes = plt.subplots(1, count, figsize=(5 * count, 5))
    for k, ax in enumerate(np.atleast_1d(axes)):
        graph = graphs[int(walks.floor[k])]
        for i, adjacent in enumerate(graph.neighbours):
            for j in adjacent:
                if i < j:
                    ax.plot(*graph.nodes[[i, j]].T, c="0.85", lw=0.8, zorder=0)
        ax.plot(*walks.position[k].T, c="k", lw=2, label="truth")
        for name, track in tracks.items():
            ax.plot(*track[k].T, lw=1, label=name)
        ax.scatter(*walks.start[k], c="k", marker="o", zorder=5)
        bf = graph.building_floor
        ax.set_title(f"walk {k}: building {bf // 5} floor {bf % 5}, {walks.distance[k, -1]:.0f} m")
        ax.set_aspect("equal")
        ax.set_xlabel("x (m, local frame)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    return _save(fig, path)


def error_growth(curves: dict[str, tuple[FloatArray, FloatArray]], path: Path) -> Path:
    """Mean tracking error against the distance walked, one line per method."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, (distance, error) in curves.items():
        ax.plot(distance, error, label=name)
    ax.set_xlabel("distance walked (m)")
    ax.set_ylabel("mean position error (m)")
    ax.set_title("Simulated IMU tracking on held-out floors: error growth")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", path)
    return path
