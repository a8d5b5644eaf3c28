"""``python -m training.noble.results``: reproduce docs/results/noble.md, noble.json and noble_*.png.

Stages (each timed): WiFi baselines (weighted kNN, MLP regression), NObLe variants and the final ensemble
on the standard UJIIndoorLoc validation file, model selection on training users held out, and the
simulated IMU tracking study. Everything is trained from scratch with fixed seeds on the CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from training.imu.pdr import PdrConfig
from training.imu.simulator import SimConfig, floor_graphs, simulate
from training.imu.trackers import (
    Tracker,
    TrackerConfig,
    TrackerHead,
    WalkSet,
    error_by_distance,
    make_walkset,
)
from training.noble import plots as noble_plots
from training.noble.baselines import CoordinateRegressor, KnnConfig, WeightedKnn
from training.noble.data import UjiSplit, load_splits, user_holdout
from training.noble.metrics import Predictions, errors_2d, evaluate
from training.noble.model import FLOORS_PER_BUILDING, Decode, NobleLocalizer, NobleNet
from training.noble.results_doc import write_markdown
from training.noble.train import NobleTrainConfig, predict, save_noble, train_noble

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ujiindoorloc"
DISTANCE_MARKS_M = (10.0, 25.0, 50.0, 75.0, 100.0)


@dataclass(frozen=True)
class ResultsConfig:
    """What ``results_noble`` runs.

    Args:
        data: UJIIndoorLoc folder.
        out: where noble.md, noble.json and the PNGs go.
        noble: the final NObLe ensemble's training settings.
        holdout_users: training users held out for model selection.
        imu_train_walks: simulated walks to train the trackers.
        imu_test_walks: simulated walks to score every tracker.
        run_dir: also save the final ensemble as a run directory (for ``python -m export``).
    """

    data: Path = DEFAULT_DATA
    out: Path = Path("docs/results")
    noble: NobleTrainConfig = field(default_factory=NobleTrainConfig)
    holdout_users: tuple[int, ...] = (7, 10, 14)
    imu_train_walks: int = 1000
    imu_test_walks: int = 150
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.imu_train_walks < 1 or self.imu_test_walks < 4:
            raise ValueError("need >= 1 training walk and >= 4 test walks")


class Timer:
    """Seconds spent per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)``, timed as ``stage``."""
        started = time.perf_counter()
        logger.info("stage %s ...", stage)
        result = work(*args)
        self.seconds[stage] = round(time.perf_counter() - started, 1)
        logger.info("stage %s done in %.0f s", stage, self.seconds[stage])
        return result


def _row(method: str, pred: Predictions, truth: UjiSplit, **extra: Any) -> dict[str, Any]:
    return {"method": method, **evaluate(pred, truth.truth()).to_dict(), **extra}


def _ensemble(model: NobleLocalizer, members: int) -> NobleLocalizer:
    nets = [m for m in model.members if isinstance(m, NobleNet)][:members]
    return NobleLocalizer(nets, model.grids, model.origin).eval()


def _knn(train: UjiSplit, validation: UjiSplit, k: int) -> Predictions:
    return WeightedKnn(train, KnnConfig(k=k)).predict(validation.rssi)


def wifi(train: UjiSplit, validation: UjiSplit, config: ResultsConfig,
         timer: Timer) -> tuple[list[dict[str, Any]], dict[str, Predictions], NobleLocalizer]:
    """Every WiFi method on the validation file: rows for the tables, predictions for the plots."""
    preds: dict[str, Predictions] = {}
    for k in (1, 3):
        preds[f"knn-k{k}"] = timer.run(f"knn k={k}", _knn, train, validation, k)
    regressor = timer.run("mlp regression", CoordinateRegressor, train, config.noble)
    preds["mlp-regression"] = regressor.predict(validation.rssi)
    plain = replace(config.noble, members=1, cell_sizes=(2.0,), offset_db=0.0, drop_prob=0.0)
    baseline = timer.run("noble 2 m, no augmentation", train_noble, train, plain)
    for decode in Decode:
        preds[f"noble-2m-noaug-{decode.value}"] = predict(baseline, validation.rssi, decode)
    final = timer.run("noble final ensemble", train_noble, train, config.noble)
    sizes = sorted({1, min(3, config.noble.members), config.noble.members})
    for members in sizes:
        model = _ensemble(final, members)
        for decode in Decode:
            preds[f"noble-x{members}-{decode.value}"] = predict(model, validation.rssi, decode)
    rows = [_row(name, pred, validation) for name, pred in preds.items()]
    return rows, preds, final


def selection(train: UjiSplit, config: ResultsConfig, timer: Timer) -> list[dict[str, Any]]:
    """Single networks of each candidate setting, trained without ``holdout_users``, scored on them."""
    fit, held = user_holdout(train, config.holdout_users)
    candidates = {
        "cells 2 m, no augmentation": replace(config.noble, cell_sizes=(2.0,), offset_db=0.0, drop_prob=0.0),
        "cells 2 m, augmentation": replace(config.noble, cell_sizes=(2.0,)),
        "cells 2/4/8 m, no augmentation": replace(config.noble, offset_db=0.0, drop_prob=0.0),
        "cells 2/4/8 m, augmentation": config.noble,
    }
    rows = []
    for name, candidate in candidates.items():
        model = timer.run(f"selection: {name}", train_noble, fit, replace(candidate, members=1))
        for decode in Decode:
            rows.append(_row(f"{name} ({decode.value})", predict(model, held.rssi, decode), held,
                             users=list(config.holdout_users), rows=len(held)))
    return rows


def _growth(predicted: np.ndarray, walks: WalkSet, bin_m: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean error per ``bin_m`` of distance walked, up to the shortest walk's length."""
    error = np.linalg.norm(predicted - walks.position, axis=2).ravel()
    distance = walks.distance.ravel()
    edges = np.arange(0.0, walks.distance[:, -1].min() + bin_m, bin_m)
    which = np.digitize(distance, edges) - 1
    centres, means = [], []
    for b in range(len(edges) - 1):
        if (which == b).any():
            centres.append(edges[b] + bin_m / 2)
            means.append(float(error[which == b].mean()))
    return np.asarray(centres), np.asarray(means)


def imu(train: UjiSplit, config: ResultsConfig, timer: Timer) -> dict[str, Any]:
    """Simulate walks on every floor, then score PDR, the NObLe tracker and the regression tracker."""
    origin = train.origin()
    sim = SimConfig()
    graphs = floor_graphs(train.local_xy(origin), train.building * FLOORS_PER_BUILDING + train.floor, sim)
    tracker_config, pdr_config = TrackerConfig(), PdrConfig(rate_hz=sim.rate_hz)


    def walkset(count: int, seed: int) -> WalkSet:
        return make_walkset(simulate(graphs, count, sim, seed), graphs, tracker_config, pdr_config)

    train_walks = timer.run("imu simulation + PDR (train)", walkset, config.imu_train_walks, 1)
    test_walks = timer.run("imu simulation + PDR (test)", walkset, config.imu_test_walks, 2)
    tracks = {"PDR": test_walks.pdr}
    for name, head in (("NObLe tracker", TrackerHead.CELLS), ("regression tracker", TrackerHead.COORDINATES)):
        tracker = Tracker(head, graphs, tracker_config)
        tracks[name] = timer.run(f"imu {name}", tracker.fit, train_walks).predict(test_walks)
    errors = {name: error_by_distance(track, test_walks, DISTANCE_MARKS_M) for name, track in tracks.items()}
    noble_plots.trajectories(graphs, test_walks, tracks, config.out / "noble_trajectories.png")
    noble_plots.error_growth({n: _growth(t, test_walks) for n, t in tracks.items()},
                             config.out / "noble_imu_error.png")
    pdr_100, noble_100 = errors["PDR"]["at_100m"], errors["NObLe tracker"]["at_100m"]
    return {"errors": errors, "noble_reduction_vs_pdr_at_100m": round(1 - noble_100 / pdr_100, 4),
            "walks": {"train": config.imu_train_walks, "test": config.imu_test_walks,
                      "duration_s": sim.duration_s, "floors": len(graphs),
                      "cells": Tracker(TrackerHead.CELLS, graphs, tracker_config).cells.total},
            "sim": asdict(sim), "tracker": asdict(tracker_config), "pdr": asdict(pdr_config)}


def run(config: ResultsConfig) -> dict[str, Any]:
    started = time.perf_counter()
    timer = Timer()
    train, validation = timer.run("load", lambda: load_splits(config.data))
    rows, preds, final = wifi(train, validation, config, timer)
    if config.run_dir is not None:
        data = {"path": str(config.data.resolve()), "dataset": "ujiindoorloc",
                "rows": {"train": len(train), "validation": len(validation)},
                "verify_rssi": validation.rssi[:256].copy()}
        headline = next(r for r in rows if r["method"] == f"noble-x{config.noble.members}-topk")
        save_noble(config.run_dir, final, data, {**headline, "method": "noble"}, config.noble)
    chosen = ("knn-k3", "mlp-regression", "noble-2m-noaug-centre", "noble-2m-noaug-topk",
              f"noble-x{config.noble.members}-centre", f"noble-x{config.noble.members}-topk")
    noble_plots.error_cdf({n: errors_2d(preds[n], validation.truth()) for n in chosen},
                          config.out / "noble_error_cdf.png")
    noble_plots.positions(train, validation, preds[f"noble-x{config.noble.members}-topk"],
                          f"NObLe x{config.noble.members} top-k", config.out / "noble_positions.png")
    selected = selection(train, config, timer)
    tracking = imu(train, config, timer)
    result = {"results": rows, "selection": selected, "imu": tracking, "seconds": timer.seconds,
              "data": {"train_rows": len(train), "validation_rows": len(validation)},
              "total_seconds": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads(),
              "config": {"noble": asdict(config.noble), "holdout_users": list(config.holdout_users)}}
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "noble.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    write_markdown(result, config.out / "noble.md")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.noble.results",
                                     description="Reproduce docs/results/noble.md, noble.json and the PNGs.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UJIIndoorLoc folder")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--members", type=int, default=NobleTrainConfig().members)
    parser.add_argument("--epochs", type=int, default=NobleTrainConfig().epochs)
    parser.add_argument("--holdout-users", default="7,10,14", help="training users for model selection")
    parser.add_argument("--imu-train-walks", type=int, default=ResultsConfig().imu_train_walks)
    parser.add_argument("--imu-test-walks", type=int, default=ResultsConfig().imu_test_walks)
    parser.add_argument("--run-dir", type=Path, help="also save the final ensemble here (python -m export)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits a shared machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        force=True,
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        config = ResultsConfig(
            data=args.data, out=args.out, noble=NobleTrainConfig(members=args.members, epochs=args.epochs),
            holdout_users=tuple(int(u) for u in args.holdout_users.split(",") if u),
            imu_train_walks=args.imu_train_walks, imu_test_walks=args.imu_test_walks, run_dir=args.run_dir)
        result = run(config)
    except (ValueError, OSError) as error:
        logger.debug("user error", exc_info=True)
        sys.stderr.write(f"error: {error}\n")
        return 2
    logger.info("wrote %s/noble.md and noble.json in %.0f s", args.out, result["total_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
