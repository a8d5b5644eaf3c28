"""``python -m training.dlrm.results``: the AUC-vs-memory grid of docs/results (``make results-dlrm``).

Trains full tables, the hashing trick, ROBE (Z = 1 and Z = d) and LMA at 16x, 100x and 1000x compression on

- ``synthetic``: ``python -m training.data synth-criteo`` with its default distribution, 2M rows, ``kaggle``
  config, 1 epoch, 1 seed;
- ``criteo_15k`` and ``avazu_9k``: the real samples in ``../shared/data``, ``tiny`` config, 3 seeds (the
  spread over seeds is the noise reported beside each AUC);

then writes docs/results/dlrm.json, the tables of docs/results/dlrm.md and dlrm_auc_vs_memory.png.
Each run lives in ``runs/results/<dataset>/<run>/``: a finished run (metrics.json present) is skipped and an
interrupted one resumes from its checkpoint, so the script can be stopped and restarted at will (run it with
``nice``). With the synthetic set it also measures CPU training throughput, full vs the compressed methods
alternating (``python -m training.dlrm.throughput``), into ``runs/results/throughput_cpu.json``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.data.shards import prepare
from training.dlrm import cli as dlrm_cli
from training.dlrm import throughput
from training.dlrm.results_report import write_report

logger = logging.getLogger(__name__)

COMPRESSIONS = (16.0, 100.0, 1000.0)
COOCCURRENCE = ("--lma-sets", "cooccurrence", "--signature-rows", "50000")  # 25 elements per occurrence
SYNTHETIC_ROWS = 2_000_000


@dataclass(frozen=True)
class Dataset:
    """One benchmark: where the data comes from and how every method is trained on it.

    Args:
        name: the ``dataset`` field of docs/results/dlrm.json.
        data: shard directory or raw file.
        config: DLRM preset.
        seeds: one run per seed.
        epochs: training length (the same for every method).
        batch_size: global batch.
        dim: the preset's embedding dimension (Z = d for ROBE).
        extra: more CLI flags for every run.
    """

    name: str
    data: Path
    config: str
    seeds: tuple[int, ...]
    epochs: float
    batch_size: int
    dim: int = 16
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """A method at one compression: ``label`` names it in tables and plots."""

    label: str
    method: str
    compression: float | None
    block_size: int | None = None
    extra: tuple[str, ...] = ()

    def slug(self) -> str:
        x = "1x" if self.compression is None else f"{self.compression:g}x"
        return f"{self.label.replace(' ', '_').replace('=', '')}-{x}"


def variants(dim: int) -> list[Variant]:
    """The grid: full (1x) and every compressed method at every compression, the runs the targets need
    first (ROBE at 1000x, then everything at 16x), so an interrupted grid has them."""
    grid = [Variant("full", "full", None)]
    for x in COMPRESSIONS:
        grid += [
            Variant(f"robe Z={dim}", "robe", x, dim),
            Variant("robe Z=1", "robe", x, 1),
            Variant("hash", "hash", x),
            Variant("lma", "lma", x, 4),
            Variant("lma cooccurrence", "lma", x, 4, COOCCURRENCE),
        ]
    first = [v for v in grid if v.method == "robe" and v.compression == COMPRESSIONS[-1]]
    return [grid[0], *first, *(v for v in grid[1:] if v not in first)]


def datasets(synthetic: Path, shared: Path, only: set[str] | None) -> list[Dataset]:
    small = ("--eval-every-epoch", "--restore-best")  # early stopping: the samples overfit within epochs
    found = [
        Dataset("synthetic", synthetic, "kaggle", (0,), 1.0, 2048),
        Dataset("criteo_15k", shared / "criteo" / "criteo_15k.tsv.gz", "tiny", (0, 1, 2), 4, 256, 16, small),
        Dataset("avazu_9k", shared / "avazu" / "avazu_9k.csv.gz", "tiny", (0, 1, 2), 4, 256, 16, small),
    ]
    return [d for d in found if only is None or d.name in only]


def ensure_synthetic(path: Path, rows: int) -> None:
    """Generate the synthetic Criteo file with the generator's defaults (seed 0) unless it exists."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "training.data", "synth-criteo", "--rows", str(rows), "--out", str(path),
               "--seed", "0"]
    logger.info("generating %s", " ".join(command))
    subprocess.run(command, check=True)


def run_argv(dataset: Dataset, variant: Variant, seed: int, run_dir: Path, cache: Path,
             device: str) -> list[str]:
    argv = ["--data", str(dataset.data), "--embedding", variant.method, "--config", dataset.config,
            "--out", str(run_dir), "--epochs", f"{dataset.epochs:g}", "--batch-size", str(dataset.batch_size),
            "--seed", str(seed), "--cache-dir", str(cache), "--device", device, "--resume",
            "--log-level", "WARNING", *dataset.extra, *variant.extra]
    if variant.compression is not None:
        argv += ["--compression", f"{variant.compression:g}"]
    if variant.block_size is not None:
        argv += ["--block-size", str(variant.block_size)]
    return argv


def run_grid(sets: list[Dataset], out: Path, cache: Path, device: str, train: bool,
             jobs: int = 1) -> list[dict[str, Any]]:
    """Train every missing run (when ``train``; ``jobs`` > 1: that many 1-thread CLI processes at once)
    and return every finished run's metrics with its labels."""
    grid = [(d, v, s, out / d.name / f"{v.slug()}-seed{s}")
            for d in sets for v in variants(d.dim) for s in d.seeds]
    missing = [job for job in grid if train and not (job[3] / "metrics.json").exists()]
    for dataset in {job[0] for job in missing}:
        prepare(dataset.data, cache)  # once, before parallel runs would race to preprocess the same file
    if jobs > 1:
        with ThreadPoolExecutor(jobs) as pool:
            list(tqdm(pool.map(lambda job: _run_process(job, cache, device), missing), total=len(missing),
                      desc="results-dlrm"))
    else:
        for job in tqdm(missing, desc="results-dlrm"):
            _run_in_process(job, cache, device)
    results = []
    for dataset, variant, seed, run_dir in grid:
        if (run_dir / "metrics.json").exists():
            metrics = json.loads((run_dir / "metrics.json").read_text())
            argv = run_argv(dataset, variant, seed, run_dir, cache, metrics.get("device", device))
            results.append({"dataset": dataset.name, "label": variant.label, "seed": seed,
                            "command": " ".join(["python -m training dlrm", *argv]), "metrics": metrics})
    return results


Job = tuple[Dataset, Variant, int, Path]


def _run_in_process(job: Job, cache: Path, device: str) -> None:
    dataset, variant, seed, run_dir = job
    argv = run_argv(dataset, variant, seed, run_dir, cache, device)
    logger.info("python -m training dlrm %s", " ".join(argv))
    started = time.perf_counter()
    if dlrm_cli.main(argv) != 0:
        logger.error("run %s failed; continuing with the others", run_dir)
    else:
        logger.info("%s finished in %.0f s", run_dir, time.perf_counter() - started)


def _run_process(job: Job, cache: Path, device: str) -> None:
    dataset, variant, seed, run_dir = job
    argv = [*run_argv(dataset, variant, seed, run_dir, cache, device), "--threads", "1"]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training", "dlrm", *argv], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        logger.error("run %s failed: %s", run_dir, done.stderr.strip().splitlines()[-1:])
    else:
        logger.info("%s finished in %.0f s", run_dir, time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dlrm.results", description=__doc__)
    parser.add_argument("--only", action="append", choices=["synthetic", "criteo_15k", "avazu_9k"],
                        help="run only this dataset (repeatable)")
    parser.add_argument("--shared-data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/results"))
    parser.add_argument("--docs", type=Path, default=Path("docs/results"))
    parser.add_argument("--synthetic-rows", type=int, default=SYNTHETIC_ROWS)
    parser.add_argument("--synthetic-file", type=Path, default=Path("data/results/synthetic.tsv"),
                        help="generated here unless it exists")
    parser.add_argument("--device", default=dlrm_cli.build_parser().get_default("device"))
    parser.add_argument("--report-only", action="store_true", help="rewrite the docs from finished runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once, each a 1-thread process (CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        force=True,
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sets = datasets(args.synthetic_file, args.shared_data, set(args.only) if args.only else None)
    missing = [str(d.data) for d in sets if d.name != "synthetic" and not d.data.exists()]
    if missing:
        sys.stderr.write(f"error: data not found: {', '.join(missing)} (see --shared-data)\n")
        return 2
    for dataset in sets:
        if dataset.name == "synthetic" and not args.report_only:
            ensure_synthetic(dataset.data, args.synthetic_rows)
    results = run_grid(sets, args.runs, args.runs / "cache", args.device, not args.report_only, args.jobs)
    speed = args.runs / "throughput_cpu.json"
    synthetic = next((d for d in sets if d.name == "synthetic"), None)
    if synthetic is not None and not args.report_only and not speed.exists():
        throughput.main(["--data", str(synthetic.data), "--cache-dir", str(args.runs / "cache"),
                         "--device", "cpu", "--rounds", "5", "--steps", "8", "--out", str(speed)])
    write_report(results, args.docs, json.loads(speed.read_text()) if speed.exists() else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
