"""``python -m training.dlrm.results``: the accuracy study of docs/results/dlrm.* (``make results-dlrm``).

Protocol (issue 11). Same DLRM, same data, same optimizer; only the embedding differs:

- **Data**: ``synthetic-v2`` (``python -m training.data synth-criteo``, generator v2: per-value effects
  that fade with rarity, aliased feature groups) and ``synthetic-null`` (the same command with
  ``NULL_CONTROL_FLAG``: the generator's old behaviour, where every value carries an independent effect
  and no feature is redundant). 80/10/10 train/validation/test split by position.
- **Grid**: full tables (1x); the hashing trick, ROBE Z = 1, ROBE Z = d and LMA at 4, 16, 64, 256 and
  1000x less embedding memory than full tables.
- **Training to convergence**: up to ``max_epochs`` epochs, validation AUC ``evals_per_epoch`` times
  per epoch, stop after ``patience`` evaluations without a better one and keep the best weights. The
  test split is scored once, with the kept weights; its logits are saved so that methods are compared
  on the same rows.
- **Seeds**: 3 seeds at the key points (full, and every method at 16x and 64x, where the targets are), 1
  elsewhere; the paired bootstrap (``training.dlrm.metrics.paired_bootstrap_auc``, 1000 resamples, seed
  0) gives the 95% interval of each AUC difference.
- **Oracle** (``training.data.oracle.oracle_table``, when installed): the AUC of the true logits with the
  per-value effects kept only for the values each budget can hold.

Profiles size the study: ``cpu`` (default; this 2-core machine, see ``PROFILES``), ``gpu`` (chosen with
``--device cuda``: more rows and the ``kaggle`` config) and ``smoke`` (``--smoke``: tiny rows, 2 methods,
2 budgets, 2 epochs, docs written under the runs directory: proves the pipeline end to end).

Each run lives in ``RUNS/<dataset>/<run>/``: a finished run (metrics.json present) is skipped and an
interrupted one resumes from its checkpoint, so the script can be stopped and restarted at will (run it
with ``nice``). The report (``training.dlrm.results_report``) evaluates the targets of issue 11 itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.dlrm import cli as dlrm_cli
from training.dlrm.results_report import write_report

logger = logging.getLogger(__name__)

# The synth-criteo flag that reproduces the generator's old behaviour (the null control). One place:
# the generator (training.data, issue 11 deliverable 3) owns the flag, this study only passes it.
NULL_CONTROL_FLAG = "--null-control"
SYNTHETIC_V2, SYNTHETIC_NULL = "synthetic-v2", "synthetic-null"
DATASETS = (SYNTHETIC_V2, SYNTHETIC_NULL)
COMPRESSIONS = (4.0, 16.0, 64.0, 256.0, 1000.0)
KEY_COMPRESSIONS = (16.0, 64.0)
DATA_SEED = 0


@dataclass(frozen=True)
class Profile:
    """How big the study is.

    Args:
        name: ``cpu``, ``gpu`` or ``smoke``.
        rows: synthetic rows generated per data set (80/10/10 train/validation/test).
        config: DLRM preset (``tiny``: dim 16, bottom 13-64-16, top 64-32-1).
        batch_size: global batch.
        max_epochs: epochs at most (early stopping usually ends sooner).
        patience: evaluations without a better validation AUC before stopping.
        evals_per_epoch: validation evaluations per epoch (the shards hold 80% of the rows for training).
        seeds: seeds of the key points; other points run the first seed only.
        compressions: the budgets (x less memory than full tables).
        key_compressions: the budgets that get every seed.
        labels: the methods run (None: all of ``variants``).
        dim: the preset's embedding dimension (ROBE Z = d).
        threads: torch threads of runs trained in this process (None: torch's default).
    """

    name: str
    rows: int
    config: str
    batch_size: int
    max_epochs: int
    patience: int
    evals_per_epoch: int = 2
    seeds: tuple[int, ...] = (0, 1, 2)
    compressions: tuple[float, ...] = COMPRESSIONS
    key_compressions: tuple[float, ...] = KEY_COMPRESSIONS
    labels: tuple[str, ...] | None = None
    dim: int = 16
    threads: int | None = None

    def eval_every(self) -> int:
        """Steps between validation evaluations."""
        return max(1, int(self.rows * 0.8) // self.batch_size // self.evals_per_epoch)


# cpu: sized for <= 90 minutes on a shared 2-core machine with 2 one-thread runs at once (measured there:
# 61-68 s per run, about 45 minutes for the 78 runs; docs/results/dlrm.md). The tiny preset keeps the
# MLP cost low so that the embedding decides; 300K rows give 240K training rows and 30K test rows (one
# AUC's standard error ~0.004; paired differences on the same rows, averaged over 3 seeds, are far
# tighter).
PROFILES = {
    "cpu": Profile("cpu", rows=300_000, config="tiny", batch_size=1024, max_epochs=8, patience=2),
    "gpu": Profile("gpu", rows=4_000_000, config="kaggle", batch_size=2048, max_epochs=10, patience=2),
    "smoke": Profile("smoke", rows=8_000, config="tiny", batch_size=256, max_epochs=2, patience=1,
                     evals_per_epoch=1,
                     seeds=(0, 1), compressions=(16.0, 64.0), key_compressions=(), threads=1,
                     labels=("full", "robe Z=16", "lma")),
}


@dataclass(frozen=True)
class Variant:
    """A method at one compression: ``label`` names it in tables and plots."""

    label: str
    method: str
    compression: float | None
    block_size: int | None = None
    extra: tuple[str, ...] = ()
    selection: bool = False  # an LMA hyper-parameter candidate: generator v2, first seed only

    def slug(self) -> str:
        x = "1x" if self.compression is None else f"{self.compression:g}x"
        return f"{self.label.replace(' ', '_').replace('=', '')}-{x}"


@dataclass(frozen=True)
class Dataset:
    """One generated data set: its name (the ``dataset`` of dlrm.json), file and generator flags."""

    name: str
    path: Path
    generator_flags: tuple[str, ...] = ()


# LMA at equal ARRAY bytes with ROBE-Z (the LMA paper's accounting; its key and signature tables come on
# top of the budget and are counted in parameter_bytes), run at the key budgets only. ``lma`` is LMA at
# equal SERVING bytes (array + tables within the budget). DESIGN.md section 1: report both.
LMA_EQUAL_ARRAY = "lma equal-array"
# LMA hyper-parameters inside DESIGN.md's definition, tried because LMA loses to ROBE Z = 1 (diagnosis:
# ``python -m training.dlrm.lma_collisions``): each at SELECTION_COMPRESSION, first seed, generator v2
# only, and chosen on the VALIDATION AUC (never test) against the default ``lma``. The one chosen
# (``LMA_TUNED``) then runs like the key points: every seed, 16x and 64x, both data sets.
LMA_CANDIDATES: dict[str, tuple[str, ...]] = {
    "lma k=4": ("--lma-k", "4"),  # block codes of 4 minhashes: only near-duplicates share (J^4)
    "lma k=6": ("--lma-k", "6"),
    "lma head-free": ("--lma-max-share", "0.01"),  # tokens in > 1% of rows keep ROBE-Z locations
    "lma sig 5%": ("--signature-fraction", "0.05"),  # fewer signatures, a larger array
}
SELECTION_COMPRESSION = 16.0
LMA_TUNED: str | None = "lma k=4"  # the best validation AUC of the selection (docs/results/dlrm.md)


def variants(profile: Profile) -> list[Variant]:
    """Full tables, then every compressed method at every budget (LMA with its default Z), and at the key
    budgets LMA under the paper's accounting (equal array bytes)."""
    dim = profile.dim
    grid = [Variant("full", "full", None)]
    for x in profile.compressions:
        grid += [Variant("hash", "hash", x), Variant("robe Z=1", "robe", x, 1),
                 Variant(f"robe Z={dim}", "robe", x, dim), Variant("lma", "lma", x)]
        if x in profile.key_compressions:
            grid += [Variant(LMA_EQUAL_ARRAY, "lma", x, extra=("--lma-budget", "array"))]
            grid += [Variant(label, "lma", x, extra=extra, selection=label != LMA_TUNED)
                     for label, extra in LMA_CANDIDATES.items()
                     if label == LMA_TUNED or x == SELECTION_COMPRESSION]
    return [v for v in grid if profile.labels is None or v.label in profile.labels]


def seeds_of(profile: Profile, variant: Variant) -> tuple[int, ...]:
    key = not variant.selection and (variant.compression is None or variant.compression in
                                     profile.key_compressions)
    return profile.seeds if key else profile.seeds[:1]


def datasets(data_dir: Path, profile: Profile, only: set[str] | None = None) -> list[Dataset]:
    found = [Dataset(SYNTHETIC_V2, data_dir / f"{SYNTHETIC_V2}-{profile.rows}.tsv"),
             Dataset(SYNTHETIC_NULL, data_dir / f"{SYNTHETIC_NULL}-{profile.rows}.tsv", (NULL_CONTROL_FLAG,))]
    return [d for d in found if only is None or d.name in only]


def synth_command(dataset: Dataset, rows: int) -> list[str]:
    """The generator command of ``dataset`` (``python -m training.data synth-criteo ...``)."""
    return [sys.executable, "-m", "training.data", "synth-criteo", "--rows", str(rows), "--out",
            str(dataset.path), "--seed", str(DATA_SEED), *dataset.generator_flags]


class StudyError(RuntimeError):
    """The study cannot run (e.g. the generator lacks the null-control flag); one readable line."""


def ensure_data(dataset: Dataset, rows: int) -> None:
    """Generate ``dataset`` unless its file exists."""
    if dataset.path.exists():
        return
    command = synth_command(dataset, rows)
    for flag in dataset.generator_flags:
        usage = subprocess.run([*command[:4], "--help"], capture_output=True, text=True, check=False).stdout
        if flag not in usage:
            raise StudyError(f"`python -m training.data synth-criteo` has no {flag} flag (generator v2 with "
                             f"its null control is needed for {dataset.name})")
    dataset.path.parent.mkdir(parents=True, exist_ok=True)
    logger.info("generating %s", " ".join(command[1:]))
    subprocess.run(command, check=True)


def run_argv(dataset: Dataset, profile: Profile, variant: Variant, seed: int, run_dir: Path, cache: Path,
             device: str) -> list[str]:
    """``python -m training dlrm`` arguments of one run."""
    argv = ["--data", str(dataset.path), "--embedding", variant.method, "--config", profile.config,
            "--out", str(run_dir), "--epochs", str(profile.max_epochs),
            "--eval-every", str(profile.eval_every()),
            "--patience", str(profile.patience), "--batch-size", str(profile.batch_size),
            "--seed", str(seed), "--cache-dir", str(cache), "--device", device, "--resume",
            "--log-level", "WARNING"]
    if variant.compression is not None:
        argv += ["--compression", f"{variant.compression:g}"]
    if variant.block_size is not None:
        argv += ["--block-size", str(variant.block_size)]
    argv += list(variant.extra)
    if profile.threads is not None:
        argv += ["--threads", str(profile.threads)]
    return argv


Job = tuple[Dataset, Variant, int, Path]


def grid(sets: list[Dataset], profile: Profile, runs: Path) -> list[Job]:
    """Every run of the study, the key points (every seed) first, so an interrupted study has them."""
    jobs = [(d, v, s, runs / d.name / f"{v.slug()}-seed{s}")
            for d in sets for v in variants(profile) for s in seeds_of(profile, v)
            if not v.selection or d.name == SYNTHETIC_V2]
    return sorted(jobs, key=lambda job: (job[1].compression not in (None, *profile.key_compressions),
                                         job[2] != profile.seeds[0]))


def run_grid(sets: list[Dataset], profile: Profile, runs: Path, device: str, train: bool,
             jobs: int = 1) -> list[dict[str, Any]]:
    """Train every missing run (``jobs`` > 1: that many 1-thread CLI processes at once) and return every
    finished run's metrics with its labels, its command and the directory of its test predictions."""
    cache = runs / "cache"
    todo = grid(sets, profile, runs)
    missing = [job for job in todo if train and not (job[3] / "metrics.json").exists()]
    if missing:
        from training.data.shards import prepare

        for dataset in dict.fromkeys(job[0] for job in missing):
            prepare(dataset.path, cache)  # once, before parallel runs would race to preprocess it
    started = time.perf_counter()
    if jobs > 1:
        with ThreadPoolExecutor(jobs) as pool:
            list(tqdm(pool.map(lambda job: _run_process(job, profile, cache, device), missing),
                      total=len(missing), desc="results-dlrm"))
    else:
        for job in tqdm(missing, desc="results-dlrm"):
            _run_in_process(job, profile, cache, device)
    if missing:
        logger.info("%d runs in %.0f s", len(missing), time.perf_counter() - started)
    results = []
    for dataset, variant, seed, run_dir in todo:
        if (run_dir / "metrics.json").exists():
            metrics = json.loads((run_dir / "metrics.json").read_text())
            argv = run_argv(dataset, profile, variant, seed, run_dir, cache, metrics.get("device", device))
            results.append({"dataset": dataset.name, "label": variant.label, "seed": seed,
                            "nominal_compression": variant.compression or 1.0, "run_dir": str(run_dir),
                            "command": " ".join(["python -m training dlrm", *argv]), "metrics": metrics})
    return results


def _run_in_process(job: Job, profile: Profile, cache: Path, device: str) -> None:
    dataset, variant, seed, run_dir = job
    argv = run_argv(dataset, profile, variant, seed, run_dir, cache, device)
    logger.info("python -m training dlrm %s", " ".join(argv))
    started = time.perf_counter()
    if dlrm_cli.main(argv) != 0:
        logger.error("run %s failed; continuing with the others", run_dir)
    else:
        logger.info("%s finished in %.0f s", run_dir, time.perf_counter() - started)


def _run_process(job: Job, profile: Profile, cache: Path, device: str) -> None:
    dataset, variant, seed, run_dir = job
    argv = [*run_argv(dataset, profile, variant, seed, run_dir, cache, device)]
    argv += [] if profile.threads is not None else ["--threads", "1"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training", "dlrm", *argv], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    if done.returncode != 0:
        logger.error("run %s failed: %s", run_dir, done.stderr.strip().splitlines()[-1:])
    else:
        logger.info("%s finished in %.0f s", run_dir, time.perf_counter() - started)


def oracle(dataset: Dataset, runs: list[dict[str, Any]], profile: Profile, cache: Path) -> dict[str, Any]:
    """The oracle table of ``dataset`` at the study's budgets (cached beside its runs), or ``{"error"}``
    saying why there is none."""
    full = next((r for r in runs if r["dataset"] == dataset.name and r["label"] == "full"), None)
    if full is None:
        return {"error": "no finished full-table run: the budgets are fractions of its embedding bytes"}
    budgets = [int(full["metrics"]["full_embedding_bytes"] / x) for x in profile.compressions]
    path = cache / f"oracle-{dataset.name}-{profile.rows}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved.get("budgets_bytes") == budgets:
            return dict(saved["table"])
    try:
        from training.data.oracle import oracle_table
    except ImportError as exc:
        return {"error": f"training.data.oracle is not installed ({exc})"}
    if not dataset.path.exists():
        return {"error": f"{dataset.path} is missing (the oracle regenerates its logits from it)"}
    logger.info("oracle table of %s at %d budgets", dataset.name, len(budgets))
    try:
        table = oracle_table(dataset.path, budgets, profile.dim, split="test")
    except Exception as exc:  # the oracle is another module's code: report its failure, keep the study
        logger.exception("oracle_table failed")
        return {"error": f"oracle_table failed: {exc}"}
    nominal = dict(zip(budgets, profile.compressions, strict=True))  # rows matched by budget, not position
    rows = [{**row, "nominal_compression": nominal.get(int(row["budget_bytes"]))} for row in table["rows"]]
    table = {**table, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"budgets_bytes": budgets, "table": table}, indent=1) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dlrm.results",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", action="append", choices=list(DATASETS), help="one data set (repeatable)")
    parser.add_argument("--smoke", action="store_true", help="tiny end-to-end check (profile smoke)")
    parser.add_argument("--profile", choices=list(PROFILES), help="default: gpu with --device cuda, else cpu")
    parser.add_argument("--rows", type=int, help="override the profile's synthetic rows")
    parser.add_argument("--runs", type=Path, help="run directories (default runs/results, smoke: runs/smoke)")
    parser.add_argument("--docs", type=Path, help="report directory (default docs/results, smoke: RUNS/docs)")
    parser.add_argument("--data-dir", type=Path, default=Path("data/results"),
                        help="generated data files (made unless they exist)")
    parser.add_argument("--device", default=dlrm_cli.build_parser().get_default("device"))
    parser.add_argument("--label", action="append", dest="labels",
                        help="train only this method label, e.g. 'robe Z=1' (repeatable; the report still "
                        "covers every finished run)")
    parser.add_argument("--report-only", action="store_true", help="rewrite the docs from finished runs")
    parser.add_argument("--jobs", type=int, help="runs at once, each a 1-thread process (default: CPU cores "
                        "up to 4 on CPU, 1 on a GPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(force=True, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    name = "smoke" if args.smoke else args.profile or ("gpu" if args.device.startswith("cuda") else "cpu")
    profile = PROFILES[name] if args.rows is None else replace(PROFILES[name], rows=args.rows)
    runs = args.runs or Path("runs/smoke" if args.smoke else "runs/results")
    docs = args.docs or (runs / "docs" if args.smoke else Path("docs/results"))
    jobs = args.jobs or (1 if args.device.startswith("cuda") else min(os.cpu_count() or 1, 4))
    sets = datasets(args.data_dir, profile, set(args.only) if args.only else None)
    try:
        if not args.report_only:
            for dataset in sets:
                ensure_data(dataset, profile.rows)
        if args.labels and not args.report_only:
            known = {v.label for v in variants(replace(profile, labels=None))}
            unknown = sorted(set(args.labels) - known)
            if unknown:
                raise StudyError(f"unknown --label {', '.join(unknown)}; known: {', '.join(sorted(known))}")
            run_grid(sets, replace(profile, labels=tuple(args.labels)), runs, args.device, True, jobs)
        results = run_grid(sets, profile, runs, args.device, not args.report_only and not args.labels, jobs)
        oracles = {d.name: oracle(d, results, profile, runs / "cache") for d in sets}
        write_report(results, docs, profile_facts(profile, name, jobs), oracles)
    except (StudyError, subprocess.CalledProcessError, OSError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


def profile_facts(profile: Profile, name: str, jobs: int) -> dict[str, Any]:
    """The study's settings as the report states them."""
    return {"profile": name, "rows": profile.rows, "config": profile.config, "batch_size": profile.batch_size,
            "max_epochs": profile.max_epochs, "patience": profile.patience,
            "evals_per_epoch": profile.evals_per_epoch, "seeds": list(profile.seeds),
            "compressions": list(profile.compressions), "key_compressions": list(profile.key_compressions),
            "dim": profile.dim, "jobs": jobs, "null_control_flag": NULL_CONTROL_FLAG,
            "lma_equal_array": LMA_EQUAL_ARRAY,
            "lma_candidates": {label: list(extra) for label, extra in LMA_CANDIDATES.items()},
            "lma_selection_compression": SELECTION_COMPRESSION, "lma_tuned": LMA_TUNED}


if __name__ == "__main__":
    sys.exit(main())
