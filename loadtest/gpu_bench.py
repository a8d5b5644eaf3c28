"""GPU benchmark: the same DLRM in PyTorch with full tables vs ROBE-Z (DESIGN.md section 7).

``loadtest/gpu_bench.sh`` runs the three steps below, each in its own process so a CUDA failure in one
shape cannot take the others with it::

    python -m loadtest.gpu_bench build                         # compile the ROBE CUDA kernel (torch_ext)
    python -m loadtest.gpu_bench run --shape terabyte          # writes OUT/gpu_bench_terabyte.json
    python -m loadtest.gpu_report                              # merges OUT/gpu_bench.json, prints ratios

Variants of one architecture (``training.dlrm.model`` presets): ``full`` (one concatenated table read with
``F.embedding``), ``robe`` (the project's CUDA kernel via ``kernels.torch_ext``) and ``robe-torch`` (the
same lookup in PyTorch ops; when the kernel is unavailable it is the only ROBE variant, and the report
says so). Weights are random: throughput does not depend on them. Tables are created on the GPU; when
they do not fit, every table's rows are scaled down by one factor and the report gives that factor.
Timing: CUDA events, warm-up, variants alternated each round, medians; end to end and the embedding alone.
``--device cpu --dry-run`` runs every step on tiny shapes (tests).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch

from loadtest.gpu_report import RESULT_PREFIX
from loadtest.report import write_json
from loadtest.shapes import Shape, get_shape
from loadtest.timing import Sample, TimingConfig, alternate
from loadtest.torch_models import IdDistribution, RobeArray, Variant, build_model, input_count, make_inputs
from training.dlrm.model import DLRM

logger = logging.getLogger(__name__)

DEFAULT_BATCHES = (512, 1024, 2048, 4096, 8192, 16384)
STAGES = ("end_to_end", "embedding")


@dataclass(frozen=True)
class RunConfig:
    """One shape's measurement.

    Args:
        shape: ``kaggle``, ``terabyte`` or ``tiny``.
        batches: batch sizes, in order.
        distributions: id distributions to measure (``zipf``: skewed like real data; ``uniform``: no reuse).
        device: ``cuda`` or ``cpu``.
        use_kernel: try the CUDA kernel (``kernels.torch_ext``); else only the PyTorch-ops ROBE.
        backend: the kernel's bridge: ``auto`` (PyTorch extension, else ctypes), ``extension``, ``ctypes``.
        timing: warm-up and rounds of each measurement.
        iters: forward passes per timed sample.
        budget_s: stop starting new measurements after this many seconds (partial results are kept).
        reserve_bytes: GPU memory left free for activations when sizing the full tables.
        cpu_threads: torch's CPU threads (0: torch's default); matters only with ``device="cpu"``.
    """

    shape: str
    batches: tuple[int, ...] = DEFAULT_BATCHES
    distributions: tuple[IdDistribution, ...] = (IdDistribution.ZIPF, IdDistribution.UNIFORM)
    device: str = "cuda"
    use_kernel: bool = True
    backend: str = "auto"
    timing: TimingConfig = field(default_factory=lambda: TimingConfig(warmup=3, rounds=15, max_seconds=8.0))
    iters: int = 5
    budget_s: float = 120.0
    reserve_bytes: int = 6 << 30
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        get_shape(self.shape)
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batches must be positive, got {self.batches}")
        if self.backend not in ("auto", "extension", "ctypes"):
            raise ValueError(f"backend must be auto, extension or ctypes, got {self.backend!r}")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"device must be cuda or cpu, got {self.device!r}")
        if self.iters < 1 or not self.budget_s > 0 or self.reserve_bytes < 0 or self.cpu_threads < 0:
            raise ValueError(f"need iters >= 1, budget_s > 0 and reserve_bytes >= 0, got {self}")


def hardware(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: the card (or CPU), memory, and the software stack."""
    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "host": platform.node(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(device=props.name, memory_bytes=props.total_memory, cuda=torch.version.cuda,
                    capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count)
    else:
        info.update(device=platform.processor() or platform.machine())
    return info


def fit_to_device(shape: Shape, device: torch.device, reserve_bytes: int) -> Shape:
    """The shape, with its table rows scaled down when the full tables do not fit the free GPU memory."""
    if device.type != "cuda":
        return shape
    free, _ = torch.cuda.mem_get_info(device)
    room = free - reserve_bytes - 2 * shape.robe_bytes
    if shape.table_bytes <= room:
        return shape
    factor = room / shape.table_bytes
    if factor < 0.01:
        raise RuntimeError(f"only {free / 2**30:.1f} GiB free on the GPU: too little for {shape.name}")
    logger.warning("%s tables (%.1f GB) exceed the free GPU memory (%.1f GB): rows scaled to %.1f%%",
                   shape.name, shape.table_bytes / 1e9, free / 1e9, 100 * factor)
    return shape.scaled(factor)


def load_kernel(config: RunConfig) -> tuple[Any, dict[str, Any]]:
    """The CUDA ops (``kernels.torch_ext``) or None, with a note of what happened."""
    if not config.use_kernel:
        return None, {"available": False, "reason": "disabled with --no-kernel"}
    if config.device != "cuda":
        return None, {"available": False, "reason": "no GPU"}
    try:
        from kernels import torch_ext

        ops = torch_ext.load(torch_ext.Backend(config.backend))
    except Exception as exc:  # a failed build must not cost the full-table and PyTorch-ops numbers
        logger.warning("ROBE CUDA kernel unavailable (%s): ROBE runs as PyTorch ops only", exc)
        return None, {"available": False, "reason": _first_line(exc)}
    return ops, {"available": True, "backend": ops.backend.value}


def kernel_agrees(models: dict[Variant, DLRM], ids: torch.Tensor) -> bool:
    """The kernel's lookup equals the PyTorch-ops lookup bit for bit on the same array."""
    kernel, reference = models[Variant.ROBE].embedding, models[Variant.ROBE_TORCH].embedding
    assert isinstance(kernel, RobeArray) and isinstance(reference, RobeArray)
    reference.memory.data.copy_(kernel.memory.data)
    return bool(torch.equal(kernel(ids), reference(ids)))


def sampler(run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            inputs: list[tuple[torch.Tensor, torch.Tensor]], iters: int, device: torch.device) -> Sample:
    """One timed sample = ``iters`` forwards over the next inputs; seconds per forward."""
    cursor = itertools.cycle(inputs)
    if device.type != "cuda":

        def wall() -> float:
            start = time.perf_counter()
            for _ in range(iters):
                run(*next(cursor))
            return (time.perf_counter() - start) / iters

        return wall
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def events() -> float:
        start.record()
        for _ in range(iters):
            run(*next(cursor))
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters

    return events


def stage_fn(model: torch.nn.Module, stage: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    embedding = cast(torch.nn.Module, model.embedding)
    if stage == "embedding":
        return lambda dense, ids: embedding(ids)
    return lambda dense, ids: model(dense, ids)


def measure_batch(models: dict[Variant, DLRM], shape: Shape, batch: int, distribution: IdDistribution,
                  config: RunConfig, device: torch.device) -> list[dict[str, Any]]:
    """Every stage of every variant at one batch size: one record per (stage, variant)."""
    inputs = make_inputs(shape, batch, input_count(shape, batch), distribution, device)
    records = []
    for stage in STAGES:
        samples = {variant.value: sampler(stage_fn(model, stage), inputs, config.iters, device)
                   for variant, model in models.items()}
        timings = alternate(samples, config.timing)
        full_s = timings[Variant.FULL.value].median_s
        for method, timing in timings.items():
            records.append({
                "shape": shape.name.value, "rows_scale": shape.rows_scale, "ids": distribution.value,
                "batch": batch, "stage": stage, "method": method, "median_ms": 1e3 * timing.median_s,
                "spread": round(timing.spread, 4), "rounds": len(timing.samples),
                "samples_per_s": batch / timing.median_s, "ratio_robe_vs_full": full_s / timing.median_s,
            })  # fmt: skip
        logger.info("%s %s batch %d %s: %s", shape.name, distribution, batch, stage, ", ".join(
            f"{r['method']} {r['samples_per_s']:,.0f}/s" for r in records[-len(timings):]))
    del inputs
    return records


def run(config: RunConfig, out_dir: Path) -> dict[str, Any]:
    """Measure one shape; writes out_dir/gpu_bench_<shape>.json after every batch size."""
    started = time.monotonic()
    device = torch.device(config.device)
    if config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    result: dict[str, Any] = {"config": _config_dict(config), "hardware": hardware(device), "runs": [],
                              "errors": [], "skipped": []}
    ops, result["kernel"] = load_kernel(config)
    shape = fit_to_device(get_shape(config.shape), device, config.reserve_bytes)
    result["shape"] = {"name": shape.name.value, "rows_scale": shape.rows_scale,
                       "total_rows": shape.total_rows, "table_bytes": shape.table_bytes,
                       "robe_bytes": shape.robe_bytes}
    path = out_dir / f"{RESULT_PREFIX}{shape.name.value}.json"
    with torch.no_grad():  # plain tensors (not inference tensors): moving and copying them is unrestricted
        models = build_models(shape, device, ops, result)
    with torch.inference_mode():
        for distribution, batch in itertools.product(config.distributions, config.batches if models else ()):
            label = f"{distribution.value} batch {batch}"
            if time.monotonic() - started > config.budget_s:
                result["skipped"].append(f"{label}: time budget of {config.budget_s:.0f} s spent")
                continue
            try:
                result["runs"] += measure_batch(models, shape, batch, distribution, config, device)
            except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
                logger.error("%s %s failed: %s", shape.name, label, _first_line(exc))
                result["errors"].append(f"{label}: {_first_line(exc)}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            result["elapsed_s"] = round(time.monotonic() - started, 1)
            write_json(path, result)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    write_json(path, result)
    return result


def build_models(shape: Shape, device: torch.device, ops: Any, result: dict[str, Any]) -> dict[Variant, DLRM]:
    """Every variant's model; a failure is written into ``result`` (no models, or no kernel variant)."""
    variants = [Variant.FULL, *([Variant.ROBE] if ops is not None else []), Variant.ROBE_TORCH]
    try:
        models = {variant: build_model(variant, shape, device, ops) for variant in variants}
    except (RuntimeError, MemoryError) as exc:
        logger.error("building the %s models failed: %s", shape.name, _first_line(exc))
        result["errors"].append(f"building the models: {_first_line(exc)}")
        return {}
    if ops is not None:
        probe = make_inputs(shape, 256, 1, IdDistribution.UNIFORM, device, seed=1)[0][1]
        try:
            result["kernel"]["matches_pytorch_ops"] = kernel_agrees(models, probe)
        except (RuntimeError, ValueError) as exc:
            logger.error("the ROBE CUDA kernel failed: %s", _first_line(exc))
            result["kernel"].update(available=False, reason=f"kernel failed: {_first_line(exc)}")
            del models[Variant.ROBE]
    return models


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _config_dict(config: RunConfig) -> dict[str, Any]:
    data = asdict(config)
    data["distributions"] = [d.value for d in config.distributions]
    return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gpu_bench", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "run"])
    parser.add_argument("--shape", default="terabyte", help="kaggle, terabyte or tiny (run)")
    parser.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)), help="comma-separated")
    parser.add_argument("--ids", default="zipf,uniform", help="id distributions: zipf, uniform")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--no-kernel", action="store_true", help="skip the CUDA kernel (PyTorch ops only)")
    parser.add_argument("--backend", default="auto", choices=["auto", "extension", "ctypes"],
                        help="how the kernel is called (kernels.torch_ext)")
    parser.add_argument("--budget", type=float, default=120.0, help="seconds before no new batch size starts")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--dry-run", action="store_true", help="tiny shape, few rounds: checks every step")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "build/gpu_bench"),
                        help="results directory (default: $OUT, else build/gpu_bench)")
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    kernel = {"device": args.device, "use_kernel": not args.no_kernel, "backend": args.backend}
    if args.dry_run:
        return RunConfig("tiny", (16, 64), (IdDistribution.ZIPF,), **kernel, timing=TimingConfig(1, 3),
                         iters=1, budget_s=args.budget, reserve_bytes=0, cpu_threads=1)
    batches = tuple(int(b) for b in args.batches.split(","))
    distributions = tuple(IdDistribution(d) for d in args.ids.split(","))
    timing = TimingConfig(warmup=3, rounds=args.rounds, max_seconds=8.0, min_rounds=min(3, args.rounds))
    return RunConfig(args.shape, batches, distributions, **kernel, timing=timing, budget_s=args.budget)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(force=True, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        args = parse_args(argv)
        if args.command == "build":
            ops, note = load_kernel(replace(config_from_args(args), use_kernel=True))
            print(json.dumps(note))  # noqa: T201 - the CLI's output
            return 0 if ops is not None else 1
        result = run(config_from_args(args), args.out)
    except (ValueError, OSError, RuntimeError) as exc:
        sys.stderr.write(f"error: {_first_line(exc)}\n")
        return 2
    return 0 if result["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
