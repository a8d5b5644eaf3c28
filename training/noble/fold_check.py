"""Does the CV design rank settings as the validation file does? Fixed settings under several fold designs.

The NObLe searches (``training.noble.selection``) chose with 3 leave-users-out folds, and their choices
ranked the other way round on the validation file (``docs/results/noble_searches.json``: search 1's
setting scored better there than search 3's, which the 3-fold CV preferred). One explanation is the fold
design: a 3-fold model trains on about two thirds of the phones, so its held-out phones differ more from
its training phones than the validation file's phones differ from the whole training file's. With
``folds`` equal to the number of user/phone groups (16) every fold leaves one group out and trains on
the rest, close to what the final model sees.

``python -m training.noble.fold_check`` trains the chosen setting of each archived search (distinct
training settings only: searches 2 and 3 chose the same one), one network per fold, under each fold
design asked for, and reports every setting's CV error under both criteria (covered rows and pooled),
each on its best on-plan decode (``plan``/``building``, as the searches choose) and on the decode its
search chose. It reads ``trainingData.csv`` only: the validation figures in its output are copied from
the search history, where they were measured, and are shown beside the CV figures for comparison.

This is a check of the protocol, not a new search: it cannot choose a setting for the results page
(its candidates were picked after their validation scores were known).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data.uji import load_uji
from training.noble.data import UjiNotFound, UjiSplit, find_file
from training.noble.results import DEFAULT_DATA, Timer
from training.noble.selection import CRITERIA, CrossValidation, CvConfig, chosen_configs, network_name
from training.noble.train import NobleTrainConfig

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "results"


def distinct_settings(searches: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per distinct chosen training setting of the archived searches (one network each):
    ``{"searches": [names], "train": NobleTrainConfig, "decodes": [chosen decode labels],
    "validation_mean_error_m": {search name: 5-seed (or fewer) mean}}``."""
    settings: dict[str, dict[str, Any]] = {}
    for search in searches:
        config, _ = chosen_configs(search["chosen"])
        config = replace(config, members=1, seed=0)
        entry = settings.setdefault(repr(config), {"searches": [], "train": config, "decodes": [],
                                                   "validation_mean_error_m": {}})
        entry["searches"].append(search["name"])
        entry["decodes"].append(search["chosen"]["decode_label"])
        entry["validation_mean_error_m"][search["name"]] = search["summary"]["noble"]["mean_error_m"]["mean"]
    return list(settings.values())


def setting_label(config: NobleTrainConfig) -> str:
    """``offset 12 dB, drop 0.3, 20 epochs, 512x512``."""
    return (f"offset {config.offset_db:g} dB, drop {config.drop_prob:g}, {config.epochs} epochs, "
            f"{network_name(config.hidden, config.relative_db)}")


def summarise_rows(rows: list[dict[str, Any]], choose_kinds: tuple[str, ...],
                   own_decodes: list[str]) -> dict[str, Any]:
    """Per criterion, the best eligible decode's error and label, and the errors of ``own_decodes``."""
    eligible = [r for r in rows if r["decode_config"]["kind"] in choose_kinds]
    if not eligible:
        raise ValueError(f"no decode of the kinds {choose_kinds} among {len(rows)} rows")
    missing = sorted(set(own_decodes) - {r["decode"] for r in rows})
    if missing:
        raise ValueError(f"the searches' decodes {missing} are not in this run's decode grid")
    result: dict[str, Any] = {}
    for criterion, key in CRITERIA.items():
        best = min(eligible, key=lambda r: r[key])
        result[criterion] = {"best_decode": best["decode"], "best_error_m": best[key],
                             "own_decodes": {label: next(r[key] for r in rows if r["decode"] == label)
                                             for label in own_decodes}}
    result["floor_hit"] = eligible[0]["cv_floor_hit"]
    result["building_hit"] = eligible[0]["cv_building_hit"]
    return result


def check(train: UjiSplit, settings: list[dict[str, Any]], fold_counts: list[int],
          timer: Timer) -> dict[str, Any]:
    """Every setting under every fold design (see the module docstring)."""
    cell_sizes = {s["train"].cell_sizes for s in settings}
    if len(cell_sizes) != 1:  # the decodes are scored on one grid of resolutions
        raise ValueError(f"the settings' cell sizes differ ({sorted(cell_sizes)}); one run checks one grid")
    designs = []
    for folds in fold_counts:
        cv_config = CvConfig(base=settings[0]["train"], folds=folds)
        cv = CrossValidation(train, cv_config, timer.run)
        entries = []
        for setting in settings:
            rows = cv.compare(f"{folds} folds", [(setting["train"], 1)])
            entries.append({"setting": setting_label(setting["train"]), "searches": setting["searches"],
                            **summarise_rows(rows, cv_config.choose_kinds, setting["decodes"])})
        designs.append({"folds": folds, "fold_rows": [int(m.sum()) for m in cv.folds],
                        "covered_share": round(float(np.concatenate(cv.covered).mean()), 4),
                        "settings": entries})
    return {"designs": designs,
            "settings": [{"setting": setting_label(s["train"]), "searches": s["searches"],
                          "decodes": s["decodes"], "validation_mean_error_m": s["validation_mean_error_m"]}
                         for s in settings],
            "members": 1, "choose_kinds": list(CvConfig().choose_kinds)}


def page(result: dict[str, Any]) -> str:
    """Markdown: one row per fold design and setting, the searches' validation figures beside them."""
    validation = {s["setting"]: s["validation_mean_error_m"] for s in result["settings"]}
    lines = ["# NObLe: does the CV design rank settings as the validation file does?", "",
             f"`{result['command']}` ({result['seconds'] / 60:.0f} min here, {result['threads']} torch "
             f"threads, CPU). Each search's chosen training setting, one network per fold; errors are "
             "mean 2D errors of the held-out rows, on the best on-plan decode (`plan`/`building`) and on "
             "the decode the search chose. The validation means are copied from "
             "`noble_searches.json` (measured there, with each search's own ensemble size and seeds); "
             "this check reads the training file only. Its settings were picked after their validation "
             "scores were known, so it checks the protocol and chooses nothing.", "",
             "| folds | setting | searches | covered rows: best on-plan | covered: own decode | "
             "pooled: best on-plan | pooled: own decode | CV floor hit | validation mean |",
             "|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for design in result["designs"]:
        for entry in design["settings"]:
            own = {c: ", ".join(f"{v:.2f}" for v in entry[c]["own_decodes"].values()) for c in CRITERIA}
            val = ", ".join(f"{v:.2f} m (search {name.split(':')[0]})"
                            for name, v in validation[entry["setting"]].items())
            lines.append(f"| {design['folds']} | {entry['setting']} | "
                         f"{', '.join(n.split(':')[0] for n in entry['searches'])} | "
                         f"{entry['covered']['best_error_m']:.2f} | {own['covered']} | "
                         f"{entry['pooled']['best_error_m']:.2f} | {own['pooled']} | "
                         f"{entry['floor_hit']:.2%} | {val} |")
    lines += ["", "Fold designs: " + "; ".join(
        f"{d['folds']} folds of {min(d['fold_rows'])}-{max(d['fold_rows'])} rows, "
        f"{d['covered_share']:.0%} of held-out rows covered" for d in result["designs"]) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.noble.fold_check",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="UJIIndoorLoc folder")
    parser.add_argument("--searches", type=Path, default=DEFAULT_OUT / "noble_searches.json",
                        help="the search history whose chosen settings are checked")
    parser.add_argument("--folds", default="3,16", help="fold designs, comma-separated (16 = one "
                        "user/phone group per fold)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="writes noble_fold_check.json and noble_fold_check.md here")
    parser.add_argument("--doc-only", action="store_true",
                        help="re-render noble_fold_check.md from OUT/noble_fold_check.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.doc_only:
        try:
            saved = json.loads((args.out / "noble_fold_check.json").read_text())
        except (OSError, ValueError) as error:
            sys.stderr.write(f"error: {error}\n")
            return 2
        (args.out / "noble_fold_check.md").write_text(page(saved))
        return 0
    started = time.perf_counter()
    try:
        fold_counts = [int(f) for f in args.folds.split(",")]
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        searches = json.loads(args.searches.read_text())
        if not isinstance(searches, list) or not searches:
            raise ValueError(f"{args.searches} holds no searches")
        settings = distinct_settings(searches)
        if not args.data.is_dir():
            raise UjiNotFound(f"{args.data} is not a directory (expected the UJIIndoorLoc folder)")
        train = UjiSplit.from_uji(load_uji(find_file(args.data, "train")))
        timer = Timer()
        result = check(train, settings, fold_counts, timer)
    except (ValueError, OSError, KeyError) as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    command = "python -m training.noble.fold_check"
    command += f" --threads {args.threads}" if args.threads > 1 else ""
    result.update({"command": command if args.folds == "3,16" else f"{command} --folds {args.folds}",
                   "threads": args.threads, "seconds": round(time.perf_counter() - started, 1),
                   "stage_seconds": timer.seconds,
                   "finished_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "noble_fold_check.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "noble_fold_check.md").write_text(page(result))
    sys.stdout.write(page(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
