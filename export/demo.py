"""``python -m export.demo --repository models``: the demo model repository, from nothing, in minutes.

1. synthetic Criteo-like data (``python -m training.data synth-criteo``), preprocessed into shards once;
2. four small DLRMs on the same data and architecture, only the embedding differs: ``dlrm-full``,
   ``dlrm-hash``, ``dlrm-robe``, ``dlrm-lma`` (``python -m training dlrm``);
3. ``noble-wifi`` (``python -m training noble --demo``) when the NObLe trainer and exporter exist: the
   configuration ``docs/results/noble.json`` reports as served (chosen by cross-validation), seed 0, so
   the served model is the results page's;
4. every run exported and verified into the repository (``export.exporter.export_run``).

Each step is a documented CLI run as a subprocess (its own progress bar shows); finished steps are
skipped on a re-run, and a model already in the repository is kept unless ``--force`` adds a version.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from export.cli import Parser, setup_logging

logger = logging.getLogger(__name__)

DLRM_METHODS = ("full", "hash", "robe", "lma")


class DemoError(Exception):
    """A step of the demo failed; the message names it."""


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo (defaults: the four DLRMs train in about a minute on 2 idle CPU cores).

    The DLRMs train with early stopping: validation AUC ``evals_per_epoch`` times per epoch, stop after
    ``patience`` evaluations without a better one, keep the best weights (with 80K training rows the
    full tables over-fit within two epochs: trained for a fixed 2.6 epochs the old demo's ``dlrm-full`` had
    validation log loss 0.95). Every model gets the same rule, so what differs is the embedding alone.

    Args:
        repository: the model repository to fill.
        workdir: data, shards and run directories (kept for re-runs).
        rows: synthetic rows (80/10/10 train/val/test).
        epochs: most training epochs per DLRM.
        batch_size: training batch size.
        compression: memory reduction of hash, robe and lma against full tables.
        seed: data and training seed.
        force: export a new version even when the model already exists.
        patience: evaluations without a better validation AUC before a DLRM stops.
        evals_per_epoch: validation evaluations per epoch.
    """

    repository: Path
    workdir: Path
    rows: int = 100_000
    epochs: float = 2.0
    batch_size: int = 1024
    compression: float = 10.0
    seed: int = 0
    force: bool = False
    patience: int = 1
    evals_per_epoch: int = 2

    def __post_init__(self) -> None:
        if self.rows < 1000 or not self.epochs > 0 or self.batch_size < 1:
            raise ValueError("need rows >= 1000, epochs > 0 and batch_size >= 1")
        if self.patience < 1 or self.evals_per_epoch < 1:
            raise ValueError("need patience >= 1 and evals_per_epoch >= 1")
        if not self.compression >= 1:
            raise ValueError(f"compression must be >= 1, got {self.compression}")

    def eval_every(self) -> int:
        """Steps between validation evaluations (the shards hold 80% of the rows for training)."""
        steps_per_epoch = max(1, int(self.rows * 0.8) // self.batch_size)
        return max(1, steps_per_epoch // self.evals_per_epoch)


def _run(step: str, args: list[str]) -> None:
    command = [sys.executable, *args]
    logger.info("%s: %s", step, " ".join(command[1:]))
    if subprocess.run(command, check=False).returncode != 0:
        raise DemoError(f"{step} failed: {' '.join(command[1:])}")


def _data(config: DemoConfig) -> Path:
    raw = config.workdir / "data" / "synthetic-criteo.tsv"
    shards = config.workdir / "shards"
    if not (shards / "meta.json").exists():
        raw.parent.mkdir(parents=True, exist_ok=True)
        if not raw.exists():
            _run("synthetic data", ["-m", "training.data", "synth-criteo", "--rows", str(config.rows),
                                    "--out", str(raw), "--seed", str(config.seed)])
        _run("shards", ["-m", "training.data", "preprocess", "--format", "criteo", "--input", str(raw),
                        "--out", str(shards)])
    return shards


def _train_dlrm(config: DemoConfig, shards: Path, method: str) -> Path:
    run_dir = config.workdir / "runs" / f"dlrm-{method}"
    if (run_dir / "metrics.json").exists():  # written when a run ends; an interrupted one resumes
        return run_dir
    budget = [] if method == "full" else ["--compression", str(config.compression)]
    _run(f"train dlrm-{method}", ["-m", "training", "dlrm", "--data", str(shards), "--embedding", method,
                                  *budget, "--config", "tiny", "--out", str(run_dir),
                                  "--epochs", f"{config.epochs:g}", "--batch-size", str(config.batch_size),
                                  "--eval-every", str(config.eval_every()), "--patience",
                                  str(config.patience), "--block-size", "4", "--seed", str(config.seed),
                                  "--threads", "1", "--resume"])  # 1 thread: tiny MLPs, shared cores
    return run_dir


def noble_available() -> bool:
    """The NObLe trainer and its exporter (``export.noble``) are both installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("training.noble.cli", "export.noble"))


def _train_noble(config: DemoConfig) -> Path:
    run_dir = config.workdir / "runs" / "noble-wifi"
    if not (run_dir / "checkpoint.pt").exists():
        _run("train noble-wifi", ["-m", "training", "noble", "--demo", "--out", str(run_dir),
                                  "--seed", str(config.seed)])
    return run_dir


def _export(config: DemoConfig, run_dir: Path, name: str) -> Path | None:
    from export.exporter import ExportOptions, export_run
    from export.repository import versions

    if versions(config.repository, name) and not config.force:
        logger.info("%s already in %s: kept (use --force for a new version)", name, config.repository)
        return None
    return export_run(run_dir, ExportOptions(config.repository, name))


def build(config: DemoConfig) -> list[Path]:
    """Run every step; return the published version directories."""
    steps = ["data", *DLRM_METHODS] + (["noble-wifi"] if noble_available() else [])
    if not noble_available():
        logger.warning("training.noble.cli or export.noble not found: noble-wifi is skipped")
    published = []
    with tqdm(total=len(steps) * 2 - 1, desc="demo models", unit="step") as progress:
        shards = _data(config)
        progress.update()
        for method in DLRM_METHODS:
            run_dir = _train_dlrm(config, shards, method)
            progress.update()
            published.append(_export(config, run_dir, f"dlrm-{method}"))
            progress.update()
        if noble_available():
            run_dir = _train_noble(config)
            progress.update()
            published.append(_export(config, run_dir, "noble-wifi"))
            progress.update()
    return [p for p in published if p is not None]


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export.demo", description="Train and export the demo models.")
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--workdir", type=Path, default=Path("build/demo"),
                        help="data, shards and runs (kept so a re-run skips finished steps)")
    parser.add_argument("--rows", type=int, default=DemoConfig.rows)
    parser.add_argument("--epochs", type=float, default=DemoConfig.epochs, help="most epochs per DLRM")
    parser.add_argument("--patience", type=int, default=DemoConfig.patience,
                        help="DLRM early stopping: evaluations without a better validation AUC")
    parser.add_argument("--batch-size", type=int, default=DemoConfig.batch_size)
    parser.add_argument("--compression", type=float, default=DemoConfig.compression)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="export new versions of existing models")
    args = parser.parse_args(argv)
    setup_logging(False)
    from export.exporter import ExportError

    try:
        config = DemoConfig(args.repository, args.workdir, args.rows, args.epochs, args.batch_size,
                            args.compression, args.seed, args.force, args.patience)
        published = build(config)
    except (DemoError, ExportError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 (CLI output)
        return 1
    for path in published:
        print(path)  # noqa: T201 (CLI output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
