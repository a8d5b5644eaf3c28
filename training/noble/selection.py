"""Model selection for NObLe by leave-users-out cross-validation on ``trainingData.csv`` alone.

Folds: rows are grouped by person AND phone (the connected components of the USERID-PHONEID pairs: users
1, 9 and 16 share phone 14, so they form one group), and the groups are dealt into ``folds`` folds of
similar row counts (largest group first, into the smallest fold). A fold's network never saw the held-out
people or their phones, as the validation file's phones are mostly unseen. Every training row is scored
once, by the network that did not see it.

Criterion (``CvConfig.criterion``). The training users each surveyed their own areas, so many held-out
rows lie where none of the remaining users measured (farther than ``covered_radius_m`` from every
training position of their building-floor in the other folds): there a fingerprint model can only guess,
and those rows dominate the mean (in the first searches they made the pooled CV mean twice the
validation error). A deployed model, like the validation file, is asked about new phones and people in
the places that were surveyed. The default criterion is therefore the mean 2D error over the COVERED
held-out rows (``cv_covered_mean_error_m``); the pooled mean over all rows (``cv_mean_error_m``), the
uncovered rows' mean and the covered share are reported beside it (``criterion = "pooled"`` chooses on
the pooled mean, as the first two searches did).

Search (staged, so it fits a small CPU; every stage's candidates are listed in ``CvConfig``):

1. augmentation strengths, at the first epoch count, one network per fold;
2. epochs, at the chosen augmentation;
3. the network: hidden widths and the input (powed RSSI alone, or with the gain-free relative channel of
   ``training.noble.model.RelativeRssi``), at the chosen augmentation and epochs;
4. ensemble size, at the chosen setting: the smallest ensemble within ``tolerance_m`` of the best CV
   error is chosen ("one net if it is as good");
5. the decode (kind, top-k, resolutions, snapping) is chosen jointly with each stage's candidates and
   finally for the chosen training setting; decodes cost no training, so every one in ``decode_grid``
   is scored on every fold model. Every choice (of a stage's setting too) is made on the best decode
   among ``CvConfig.choose_kinds``: by default the on-plan ``plan`` and ``building`` decodes, as
   predictions must stay on the predicted building-floor; ``centre`` and ``topk`` are scored and
   reported beside them.

The validation file is not read here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from training.noble.data import UjiSplit
from training.noble.decoding import Decode, DecodeConfig
from training.noble.metrics import Predictions, errors_2d
from training.noble.model import FLOORS_PER_BUILDING, NobleLocalizer, NobleNet
from training.noble.train import NobleTrainConfig, train_noble

logger = logging.getLogger(__name__)


def user_phone_groups(split: UjiSplit) -> npt.NDArray[np.int64]:
    """Group id per row: connected components of the graph linking each user to each phone they used."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def find(node: tuple[str, int]) -> tuple[str, int]:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    pairs = np.unique(np.stack([split.user_id, split.phone_id], axis=1), axis=0)
    for user, phone in pairs.tolist():
        a, b = find(("user", user)), find(("phone", phone))
        if a != b:
            parent[a] = b
    roots: dict[tuple[str, int], int] = {}
    ids = {(u, p): roots.setdefault(find(("user", u)), len(roots)) for u, p in pairs.tolist()}
    rows = zip(split.user_id.tolist(), split.phone_id.tolist(), strict=True)
    return np.array([ids[(u, p)] for u, p in rows], dtype=np.int64)


def make_folds(split: UjiSplit, folds: int) -> list[npt.NDArray[np.bool_]]:
    """``folds`` held-out masks over the rows of ``split``; no user or phone on both sides of any fold."""
    groups = user_phone_groups(split)
    sizes = np.bincount(groups)
    if folds < 2 or folds > len(sizes):
        raise ValueError(f"need 2 <= folds <= {len(sizes)} user/phone groups, got {folds}")
    load = np.zeros(folds, dtype=np.int64)
    fold_of = np.zeros(len(sizes), dtype=np.int64)
    for group in np.argsort(-sizes, kind="stable"):
        fold_of[group] = int(np.argmin(load))
        load[fold_of[group]] += sizes[group]
    return [fold_of[groups] == f for f in range(folds)]


def decode_grid(cell_sizes: tuple[float, ...]) -> list[DecodeConfig]:
    """Every decode scored in CV: centre per resolution; over single resolutions and nested sets, topk
    (all floors) with k in {2, 4, 8, 16}, plan (predicted floor) with k in {1, 2, 4, 8, 16} without
    snapping or snapping beyond 1x / 2x the finest cell, and building (the predicted building's floors,
    snapped onto the predicted floor) with k in {2, 4, 8, 16} snapping beyond 1x / 2x the finest cell."""
    subsets = [(s,) for s in cell_sizes] + [cell_sizes[:i] for i in range(2, len(cell_sizes) + 1)]
    subsets += [cell_sizes[1:]] if len(cell_sizes) > 2 else []
    finest = cell_sizes[0]
    grid = [DecodeConfig(Decode.CENTRE, 1, (s,), None) for s in cell_sizes]
    for subset in subsets:
        for k in (2, 4, 8, 16):
            grid.append(DecodeConfig(Decode.TOPK, k, subset, None))
        for k in (1, 2, 4, 8, 16):
            for snap in (None, finest, 2 * finest):
                grid.append(DecodeConfig(Decode.PLAN, k, subset, snap))
        for k in (2, 4, 8, 16):
            for snap in (finest, 2 * finest):
                grid.append(DecodeConfig(Decode.BUILDING, k, subset, snap))
    return grid


CRITERIA = {"covered": "cv_covered_mean_error_m", "pooled": "cv_mean_error_m"}  # criterion -> row key
CRITERION_TEXT = {"covered": "the covered held-out rows", "pooled": "all held-out rows (pooled)"}


def covered_rows(fit: UjiSplit, held: UjiSplit, radius_m: float) -> npt.NDArray[np.bool_]:
    """Which ``held`` rows lie within ``radius_m`` of a position of ``fit`` on the same building-floor."""
    origin = fit.origin()
    fit_xy, held_xy = fit.local_xy(origin), held.local_xy(origin)
    fit_bf = fit.building * FLOORS_PER_BUILDING + fit.floor
    held_bf = held.building * FLOORS_PER_BUILDING + held.floor
    covered = np.zeros(len(held), dtype=bool)
    for bf in np.unique(held_bf):
        places = np.unique(fit_xy[fit_bf == bf], axis=0)  # (P, 2): the reference points
        rows = held_bf == bf
        if len(places) == 0:
            continue
        queries = held_xy[rows]
        nearest = np.full(len(queries), np.inf)
        for start in range(0, len(places), 512):
            chunk = places[start:start + 512]
            distance = np.sqrt(((queries[:, None, :] - chunk[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
            nearest = np.minimum(nearest, distance)
        covered[rows] = nearest <= radius_m
    return covered


@dataclass(frozen=True)
class CvConfig:
    """The search (see the module docstring).

    Args:
        base: training settings not searched (architecture, lr, batch, cell sizes).
        folds: leave-users-out folds.
        augmentations: (offset_db, drop_prob) candidates.
        epochs: epoch candidates (the first is used in stage 1).
        networks: (hidden widths, relative_db) candidates of stage 3 (relative_db 0: powed RSSI only);
            the first should be ``base``'s.
        members: ensemble sizes (the first must be 1).
        tolerance_m: an ensemble this close to the best CV error counts as "as good".
        choose_kinds: the decode kinds a choice may pick (default: the on-plan ones, ``plan`` and
            ``building``, which keep every prediction on the predicted building-floor); the others are
            scored and reported beside them.
        criterion: ``covered`` (mean error over the held-out rows within ``covered_radius_m`` of a
            training position of the same building-floor in the other folds) or ``pooled`` (all rows).
        covered_radius_m: see ``criterion``.
    """

    base: NobleTrainConfig = field(default_factory=lambda: NobleTrainConfig(members=1, epochs=10))
    folds: int = 3
    augmentations: tuple[tuple[float, float], ...] = ((0.0, 0.0), (8.0, 0.2), (12.0, 0.3), (16.0, 0.4),
                                                      (20.0, 0.5))
    epochs: tuple[int, ...] = (10, 20, 40)
    networks: tuple[tuple[tuple[int, ...], float], ...] = (((512, 512), 0.0), ((512, 512), 40.0),
                                                          ((1024, 1024), 0.0), ((1024, 1024), 40.0))
    members: tuple[int, ...] = (1, 2)
    tolerance_m: float = 0.1
    choose_kinds: tuple[str, ...] = (Decode.PLAN.value, Decode.BUILDING.value)
    criterion: str = "covered"
    covered_radius_m: float = 4.0

    def __post_init__(self) -> None:
        if not self.augmentations or not self.epochs or not self.members or self.members[0] != 1:
            raise ValueError("need >= 1 augmentation and epoch candidate, and members starting at 1")
        if not self.networks or any(not hidden or min(hidden) < 1 or relative < 0
                                    for hidden, relative in self.networks):
            raise ValueError(f"need >= 1 network candidate with positive widths, got {self.networks}")
        if not self.choose_kinds or not set(self.choose_kinds) <= {d.value for d in Decode}:
            raise ValueError(f"choose_kinds must name decode kinds, got {self.choose_kinds}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {self.criterion!r}")
        if not self.covered_radius_m > 0:
            raise ValueError(f"covered_radius_m must be positive, got {self.covered_radius_m}")
        if self.tolerance_m < 0:
            raise ValueError("tolerance_m must be >= 0")


@dataclass
class _FoldModels:
    """Networks trained for one training setting, per fold (members grow as stages need them)."""

    config: NobleTrainConfig
    nets: list[list[NobleNet]]
    localizers: list[NobleLocalizer]


def network_name(hidden: tuple[int, ...], relative_db: float) -> str:
    """``512x512`` or ``512x512 + relative 40 dB``."""
    widths = "x".join(str(h) for h in hidden)
    return widths if relative_db == 0 else f"{widths} + relative {relative_db:g} dB"


def _setting_name(config: NobleTrainConfig, members: int) -> str:
    aug = "no augmentation" if config.offset_db == 0 and config.drop_prob == 0 else \
        f"offset {config.offset_db:g} dB, drop {config.drop_prob:g}"
    return (f"{aug}, {config.epochs} epochs, {network_name(config.hidden, config.relative_db)}, "
            f"{members} net{'s' if members > 1 else ''}")


class CrossValidation:
    """Runs the staged search on ``train`` (``run`` returns the table and the chosen settings).

    Args:
        train: the whole training file.
        config: the search.
        timed: ``timed(stage, work, *args)`` runs and times a stage (``training.noble.results.Timer.run``).
        on_stage: called with the partial result after every stage (to write partial results).
        previous: rows of an earlier, interrupted run of the same search on the same data
            (``result()["rows"]``): a candidate scored there is reused instead of trained again.
    """

    def __init__(self, train: UjiSplit, config: CvConfig,
                 timed: Callable[..., Any] | None = None,
                 on_stage: Callable[[dict[str, Any]], None] | None = None,
                 previous: list[dict[str, Any]] | None = None) -> None:
        self.train = train
        self.config = config
        self.folds = make_folds(train, config.folds)
        self.timed = timed or (lambda _stage, work, *args: work(*args))
        self.on_stage = on_stage or (lambda _result: None)
        self.decodes = decode_grid(config.base.cell_sizes)
        self.rows: list[dict[str, Any]] = []
        self.models: dict[str, _FoldModels] = {}
        self.previous = previous or []
        self.key = CRITERIA[config.criterion]
        self.covered = [covered_rows(train.subset(~held), train.subset(held), config.covered_radius_m)
                        for held in self.folds]

    def _fit(self, config: NobleTrainConfig, members: int) -> _FoldModels:
        key = repr(replace(config, members=1, seed=0))
        entry = self.models.get(key)
        if entry is None:
            entry = self.models[key] = _FoldModels(config, [[] for _ in self.folds], [])
        for f, held in enumerate(self.folds):
            while len(entry.nets[f]) < members:
                i = len(entry.nets[f])
                name = f"cv fold {f + 1}/{len(self.folds)} {_setting_name(config, 1)} member {i + 1}"
                member_config = replace(config, members=1, seed=config.seed + 1000 * f + i)
                localizer = self.timed(name, train_noble, self.train.subset(~held), member_config)
                if i == 0:
                    entry.localizers.append(localizer)
                entry.nets[f].append(localizer.members[0])
        return entry

    @torch.no_grad()
    def _score(self, entry: _FoldModels, members: int, stage: str) -> list[dict[str, Any]]:
        """Pooled CV metrics of every decode for the first ``members`` nets of each fold."""
        errors: dict[str, list[npt.NDArray[np.float64]]] = {d.label(): [] for d in self.decodes}
        floor_hits, building_hits, fold_rows = [], [], []
        for f, held in enumerate(self.folds):
            base = entry.localizers[f]
            model = NobleLocalizer(entry.nets[f][:members], base.grids, base.origin).eval()
            split = self.train.subset(held)
            truth = split.truth()
            cells, joint = model.probabilities(torch.from_numpy(split.rssi))
            best = torch.argmax(joint, dim=1)
            floor_hits.append((best % FLOORS_PER_BUILDING).numpy() == split.floor)
            building_hits.append((best // FLOORS_PER_BUILDING).numpy() == split.building)
            fold_rows.append(len(split))
            for decode in self.decodes:
                xy = model.local_xy(cells, best, decode).double().numpy()
                pred = Predictions(xy[:, 0] + model.origin[0], xy[:, 1] + model.origin[1],
                                   np.zeros(len(xy), np.int64), np.zeros(len(xy), np.int64))
                errors[decode.label()].append(errors_2d(pred, truth))
        name = _setting_name(entry.config, members)
        covered = np.concatenate(self.covered)
        rows = []
        for decode in self.decodes:
            per_fold = errors[decode.label()]
            pooled = np.concatenate(per_fold)
            rows.append({"stage": stage, "setting": name, "decode": decode.label(),
                         "decode_config": decode.to_dict(), "offset_db": entry.config.offset_db,
                         "drop_prob": entry.config.drop_prob, "epochs": entry.config.epochs,
                         "hidden": list(entry.config.hidden), "relative_db": entry.config.relative_db,
                         "members": members, "cv_mean_error_m": round(float(pooled.mean()), 4),
                         "cv_covered_mean_error_m": round(float(pooled[covered].mean()), 4)
                         if covered.any() else float("nan"),
                         "cv_uncovered_mean_error_m": round(float(pooled[~covered].mean()), 4)
                         if (~covered).any() else float("nan"),
                         "cv_covered_share": round(float(covered.mean()), 4),
                         "cv_median_error_m": round(float(np.median(pooled)), 4),
                         "fold_mean_error_m": [round(float(e.mean()), 4) for e in per_fold],
                         "cv_floor_hit": round(float(np.concatenate(floor_hits).mean()), 4),
                         "cv_building_hit": round(float(np.concatenate(building_hits).mean()), 4),
                         "fold_rows": fold_rows})
        return rows

    def _best(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The row with the lowest pooled CV error among the decodes that may be chosen."""
        eligible = self._eligible(rows)
        if not eligible:
            raise ValueError(f"no scored decode of the kinds {self.config.choose_kinds} to choose from")
        return min(eligible, key=lambda r: r[self.key])

    def _eligible(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["decode_config"]["kind"] in self.config.choose_kinds]

    def _stage(self, stage: str, candidates: list[tuple[NobleTrainConfig, int]]) -> list[dict[str, Any]]:
        rows = []
        for candidate, members in candidates:
            name = _setting_name(candidate, members)
            done = [r for r in self.previous
                    if r["setting"] == name and r["stage"] == stage and self.key in r]
            if len(done) == len(self.decodes) and len(self.folds) == len(done[0]["fold_rows"]):
                logger.info("cv %s: scored in the earlier run, reused", name)
                rows += [{**r, "reused": True} for r in done]
                continue
            entry = self._fit(candidate, members)
            rows += self._score(entry, members, stage)
        self.rows += rows
        return rows

    def compare(self, stage: str, candidates: list[tuple[NobleTrainConfig, int]]) -> list[dict[str, Any]]:
        """Score fixed ``(setting, members)`` candidates on these folds (every decode), choosing nothing:
        the rows of ``_score``, labelled ``stage``."""
        return self._stage(stage, candidates)

    def result(self, chosen: dict[str, Any] | None, complete: bool) -> dict[str, Any]:
        return {"complete": complete, "rows": self.rows, "chosen": chosen,
                "folds": [{"rows": int(m.sum()), "users": sorted(set(self.train.user_id[m].tolist())),
                           "phones": sorted(set(self.train.phone_id[m].tolist()))} for m in self.folds],
                "search": {**asdict(self.config), "decodes": len(self.decodes)}}

    def run(self) -> dict[str, Any]:
        """Stages 1-4; returns ``result`` with ``chosen``: the training config, members and decode."""
        cv = self.config
        first = replace(cv.base, members=1, epochs=cv.epochs[0])
        stage1 = self._stage("1 augmentation", [(replace(first, offset_db=o, drop_prob=p), 1)
                                                for o, p in cv.augmentations])
        best = self._best(stage1)
        chosen_aug = replace(first, offset_db=best["offset_db"], drop_prob=best["drop_prob"])
        self.on_stage(self.result(None, complete=False))
        stage2 = [r for r in stage1 if r["offset_db"] == chosen_aug.offset_db
                  and r["drop_prob"] == chosen_aug.drop_prob]
        stage2 += self._stage("2 epochs", [(replace(chosen_aug, epochs=e), 1) for e in cv.epochs[1:]])
        best = self._best(stage2)
        chosen_epochs = replace(chosen_aug, epochs=best["epochs"])
        self.on_stage(self.result(None, complete=False))
        stage3 = [r for r in stage2 if r["epochs"] == chosen_epochs.epochs]
        stage3 += self._stage("3 network", [
            (replace(chosen_epochs, hidden=tuple(hidden), relative_db=relative), 1)
            for hidden, relative in cv.networks
            if (tuple(hidden), relative) != (chosen_epochs.hidden, chosen_epochs.relative_db)])
        best = self._best(stage3)
        chosen_network = replace(chosen_epochs, hidden=tuple(best["hidden"]), relative_db=best["relative_db"])
        self.on_stage(self.result(None, complete=False))
        stage4 = [r for r in stage3 if tuple(r["hidden"]) == chosen_network.hidden
                  and r["relative_db"] == chosen_network.relative_db]
        stage4 += self._stage("4 ensemble size", [(chosen_network, m) for m in cv.members[1:]])
        best_error = self._best(stage4)[self.key]
        members = min(r["members"] for r in self._eligible(stage4)
                      if r[self.key] <= best_error + cv.tolerance_m)
        final = self._best([r for r in stage4 if r["members"] == members])
        chosen = {"train": asdict(replace(chosen_network, members=members, seed=0)),
                  "decode": final["decode_config"], "decode_label": final["decode"],
                  "cv_mean_error_m": final["cv_mean_error_m"], "setting": final["setting"],
                  "cv_covered_mean_error_m": final["cv_covered_mean_error_m"], "criterion": cv.criterion,
                  "rule": f"lowest CV mean 2D error over {CRITERION_TEXT[cv.criterion]} among the "
                          f"{'/'.join(cv.choose_kinds)} decodes; the smallest ensemble within "
                          f"{cv.tolerance_m} m of the best"}
        result = self.result(chosen, complete=True)
        self.on_stage(result)
        return result


def chosen_configs(chosen: dict[str, Any]) -> tuple[NobleTrainConfig, DecodeConfig]:
    """The training config and decode of a ``CrossValidation.run()['chosen']`` dict (or noble.json's)."""
    train: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in chosen["train"].items()}
    return NobleTrainConfig(**train), DecodeConfig.from_dict(chosen["decode"])
