"""``python -m loadtest.hybrid``: what the hybrid split costs on the CPU, side by side with the whole model.

The same exported full-table DLRM (random weights: throughput needs no trained weights) is served two
ways in one process: ``whole`` (one onnxruntime session, placement ``device``) and ``split`` (the service's
``HybridModel``: lookup session then dense session, both on the CPU provider, as on a machine without a
GPU). ``split-pipelined`` drives the split from two threads, as the service's batch queue does (the lookup
of batch n+1 overlaps the dense part of batch n). Variants alternate (A B C A B C ...), after a warm-up;
medians, ratios and every sample go to the JSON. Target (issue 12): the split costs <= 5% samples/s.

Example:
    python -m loadtest.hybrid --shape kaggle --rows-scale 0.05 --batches 256,2048 \
        --out docs/benchmarks/hybrid_cpu
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.engine import EngineConfig, inputs_for, machine
from loadtest.shapes import Shape, get_shape
from loadtest.timing import TimingConfig, alternate
from service.placement import HybridModel, PlacementMode, PlacementPolicy, load_model
from service.runtime import CPU, OnnxModel, RuntimeConfig

logger = logging.getLogger(__name__)
TARGET_COST = 0.05
MODEL_NAME = "dlrm-full"


@dataclass(frozen=True)
class HybridBenchConfig:
    """What ``python -m loadtest.hybrid`` measures.

    Args:
        shape: ``tiny``, ``kaggle`` or ``terabyte``.
        rows_scale: multiply every table's rows (to fit this machine; recorded in the results).
        batches: batch sizes.
        threads: intra-op threads of every session.
        timing: warm-up and alternating rounds.
        batches_per_sample: merged batches each timed sample runs.
        work_dir: where the exported model is kept (reused when the shape matches).
    """

    shape: str = "kaggle"
    rows_scale: float = 0.05
    batches: tuple[int, ...] = (256, 2048)
    threads: int = 1
    timing: TimingConfig = field(default_factory=lambda: TimingConfig(warmup=2, rounds=15, max_seconds=60.0))
    batches_per_sample: int = 8
    work_dir: Path = Path("build/hybrid")

    def __post_init__(self) -> None:
        get_shape(self.shape)
        if not 0 < self.rows_scale <= 1:
            raise ValueError(f"--rows-scale must be in (0, 1], got {self.rows_scale}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batch sizes must be positive, got {self.batches}")
        if self.threads < 1 or self.batches_per_sample < 2:
            raise ValueError("need threads >= 1 and batches_per_sample >= 2")

    @property
    def bench_shape(self) -> Shape:
        return get_shape(self.shape).scaled(self.rows_scale)


def prepare_model(config: HybridBenchConfig) -> Path:
    """Export (or reuse) the full-table model and publish it as ``<work_dir>/models/dlrm-full/1``."""
    from loadtest.engine_models import Method, export_model, to_repository

    shape = config.bench_shape
    exported = export_model(Method.FULL, shape, config.work_dir / "export" / shape.name.value, quantize=False)
    return to_repository(exported, shape, config.work_dir / "models", MODEL_NAME)


class StageTimes:
    """Collects the hybrid model's stage durations (a ``placement.StageObserver``)."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def stage(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, []).append(seconds)


def _sequential(
    run: Callable[[dict[str, np.ndarray]], Any], feeds: list[dict[str, np.ndarray]], count: int
) -> Callable[[], float]:
    position = 0

    def sample() -> float:
        nonlocal position
        begin = time.perf_counter()
        for _ in range(count):
            run(feeds[position % len(feeds)])
            position += 1
        return (time.perf_counter() - begin) / count

    return sample


def _pipelined(
    model: HybridModel, feeds: list[dict[str, np.ndarray]], count: int, pool: ThreadPoolExecutor
) -> Callable[[], float]:
    position = 0

    def sample() -> float:
        nonlocal position
        begin = time.perf_counter()
        chosen = [feeds[(position + i) % len(feeds)] for i in range(count)]
        position += count
        list(pool.map(model.run, chosen))
        return (time.perf_counter() - begin) / count

    return sample


def measure(config: HybridBenchConfig, version_dir: Path) -> list[dict[str, Any]]:
    """One row per batch size: per-variant medians, samples/s, ratios to ``whole`` and every sample."""
    runtime = RuntimeConfig((CPU,), config.threads, allow_spinning=False)
    whole = OnnxModel.load(version_dir, runtime)
    split = load_model(version_dir, runtime, PlacementPolicy(mode=PlacementMode.HYBRID))
    assert isinstance(split, HybridModel)
    stages = StageTimes()
    split.set_stage_observer(stages)
    rows = []
    shape = config.bench_shape
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="pipeline") as pool:
        for batch in config.batches:
            feeds = [{"dense": dense, "categorical": ids} for dense, ids in inputs_for(shape, batch)]
            expected = whole.run(feeds[0])["probability"]
            difference = float(np.max(np.abs(split.run(feeds[0])["probability"] - expected)))
            stages.samples.clear()
            variants = {
                "whole": _sequential(whole.run, feeds, config.batches_per_sample),
                "split": _sequential(split.run, feeds, config.batches_per_sample),
                "split-pipelined": _pipelined(split, feeds, config.batches_per_sample, pool),
            }
            logger.info("batch %d: timing %s", batch, ", ".join(variants))
            timings = alternate(variants, config.timing)
            medians = {name: timing.median_s for name, timing in timings.items()}
            row: dict[str, Any] = {
                "batch": batch,
                "max_abs_difference": difference,
                "variants": {
                    name: {
                        "median_s_per_batch": medians[name],
                        "samples_per_s": batch / medians[name],
                        "spread": timing.spread,
                        "samples_s_per_batch": list(timing.samples),
                    }
                    for name, timing in timings.items()
                },
                "ratio_split_vs_whole": medians["whole"] / medians["split"],
                "ratio_pipelined_vs_whole": medians["whole"] / medians["split-pipelined"],
                "stage_median_s": {name: statistics.median(v) for name, v in stages.samples.items()},
            }
            row["split_cost"] = 1 - row["ratio_split_vs_whole"]
            row["meets_target"] = row["split_cost"] <= TARGET_COST
            rows.append(row)
            logger.info(
                "batch %d: whole %.0f, split %.0f (x%.3f), pipelined %.0f (x%.3f) samples/s",
                batch, batch / medians["whole"], batch / medians["split"], row["ratio_split_vs_whole"],
                batch / medians["split-pipelined"], row["ratio_pipelined_vs_whole"],
            )  # fmt: skip
    return rows


def write_report(result: dict[str, Any], out: Path) -> None:
    """``<out>.json`` (appending this run to earlier ones) and ``<out>.md``."""
    json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
    runs = json.loads(json_path.read_text())["runs"] if json_path.exists() else []
    runs.append(result)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    md_path.write_text(render_markdown(runs, json_path.name))


def render_markdown(runs: list[dict[str, Any]], json_name: str) -> str:
    """The results page: one table row per (run, batch), the range over runs, every command."""
    lines = [
        "# Hybrid split on the CPU: cost against the whole-model session",
        "",
        "The same full-table DLRM (random weights) as one onnxruntime session (`whole`) and as the",
        "service's hybrid split (`split`: lookup session with the tables, then the dense session; both on",
        "the CPU provider, as on a machine without a GPU). `split-pipelined`: two batches in flight, as the",
        "service's batch queue runs a hybrid model. Variants alternate after a warm-up; figures are medians",
        "over rounds; every sample",
        f"is in `{json_name}`. Each run notes the machine's load average at its start (a shared 2-core VM:",
        "other jobs ran beside these runs, so single rows are noisy; read the ranges).",
        f"Target: the split costs <= {TARGET_COST:.0%} samples/s.",
        "",
        "| run | ran on | load avg at start | threads/session | shape (rows scale) | batch | "
        "whole samples/s | split samples/s | split/whole | pipelined samples/s | pipelined/whole | "
        "lookup / dense median |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, 1):
        where = f"{run['machine']['cpu']}, {run['machine']['cores']} cores"
        for row in run["rows"]:
            v = row["variants"]
            stage = row["stage_median_s"]
            lines.append(
                f"| {index} | {where} | {run['machine']['load_average_at_start'][0]:.1f} | "
                f"{run['config']['threads']} | {run['shape']} ({run['rows_scale']:g}) | {row['batch']} | "
                f"{v['whole']['samples_per_s']:,.0f} | {v['split']['samples_per_s']:,.0f} | "
                f"{row['ratio_split_vs_whole']:.3f} | {v['split-pipelined']['samples_per_s']:,.0f} | "
                f"{row['ratio_pipelined_vs_whole']:.3f} | "
                f"{stage.get('lookup', 0) * 1e3:.2f} ms / {stage.get('dense', 0) * 1e3:.2f} ms |"
            )
    lines.append("")
    for threads in sorted({run["config"]["threads"] for run in runs}):
        for batch in sorted({row["batch"] for run in runs for row in run["rows"]}):
            ratios = [
                row["ratio_split_vs_whole"]
                for run in runs
                for row in run["rows"]
                if run["config"]["threads"] == threads and row["batch"] == batch
            ]
            piped = [
                row["ratio_pipelined_vs_whole"]
                for run in runs
                for row in run["rows"]
                if run["config"]["threads"] == threads and row["batch"] == batch
            ]
            if ratios:
                lines.append(
                    f"- {threads} thread(s)/session, batch {batch}: split/whole median "
                    f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, "
                    f"{len(ratios)} runs); "
                    f"pipelined/whole median {statistics.median(piped):.3f} "
                    f"(range {min(piped):.3f}-{max(piped):.3f})"
                )
    lines += [
        "",
        "Commands:",
        "",
        *[f"- run {i}: `{run['command']}`" for i, run in enumerate(runs, 1)],
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.hybrid", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="kaggle", help="tiny, kaggle or terabyte")
    parser.add_argument("--rows-scale", type=float, default=0.05, help="scale every table's rows")
    parser.add_argument("--batches", default="256,2048", help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per session")
    parser.add_argument("--rounds", type=int, default=15, help="alternating timed rounds")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="timing budget per batch size")
    parser.add_argument("--work-dir", type=Path, default=Path("build/hybrid"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/hybrid_cpu"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        batches = tuple(int(b) for b in args.batches.split(",") if b.strip())
        config = HybridBenchConfig(
            args.shape, args.rows_scale, batches, args.threads,
            TimingConfig(warmup=2, rounds=args.rounds, max_seconds=args.max_seconds, min_rounds=3),
            work_dir=args.work_dir,
        )  # fmt: skip
    except ValueError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    version_dir = prepare_model(config)
    rows = measure(config, version_dir)
    shape = config.bench_shape
    result = {
        "command": "python -m loadtest.hybrid " + shlex.join(sys.argv[1:] if argv is None else list(argv)),
        "machine": machine(EngineConfig(threads=config.threads)),
        "shape": shape.name.value,
        "rows_scale": shape.rows_scale,
        "table_bytes": shape.table_bytes,
        "config": {**asdict(config), "work_dir": str(config.work_dir), "timing": asdict(config.timing)},
        "rows": rows,
    }
    write_report(result, args.out)
    for row in rows:
        sys.stdout.write(
            f"batch {row['batch']}: split/whole {row['ratio_split_vs_whole']:.3f} "
            f"(cost {row['split_cost']:+.1%}, target <= {TARGET_COST:.0%}), "
            f"pipelined/whole {row['ratio_pipelined_vs_whole']:.3f}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
