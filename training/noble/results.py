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

from training.imu.mapmatch import ParticleConfig, map_match
from training.imu.pdr import PdrConfig
from training.imu.simulator import FloorGraph, SimConfig, floor_graphs, simulate
from training.imu.trackers import (
    Tracker,
    TrackerConfig,
    TrackerHead,
    WalkSet,
    anchored,
    error_by_distance,
    make_walkset,
)
from training.noble import plots as noble_plots
from training.noble.baselines import CoordinateRegressor, KnnConfig, WeightedKnn
from training.noble.data import UjiSplit, load_splits
from training.noble.decoding import Decode, DecodeConfig
from training.noble.metrics import LocalizationMetrics, Predictions, errors_2d, evaluate
from training.noble.model import FLOORS_PER_BUILDING, NobleLocalizer
from training.noble.results_doc import SEARCHES_JSON, write_markdown
from training.noble.selection import CrossValidation, CvConfig, chosen_configs
from training.noble.train import predict, save_noble, train_noble

logger = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "ujiindoorloc"
DISTANCE_MARKS_M = (10.0, 25.0, 50.0, 75.0, 100.0)
METRIC_KEYS = tuple(LocalizationMetrics.__dataclass_fields__)
PARTS = ("all", "wifi", "imu")


@dataclass(frozen=True)
class ResultsConfig:
    """What ``results_noble`` runs.

    Args:
        data: UJIIndoorLoc folder.
        out: where noble.md, noble.json and the PNGs go.
        cv: the cross-validated search (``training.noble.selection``).
        seeds: seeds of the chosen setting scored on the validation file.
        imu_train_walks: simulated walks to train the trackers.
        imu_test_walks: simulated walks to score every tracker.
        imu_val_walks: simulated walks on the validation floors (choose the trackers' settings).
        imu_seeds: seeds of the NObLe tracker on the map-matched track (the final training).
        imu_select_walks: training walks of the small-budget candidates compared on the validation floors.
        imu_select_epochs: their epochs.
        run_dir: also save the seed-0 model of the chosen setting as a run directory (``python -m export``).
        part: ``all``, or only ``wifi`` / ``imu`` (the other part's results in noble.json are kept).
        resume: reuse the CV rows of an interrupted run in ``out/noble.json`` (same base settings).
    """

    data: Path = DEFAULT_DATA
    out: Path = Path("docs/results")
    cv: CvConfig = field(default_factory=CvConfig)
    seeds: int = 5
    imu_train_walks: int = 1000
    imu_test_walks: int = 150
    imu_val_walks: int = 90
    imu_seeds: int = 3
    imu_select_walks: int = 300
    imu_select_epochs: int = 6
    run_dir: Path | None = None
    part: str = "all"
    resume: bool = False

    def __post_init__(self) -> None:
        if self.imu_train_walks < 1 or self.imu_test_walks < 4 or self.imu_val_walks < 4:
            raise ValueError("need >= 1 training walk and >= 4 validation and test walks")
        if min(self.imu_seeds, self.imu_select_walks, self.imu_select_epochs) < 1:
            raise ValueError("IMU seeds, selection walks and epochs must be >= 1")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {self.part!r}")


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


def _knn(train: UjiSplit, validation: UjiSplit, k: int) -> Predictions:
    return WeightedKnn(train, KnnConfig(k=k)).predict(validation.rssi)


OLD_DECODES = {"old topk": DecodeConfig(Decode.TOPK, 4, None, None),
               "old centre": DecodeConfig(Decode.CENTRE, 1, None, None)}


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, sample standard deviation, min and max over seeds of every metric, per method."""
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        summary[method] = {"seeds": [r["seed"] for r in group]}
        for key in METRIC_KEYS:
            values = np.array([r[key] for r in group], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            summary[method][key] = {"mean": round(float(values.mean()), 4), "std": round(std, 4),
                                    "min": round(float(values.min()), 4),
                                    "max": round(float(values.max()), 4)}
    return summary


def final_seeds(train: UjiSplit, validation: UjiSplit, chosen: dict[str, Any], seeds: int, timer: Timer,
                on_seed: Callable[[list[dict[str, Any]], NobleLocalizer], None]) -> list[dict[str, Any]]:
    """The chosen configuration trained on the whole training file with seeds 0, 100, ..., each scored
    ONCE on the validation file with the chosen decode (and the two old decodes beside it, for the
    side-by-side table only: nothing is chosen on them). When the chosen ensemble has several nets, its
    first net alone (the single-net configuration with the same seed, which is what the demo serves) is
    scored too: ``noble, 1 net``."""
    config, decode = chosen_configs(chosen)
    rows: list[dict[str, Any]] = []
    for s in range(seeds):
        seed_config = replace(config, seed=100 * s)
        model = timer.run(f"final: seed {100 * s}", train_noble, train, seed_config, decode)
        rows.append(_row("noble", predict(model, validation.rssi, decode), validation, seed=100 * s,
                         decode=decode.label(), members=config.members))
        if config.members > 1:
            single = NobleLocalizer(list(model.members)[:1], model.grids, model.origin, decode).eval()  # type: ignore[arg-type]
            rows.append(_row("noble, 1 net", predict(single, validation.rssi, decode), validation,
                             seed=100 * s, decode=decode.label(), members=1))
        for name, old in OLD_DECODES.items():
            rows.append(_row(f"noble, {name} decode", predict(model, validation.rssi, old), validation,
                             seed=100 * s, decode=old.label(), members=config.members))
        on_seed(rows, model)
    return rows


def wifi(config: ResultsConfig, timer: Timer, state: dict[str, Any]) -> None:
    """CV selection on the training file, then the chosen setting on the validation file (5 seeds), then
    the baselines; ``state`` (the JSON) is written after every stage."""
    train, validation = timer.run("load", lambda: load_splits(config.data))
    state["data"] = {"train_rows": len(train), "validation_rows": len(validation)}

    def save_cv(cv_result: dict[str, Any]) -> None:
        state["cv"] = cv_result
        _write(config, state)

    previous: list[dict[str, Any]] = []
    path = config.out / "noble.json"
    if config.resume and path.exists():
        earlier = json.loads(path.read_text()).get("cv") or {}
        base = json.loads(json.dumps(asdict(config.cv.base)))
        same = earlier.get("search", {}).get("base") == base
        previous = earlier.get("rows", []) if same else []
        logger.info("resume: %d CV rows of the earlier run reused where they match", len(previous))
    cv_result = CrossValidation(train, config.cv, timer.run, save_cv, previous).run()
    chosen = cv_result["chosen"]
    preds: dict[str, Predictions] = {}

    def save_seed(rows: list[dict[str, Any]], model: NobleLocalizer) -> None:
        state["final"] = {"rows": rows, "summary": summarise(rows),
                          "seeds_done": len({r["seed"] for r in rows}), "seeds_planned": config.seeds,
                          "chosen": chosen}
        if "served" not in state or state["served"].get("seed") is None:
            # the demo serves one net (training time of `make serve`): the chosen setting with members = 1
            single = "noble, 1 net" if any(r["method"] == "noble, 1 net" for r in rows) else "noble"
            served = next(r for r in rows if r["method"] == single and r["seed"] == 0)
            train_config, decode = chosen_configs(chosen)
            served_config = replace(train_config, members=1, seed=0)
            state["served"] = {**chosen, "train": asdict(served_config), "seed": 0, "validation": served,
                               "method": single}
            net = NobleLocalizer(list(model.members)[:1], model.grids, model.origin, decode).eval()  # type: ignore[arg-type]
            preds["noble"] = predict(model, validation.rssi, decode)
            if config.run_dir is not None:
                data = {"path": str(config.data.resolve()), "dataset": "ujiindoorloc",
                        "rows": {"train": len(train), "validation": len(validation)},
                        "verify_rssi": validation.rssi[:256].copy()}
                save_noble(config.run_dir, net, data, {**served, "method": "noble"}, served_config)
        _write(config, state)

    baselines = []
    for k in (1, 3):  # first: cheap, and the reference figure of the page
        preds[f"knn-k{k}"] = timer.run(f"knn k={k}", _knn, train, validation, k)
        baselines.append(_row(f"knn-k{k}", preds[f"knn-k{k}"], validation))
    state["baselines"] = list(baselines)
    final_seeds(train, validation, chosen, config.seeds, timer, save_seed)
    train_config = chosen_configs(chosen)[0]
    regressor = timer.run("mlp regression", CoordinateRegressor, train, train_config)
    preds["mlp-regression"] = regressor.predict(validation.rssi)
    baselines.append(_row("mlp-regression", preds["mlp-regression"], validation))
    state["baselines"] = baselines
    state["results"] = baselines + state["final"]["rows"]
    noble_plots.error_cdf({n: errors_2d(p, validation.truth()) for n, p in preds.items()},
                          config.out / "noble_error_cdf.png")
    noble_plots.positions(train, validation, preds["noble"], "NObLe (served configuration, seed 0)",
                          config.out / "noble_positions.png")
    _write(config, state)


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


def held_out_floors(graphs: list[FloorGraph]) -> tuple[list[int], list[int]]:
    """(training floors, test floors) as indices into ``graphs``: floor 1 of every building is held out
    (the trackers never see a walk on it, nor its graph, before the test)."""
    test = [i for i, g in enumerate(graphs) if g.building_floor % FLOORS_PER_BUILDING == 1]
    return [i for i in range(len(graphs)) if i not in test], test


def validation_floors(graphs: list[FloorGraph], fit_floors: list[int]) -> tuple[list[int], list[int]]:
    """(tracker floors, validation floors) out of the training floors: floor 2 of every building is held
    out of the trackers' training to choose their settings (the last training floor when no building
    has a floor 2)."""
    validation = [i for i in fit_floors if graphs[i].building_floor % FLOORS_PER_BUILDING == 2]
    validation = validation or fit_floors[-1:]
    return [i for i in fit_floors if i not in validation], validation


HYBRID_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
ANCHORED_CELLS_M = (1.0, 2.0)
ANCHORED_TOP_K = (1, 4, 8)
PF_NAME, NOBLE_NAME = "map-matching particle filter", "NObLe tracker"
HYBRID_NAME = "particle filter x NObLe cell likelihood"
ANCHORED_NAME = "NObLe cells on the map-matched track"


def _subset(walks: WalkSet, count: int) -> WalkSet:
    return WalkSet(**{k: getattr(walks, k)[:count] for k in WalkSet.__dataclass_fields__})


def _seed_summary(per_seed: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([e[k] for e in per_seed])) for k in per_seed[0]}


def imu(train: UjiSplit, config: ResultsConfig, timer: Timer) -> dict[str, Any]:
    """Walks on training floors train the trackers, walks on validation floors (training floors held out
    of the trackers' training) choose their settings, walks on held-out test floors score PDR (with and
    without the gyroscope calibration at rest), the map-matching particle filter (the baseline) and the
    NObLe trackers, once."""
    origin = train.origin()
    sim = SimConfig()
    graphs = floor_graphs(train.local_xy(origin), train.building * FLOORS_PER_BUILDING + train.floor, sim)
    fit_floors, test_floors = held_out_floors(graphs)
    tracker_floors, val_floors = validation_floors(graphs, fit_floors)
    tracker_config, pdr_config = TrackerConfig(), PdrConfig(rate_hz=sim.rate_hz)
    uncalibrated = replace(pdr_config, calibration_s=0.0)
    particle_config = ParticleConfig()

    def walkset(floors: list[int], count: int, seed: int, pdr: PdrConfig) -> WalkSet:
        walks = simulate([graphs[i] for i in floors], count, sim, seed)
        return make_walkset(walks, graphs, tracker_config, pdr)

    def pf(walks: WalkSet) -> np.ndarray:
        return map_match(walks.pdr, walks.start, walks.floor, graphs, particle_config)

    train_walks = timer.run("imu simulation + PDR (train floors)", walkset, tracker_floors,
                            config.imu_train_walks, 1, pdr_config)
    val_walks = timer.run("imu simulation + PDR (validation floors)", walkset, val_floors,
                          config.imu_val_walks, 3, pdr_config)
    test_walks = timer.run("imu simulation + PDR (held-out floors)", walkset, test_floors,
                           config.imu_test_walks, 2, pdr_config)
    raw = walkset(test_floors, config.imu_test_walks, 2, uncalibrated)  # the same walks (same seed)
    tracks = {"PDR, no calibration": raw.pdr, "PDR": test_walks.pdr}
    tracks[PF_NAME] = timer.run("imu particle filter", pf, test_walks)
    train_pf, val_pf = timer.run("imu particle filter (train + validation walks)",
                                 lambda: (pf(train_walks), pf(val_walks)))
    validation: dict[str, Any] = {PF_NAME: error_by_distance(val_pf, val_walks, DISTANCE_MARKS_M)}

    # the NObLe tracker on PDR (as before), and its cell probabilities as the filter's extra likelihood
    noble = Tracker(TrackerHead.CELLS, graphs, tracker_config)
    timer.run(f"imu {NOBLE_NAME}", noble.fit, train_walks)
    tracks[NOBLE_NAME] = noble.predict(test_walks)
    validation[NOBLE_NAME] = error_by_distance(noble.predict(val_walks), val_walks, DISTANCE_MARKS_M)
    val_probs, centres = noble.probabilities(val_walks), noble.cells.centres
    hybrid_rows = []
    for weight in HYBRID_WEIGHTS:
        track = map_match(val_walks.pdr, val_walks.start, val_walks.floor, graphs, particle_config, val_probs,
                          centres, weight)
        hybrid_rows.append({"weight": weight, **error_by_distance(track, val_walks, DISTANCE_MARKS_M)})
    hybrid_weight = min(hybrid_rows, key=lambda r: r["mean"])["weight"]
    validation[HYBRID_NAME] = next(r for r in hybrid_rows if r["weight"] == hybrid_weight)
    tracks[HYBRID_NAME] = timer.run(
        f"imu {HYBRID_NAME}", map_match, test_walks.pdr, test_walks.start, test_walks.floor, graphs,
        particle_config, noble.probabilities(test_walks), centres, hybrid_weight)

    # NObLe cells refining the map-matched track: settings chosen on the validation floors at a small
    # budget, then trained at the full budget with several seeds
    train_anchored = anchored(train_walks, train_pf, graphs)
    val_anchored = anchored(val_walks, val_pf, graphs)
    small = replace(tracker_config, epochs=config.imu_select_epochs)
    anchored_rows: list[dict[str, Any]] = []
    for cell_size in ANCHORED_CELLS_M:
        for shift in (False, True):
            candidate = replace(small, cell_size_m=cell_size, shift=shift)
            tracker = timer.run(f"imu select: cells {cell_size:g} m, shift {shift}",
                                Tracker(TrackerHead.CELLS, graphs, candidate).fit,
                                _subset(train_anchored, config.imu_select_walks))
            for top_k in ANCHORED_TOP_K:
                tracker.config = replace(candidate, top_k=top_k)
                anchored_rows.append({"cell_size_m": cell_size, "shift": shift, "top_k": top_k,
                                      **error_by_distance(tracker.predict(val_anchored), val_anchored,
                                                          DISTANCE_MARKS_M)})
    best = min(anchored_rows, key=lambda r: r["mean"])
    anchored_config = replace(tracker_config, cell_size_m=best["cell_size_m"], shift=best["shift"],
                              top_k=best["top_k"])
    test_anchored = anchored(test_walks, tracks[PF_NAME], graphs)
    seeds, per_seed, per_seed_val, seed_tracks = [], [], [], []
    for s in range(config.imu_seeds):
        seed_config = replace(anchored_config, seed=s)
        fit = Tracker(TrackerHead.CELLS, graphs, seed_config).fit
        tracker = timer.run(f"imu {ANCHORED_NAME} seed {s}", fit, train_anchored)
        seed_tracks.append(tracker.predict(test_anchored))
        seeds.append(s)
        per_seed.append(error_by_distance(seed_tracks[-1], test_walks, DISTANCE_MARKS_M))
        per_seed_val.append(error_by_distance(tracker.predict(val_anchored), val_anchored, DISTANCE_MARKS_M))
    tracks[ANCHORED_NAME] = seed_tracks[0]
    validation[ANCHORED_NAME] = _seed_summary(per_seed_val)

    errors = {name: error_by_distance(track, test_walks, DISTANCE_MARKS_M) for name, track in tracks.items()}
    errors[ANCHORED_NAME] = _seed_summary(per_seed)  # mean over seeds
    # which NObLe variant the target compares: the lowest validation error (not the test)
    nobles = (NOBLE_NAME, HYBRID_NAME, ANCHORED_NAME)
    target_name = min(nobles, key=lambda n: validation[n]["mean"])
    growth = {n: _growth(t, test_walks) for n, t in tracks.items()}
    noble_plots.trajectories(graphs, test_walks, tracks, config.out / "noble_trajectories.png")
    noble_plots.error_growth(growth, config.out / "noble_imu_error.png")
    baseline = errors[PF_NAME]
    reductions = {n: round(1 - errors[n]["at_100m"] / baseline["at_100m"], 4) for n in nobles}
    seed_reductions = [1 - e["at_100m"] / baseline["at_100m"] for e in per_seed]

    def cell_count(cell_size: float) -> int:
        cells = Tracker(TrackerHead.CELLS, graphs, replace(tracker_config, cell_size_m=cell_size)).cells
        return int(sum(len(cells.centres[i]) for i in test_floors))

    return {"errors": errors,
            "target_tracker": target_name,
            "noble_reduction_vs_map_aware_at_100m": reductions[target_name],
            "noble_reduction_vs_pdr_at_100m": round(
                1 - errors[target_name]["at_100m"] / errors["PDR"]["at_100m"], 4),
            "reductions_vs_map_aware_at_100m": reductions,
            "anchored_seeds": {"seeds": seeds, "errors": per_seed,
                               "reduction_vs_map_aware_at_100m": {
                                   "mean": round(float(np.mean(seed_reductions)), 4),
                                   "min": round(float(np.min(seed_reductions)), 4),
                                   "max": round(float(np.max(seed_reductions)), 4)}},
            "selection": {"validation_floors": [graphs[i].building_floor for i in val_floors],
                          "validation_walks": config.imu_val_walks, "criterion": "mean error along walks",
                          "hybrid": {"rows": hybrid_rows, "chosen_weight": hybrid_weight,
                                     "evidence_floor": 0.05},
                          "anchored": {"rows": anchored_rows, "chosen": {k: best[k] for k in
                                                                        ("cell_size_m", "shift", "top_k")},
                                       "walks": min(config.imu_select_walks, config.imu_train_walks),
                                       "epochs": config.imu_select_epochs},
                          "validation_errors": validation},
            "growth": {n: {"distance_m": c.round(2).tolist(), "mean_error_m": m.round(3).tolist()}
                       for n, (c, m) in growth.items()},
            "walks": {"train": config.imu_train_walks, "test": config.imu_test_walks,
                      "duration_s": sim.duration_s, "rest_s": sim.rest_s,
                      "train_floors": [graphs[i].building_floor for i in tracker_floors],
                      "validation_floors": [graphs[i].building_floor for i in val_floors],
                      "test_floors": [graphs[i].building_floor for i in test_floors],
                      "test_cells": cell_count(tracker_config.cell_size_m),
                      "test_cells_anchored": cell_count(anchored_config.cell_size_m)},
            "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "sim": asdict(sim), "tracker": asdict(tracker_config),
            "anchored_tracker": asdict(anchored_config), "pdr": asdict(pdr_config),
            "particle_filter": asdict(particle_config)}


def search_digest(result: dict[str, Any], name: str, commit: str) -> dict[str, Any]:
    """What the search history keeps of one WiFi search (a ``noble.json`` whose CV finished and whose
    chosen setting was scored on the validation file with at least one seed): its design, its choice and
    its validation figures (summaries over the seeds scored; ``seeds`` of ``seeds_planned``)."""
    cv, final = result["cv"], result["final"]
    if not cv.get("complete") or final["seeds_done"] < 1:
        raise ValueError(f"search {name!r}: its noble.json is not finished (CV complete, >= 1 seed scored)")
    search = cv["search"]
    kinds = sorted({r["decode_config"]["kind"] for r in cv["rows"]})
    return {"name": name, "commit": commit, "criterion": search.get("criterion", "pooled"),
            "choose_kinds": search.get("choose_kinds", kinds), "decode_kinds": kinds,
            "augmentations": search["augmentations"], "epochs": search["epochs"],
            "networks": search.get("networks", [[search["base"]["hidden"], 0.0]]),
            "members": search["members"], "decodes": search["decodes"], "chosen": cv["chosen"],
            "seeds": final["seeds_done"], "seeds_planned": final["seeds_planned"],
            "summary": final["summary"]}


def archive_search(noble_json: Path, name: str, commit: str, out: Path) -> Path:
    """Add (or replace, by name) the digest of a finished search to ``out/noble_searches.json``."""
    digest = search_digest(json.loads(noble_json.read_text()), name, commit)
    path = out / SEARCHES_JSON
    searches = json.loads(path.read_text()) if path.exists() else []
    searches = [s for s in searches if s["name"] != name] + [digest]
    path.write_text(json.dumps(searches, indent=2) + "\n")
    return path


WIFI_KEYS = ("config", "data", "cv", "final", "served", "baselines", "results")
IMU_KEYS = ("imu",)


def _write(config: ResultsConfig, state: dict[str, Any]) -> dict[str, Any]:
    """noble.json now (marked partial until every part is done). A single part (``--part wifi|imu``)
    re-reads the file and replaces only its own keys and stage timings, so the two parts can run at
    the same time; ``all`` writes its own state alone."""
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / "noble.json"
    merged: dict[str, Any] = {}
    if config.part != "all" and path.exists():
        current = json.loads(path.read_text())
        kept = WIFI_KEYS + IMU_KEYS + ("seconds", "threads", "threads_by_part")
        merged = {k: v for k, v in current.items() if k in kept}
    own = WIFI_KEYS if config.part == "wifi" else IMU_KEYS if config.part == "imu" else WIFI_KEYS + IMU_KEYS
    merged = {k: v for k, v in merged.items() if k not in own}  # this part's keys are replaced wholesale
    merged.update({k: state[k] for k in own if k in state})
    by_part = merged.get("threads_by_part") or (
        {part: merged["threads"] for part in PARTS[1:]} if "threads" in merged else {})
    if config.part == "all":
        by_part = {"wifi": state["threads"], "imu": state["threads"]}
    else:
        by_part[config.part] = state["threads"]
    merged["threads"] = state["threads"]
    merged["threads_by_part"] = by_part
    if config.part != "all":  # a part replaces its own stage timings (stages it no longer has go too)
        mine = (lambda stage: stage.startswith("imu ")) if config.part == "imu" else \
            (lambda stage: not stage.startswith("imu "))
        merged["seconds"] = {k: v for k, v in merged.get("seconds", {}).items() if not mine(k)}
    merged["seconds"] = {**merged.get("seconds", {}), **state["seconds"]}
    merged["total_seconds"] = round(sum(merged["seconds"].values()), 1)
    done = all(k in merged for k in ("final", "baselines", "imu"))
    done = done and merged["final"]["seeds_done"] == merged["final"]["seeds_planned"]
    merged["partial"] = not done
    merged.setdefault("results", [])
    tmp = path.with_suffix(f".json.{config.part}.tmp")
    tmp.write_text(json.dumps(merged, indent=2, default=str) + "\n")
    tmp.replace(path)
    return merged


def run(config: ResultsConfig) -> dict[str, Any]:
    started = time.perf_counter()
    timer = Timer()
    state: dict[str, Any] = {"threads": torch.get_num_threads(), "seconds": timer.seconds}
    if config.part in ("all", "wifi"):
        state["config"] = {"cv": asdict(config.cv), "seeds": config.seeds}
        wifi(config, timer, state)
    if config.part in ("all", "imu"):
        train, _ = load_splits(config.data)
        state["imu"] = imu(train, config, timer)
    merged = _write(config, state)
    merged["last_part_seconds"] = round(time.perf_counter() - started, 1)
    if not merged["partial"]:
        write_markdown(merged, config.out / "noble.md")
    else:
        logger.warning("noble.json is partial (a part has not run): noble.md not rewritten")
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.noble.results",
                                     description="Reproduce docs/results/noble.md, noble.json and the PNGs.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UJIIndoorLoc folder")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    parser.add_argument("--seeds", type=int, default=ResultsConfig().seeds,
                        help="seeds of the chosen setting scored on the validation file")
    parser.add_argument("--part", choices=PARTS, default="all",
                        help="run only the WiFi or the IMU part (the other's results in noble.json are kept)")
    parser.add_argument("--doc-only", action="store_true", help="re-render noble.md from noble.json")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the CV candidates already scored in noble.json (an interrupted run)")
    search = CvConfig()
    parser.add_argument("--cv-epochs", default=",".join(str(e) for e in search.epochs),
                        help="epoch candidates, the first used in stage 1")
    parser.add_argument("--cv-members", default=",".join(str(m) for m in search.members),
                        help="ensemble sizes searched (first must be 1)")
    parser.add_argument("--imu-train-walks", type=int, default=ResultsConfig().imu_train_walks)
    parser.add_argument("--imu-test-walks", type=int, default=ResultsConfig().imu_test_walks)
    parser.add_argument("--imu-val-walks", type=int, default=ResultsConfig().imu_val_walks)
    parser.add_argument("--imu-seeds", type=int, default=ResultsConfig().imu_seeds,
                        help="seeds of the NObLe tracker on the map-matched track")
    parser.add_argument("--run-dir", type=Path, help="also save the final ensemble here (python -m export)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 suits a shared machine)")
    parser.add_argument("--archive-search", type=Path, metavar="NOBLE_JSON",
                        help="add a finished search's digest to OUT/noble_searches.json (with "
                             "--search-name, --search-commit) and re-render the page")
    parser.add_argument("--search-name", help="the archived search's name")
    parser.add_argument("--search-commit", default="", help="the commit that produced the archived search")
    args = parser.parse_args(argv)
    logging.basicConfig(
        force=True,
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        if args.archive_search is not None:
            if not args.search_name:
                raise ValueError("--archive-search needs --search-name")
            archive_search(args.archive_search, args.search_name, args.search_commit, args.out)
            args.doc_only = (args.out / "noble.json").exists()
        if args.doc_only:
            write_markdown(json.loads((args.out / "noble.json").read_text()), args.out / "noble.md")
            return 0
        cv = CvConfig(epochs=tuple(int(e) for e in args.cv_epochs.split(",") if e),
                      members=tuple(int(m) for m in args.cv_members.split(",") if m))
        config = ResultsConfig(
            data=args.data, out=args.out, cv=cv, seeds=args.seeds, imu_train_walks=args.imu_train_walks,
            imu_test_walks=args.imu_test_walks, imu_val_walks=args.imu_val_walks, imu_seeds=args.imu_seeds,
            run_dir=args.run_dir, part=args.part, resume=args.resume)
        result = run(config)
    except (ValueError, OSError, KeyError) as error:
        logger.debug("user error", exc_info=True)
        sys.stderr.write(f"error: {error}\n")
        return 2
    logger.info("wrote %s/noble.md and noble.json in %.0f s", args.out, result["total_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
