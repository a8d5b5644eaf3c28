"""Engine benchmark: onnxruntime samples/s of one DLRM architecture whose embedding differs (DESIGN.md 7).

    python -m loadtest.engine --shape kaggle --methods full,hash,robe,lma --batch 1,64,512,4096 --provider cpu

Models have random weights (throughput does not depend on them) and go through the real export path
(``loadtest.engine_models``). For every batch size the variants are timed side by side: warm-up, then
alternating rounds, medians, the ratio to ``full``; end to end (fp32, and with int8-quantized MLPs) and
the embedding stage alone. Each model is then started in a fresh process a few times to measure cold
start (process start to first answer) and resident memory after every mapped weight page is touched.
Results: ``OUT/engine.json``, ``engine.md`` and ``engine.png`` (``loadtest.engine_report``). The exported
models are also linked into ``WORK_DIR/<shape>/repository`` (``dlrm-full``, ``dlrm-robe``, ...), the
repository ``python -m loadtest.compare`` serves by default.
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from loadtest import engine_report
from loadtest.engine_models import ExportedModel, Method, export_model, to_repository
from loadtest.report import last_json
from loadtest.sessions import BenchmarkError, evict, feeds_for, make_session, model_files, page_in
from loadtest.shapes import NUM_DENSE, Shape, get_shape
from loadtest.timing import Sample, TimingConfig, alternate

logger = logging.getLogger(__name__)

DEFAULT_BATCHES = (1, 64, 512, 4096)
REPOSITORY = "repository"
WARM_KEYS = ("cold_start_s", "resident_s", "session_s", "rss_bytes", "rss_loaded_bytes", "peak_rss_bytes")
INPUT_BYTES = 1 << 26  # distinct inputs per batch size cover ~64 MB of lookups: beyond the CPU caches


@dataclass(frozen=True)
class EngineConfig:
    """What to measure.

    Args:
        shape: ``kaggle``, ``terabyte`` or ``tiny``.
        rows_scale: keep this fraction of every table's rows (1.0: the published shape).
        methods: embeddings to compare; ``full`` is always measured (the ratio's denominator).
        batches: batch sizes.
        provider: ``cpu`` or ``cuda`` (onnxruntime-gpu).
        threads: intra-op threads of every session.
        quantize: also time each model with int8 MLPs.
        timing: warm-up and alternating rounds.
        cold_starts: fresh-process starts per model (medians are reported).
        sample_seconds: each timed sample repeats ``session.run`` to last about this long.
        work_dir: where exported models are kept (reused when the shape matches).
    """

    shape: str = "kaggle"
    rows_scale: float = 1.0
    methods: tuple[Method, ...] = tuple(Method)
    batches: tuple[int, ...] = DEFAULT_BATCHES
    provider: str = "cpu"
    threads: int = 1
    quantize: bool = True
    timing: TimingConfig = field(default_factory=lambda: TimingConfig(warmup=2, rounds=9, max_seconds=20.0))
    cold_starts: int = 3
    sample_seconds: float = 0.02
    work_dir: Path = Path("build/engine")

    def __post_init__(self) -> None:
        get_shape(self.shape)
        if Method.FULL not in self.methods:
            object.__setattr__(self, "methods", (Method.FULL, *self.methods))
        if not 0 < self.rows_scale <= 1:
            raise ValueError(f"--rows-scale must be in (0, 1], got {self.rows_scale}")
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batch sizes must be positive, got {self.batches}")
        if self.provider not in ("cpu", "cuda"):
            raise ValueError(f"provider must be cpu or cuda, got {self.provider!r}")
        if self.threads < 1 or self.cold_starts < 0 or not self.sample_seconds > 0:
            raise ValueError("need threads >= 1, cold_starts >= 0 and sample_seconds > 0")

    @property
    def bench_shape(self) -> Shape:
        return get_shape(self.shape).scaled(self.rows_scale)


def machine(config: EngineConfig) -> dict[str, Any]:
    """The hardware and the conditions the numbers were taken under."""
    cpu = platform.machine()
    flags: set[str] = set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    isa = flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_tile"}
    return {"cpu": cpu, "cores": os.cpu_count(), "onnxruntime": ort.__version__,
            "python": platform.python_version(), "isa": sorted(isa),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "nice": os.nice(0),
            "threads_per_session": config.threads}


def inputs_for(shape: Shape, batch: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Distinct (dense raw counts, known ids) batches; ids are log-uniform over each feature's ``1..rows``
    (skewed like real data, every id in the vocabulary)."""
    count = max(2, min(64, math.ceil(INPUT_BYTES / (batch * shape.num_features * shape.embedding_dim * 4))))
    rng = np.random.default_rng(seed)
    rows = np.asarray(shape.rows, dtype=np.float64)
    batches = []
    for _ in range(count):
        picks = np.exp(rng.random((batch, shape.num_features)) * np.log(rows))  # in [1, rows)
        ids = np.minimum(np.floor(picks), rows).astype(np.int64)
        dense = rng.integers(0, 1000, size=(batch, NUM_DENSE)).astype(np.float32)
        batches.append((dense, ids))
    return batches


def sampler(session: ort.InferenceSession, inputs: list[tuple[np.ndarray, np.ndarray]],
            target_s: float) -> Sample:
    """A sample repeats ``session.run`` over the next inputs for about ``target_s``; seconds per run."""
    feeds = [feeds_for(session, dense, ids) for dense, ids in inputs]
    position = 0

    def one() -> None:
        nonlocal position
        session.run(None, feeds[position % len(feeds)])
        position += 1

    one()
    start = time.perf_counter()
    one()
    repeats = max(1, min(1000, round(target_s / max(time.perf_counter() - start, 1e-7))))

    def sample() -> float:
        begin = time.perf_counter()
        for _ in range(repeats):
            one()
        return (time.perf_counter() - begin) / repeats

    return sample


def open_sessions(models: list[ExportedModel], config: EngineConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """Sessions per (precision, stage) group, keyed by method; every mapped weight page is touched."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for model in models:
        paths = {("fp32", "end_to_end"): model.model, ("fp32", "embedding"): model.stage}
        if config.quantize:
            paths[("int8", "end_to_end")] = model.int8
        for key, path in paths.items():
            session = make_session(path, config.provider, config.threads)
            groups.setdefault(key, {})[model.method.value] = session
        touched = page_in([p for p in model.directory.iterdir() if p.is_file()])
        logger.info("%s: sessions open, %.1f MB of mapped weights paged in", model.method.value,
                    touched / 1e6)
    return groups


def measure(groups: dict[tuple[str, str], dict[str, Any]], config: EngineConfig) -> list[dict[str, Any]]:
    """Alternating timings of every group at every batch size; one record per (batch, group, method)."""
    shape, records = config.bench_shape, []
    progress = tqdm(total=len(config.batches) * len(groups), desc="engine timing", unit="group")
    for batch in config.batches:
        inputs = inputs_for(shape, batch)
        for (precision, stage), sessions in groups.items():
            samples = {m: sampler(s, inputs, config.sample_seconds) for m, s in sessions.items()}
            timings = alternate(samples, config.timing)
            full_s = timings[Method.FULL.value].median_s
            for method, timing in timings.items():
                records.append({
                    "provider": f"onnxruntime-{config.provider}", "shape": shape.name.value,
                    "rows_scale": shape.rows_scale, "batch": batch, "method": method, "precision": precision,
                    "stage": stage, "threads": config.threads, "median_ms": 1e3 * timing.median_s,
                    "spread": round(timing.spread, 4), "rounds": len(timing.samples),
                    "samples_per_s": batch / timing.median_s, "ratio_robe_vs_full": full_s / timing.median_s,
                })  # fmt: skip
            progress.update()
    progress.close()
    return records


def cold_starts(models: list[ExportedModel], config: EngineConfig) -> list[dict[str, Any]]:
    """Each model started ``config.cold_starts`` times in a fresh process (models alternate), with the page
    cache warm and, for the fp32 models, with the model's files evicted from it first; medians."""
    paths = [(m, "fp32", m.model) for m in models]
    paths += [(m, "int8", m.int8) for m in models if config.quantize]
    probes: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for _ in tqdm(range(config.cold_starts), desc="cold starts", unit="round"):
        for model, precision, path in paths:
            for cache in ("warm", "disk") if precision == "fp32" else ("warm",):
                if cache == "disk":
                    evict(model_files(path))
                probes.setdefault((model.method.value, precision, cache), []).append(_probe(path, config))
    summary = []
    for model, precision, path in paths:
        warm = probes.get((model.method.value, precision, "warm"), [])
        disk = probes.get((model.method.value, precision, "disk"), [])
        row: dict[str, Any] = {
            "provider": f"onnxruntime-{config.provider}", "method": model.method.value,
            "precision": precision, "parameter_bytes": model.parameter_bytes, "starts": len(warm),
            "file_bytes": sum(p.stat().st_size for p in model_files(path)),
        }  # fmt: skip
        for name in WARM_KEYS:
            row[name] = statistics.median(r[name] for r in warm) if warm else None
        for name in ("cold_start", "resident"):
            row[f"{name}_disk_s"] = statistics.median(r[f"{name}_s"] for r in disk) if disk else None
        summary.append(row)
    return summary


def _probe(path: Path, config: EngineConfig) -> dict[str, Any]:
    command = [sys.executable, "-m", "loadtest.sessions", "--model", str(path), "--provider", config.provider,
               "--threads", str(config.threads), "--started", repr(time.time())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"probe of {path} failed: {done.stderr.strip().splitlines()[-1:]}")
    return last_json(done.stdout)


def run(config: EngineConfig, out_dir: Path, command: str) -> dict[str, Any]:
    """Export, time, probe; write the results pages. Returns this run's results."""
    shape = config.bench_shape
    conditions = machine(config)
    logger.info("engine benchmark on %s (%d cores, load %s), onnxruntime %s, %d thread(s) per session",
                conditions["cpu"], conditions["cores"], conditions["load_average_at_start"],
                conditions["onnxruntime"], config.threads)
    tag = shape.name.value if shape.rows_scale == 1 else f"{shape.name.value}-x{shape.rows_scale:g}"
    models = [export_model(method, shape, config.work_dir / tag / method.value, config.quantize)
              for method in config.methods]
    for model in models:  # the same files as a model repository, for python -m loadtest.compare
        to_repository(model, shape, config.work_dir / tag / REPOSITORY, f"dlrm-{model.method.value}")
    groups = open_sessions(models, config)
    runs = measure(groups, config)
    del groups  # unmaps the weights, so the cold starts can evict them from the page cache
    gc.collect()
    memory = cold_starts(models, config)
    result = {
        "provider": f"onnxruntime-{config.provider}", "command": command, "conditions": conditions,
        "shape": {"name": shape.name.value, "rows_scale": shape.rows_scale, "table_bytes": shape.table_bytes,
                  "robe_bytes": shape.robe_bytes},
        "runs": runs, "memory": memory,
    }  # fmt: skip
    engine_report.publish(result, out_dir)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.engine", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="kaggle", help="kaggle, terabyte or tiny")
    parser.add_argument("--rows-scale", type=float, default=1.0, help="fraction of every table's rows kept")
    parser.add_argument("--methods", default="full,hash,robe,lma")
    parser.add_argument("--batch", default=",".join(map(str, DEFAULT_BATCHES)), help="comma-separated sizes")
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per session")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--cold-starts", type=int, default=3)
    parser.add_argument("--no-quantize", action="store_true", help="skip the int8-MLP variants")
    parser.add_argument("--work-dir", type=Path, default=Path("build/engine"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> EngineConfig:
    methods = tuple(Method(m) for m in args.methods.split(","))
    timing = TimingConfig(warmup=2, rounds=args.rounds, max_seconds=20.0, min_rounds=min(3, args.rounds))
    return EngineConfig(args.shape, args.rows_scale, methods, tuple(int(b) for b in args.batch.split(",")),
                        args.provider, args.threads, not args.no_quantize, timing, args.cold_starts,
                        work_dir=args.work_dir)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        force=True,
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("onnx_ir", "onnxscript", "torch", "root"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        args = parse_args(argv)
        command = shlex.join(["python", "-m", "loadtest.engine", *(sys.argv[1:] if argv is None else argv)])
        result = run(config_from_args(args), args.out, command)
    except (ValueError, OSError, BenchmarkError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(engine_report.summary(result))  # noqa: T201 - the CLI's output
    return 0


if __name__ == "__main__":
    sys.exit(main())
