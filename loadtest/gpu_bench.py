"""GPU benchmark v2, the fair one (issue 12): ROBE on the device against full tables in their strongest forms,
in the two settings that exist (tables in HBM, tables in host memory), end to end per call.

``python -m loadtest.gpu_bench --shape terabyte --out build/gpu_bench`` (``loadtest/gpu_bench.sh`` runs it
with its build and a time budget; ``--device cpu --dry-run`` checks the logic on a machine without a GPU).
v1 (ROBE vs one ``F.embedding`` table in HBM only, no host-resident setting; last at commit 3339834) was
replaced by this file; its H200 results (v1 as of commit 6c3d4b3) stay in ``docs/benchmarks/engine.md`` and
``docs/benchmarks/gpu_bench_v1_h200.log``.

Every variant shares ONE dense part (bottom MLP, interaction, top MLP: ``training.dlrm.model.DLRM`` around an
identity embedding), in fp32 and in bf16. Every call copies its inputs (dense features, ids) from pinned
host memory to the device and its outputs back, then synchronizes: what a server pays per batch.

Variants:
- ``robe``: the ROBE-Z array on the device, the project's CUDA kernel (``kernels.torch_ext``).
- ``full-hbm``: one [rows, d] table in HBM, ``F.embedding``.
- ``full-hbm-vec``: the same table, read by a vectorized gather kernel (``loadtest/cuda/gather.cu``).
- ``full-host``: the table in host RAM: a multi-threaded CPU gather into pinned memory, an async copy,
  the dense part; sequential.
- ``full-host-db``: the same, double-buffered: the CPU gathers batch n+1 while the GPU runs batch n.
- ``full-host-uva``: the host table registered with the device and read by the gather kernel over PCIe.
The dense part (and for device-resident variants the lookup too) runs as a CUDA graph when capture works
(``--no-graphs`` turns that off; a failed capture falls back to eager and the result says so).
Memory caps (24, 48, 80 GB): each variant's device bytes (its tensors on the device + the activation peak
measured in its own run) are checked against each cap, and the asserts say where each variant can live.
Preflight: card, PCIe link (nvidia-smi), pinned and pageable copy bandwidth. Results are written after every
measurement; a time budget stops starting new ones.
"""

from __future__ import annotations

import argparse
import ctypes
import itertools
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from loadtest.report import write_json
from loadtest.shapes import Shape, get_shape
from loadtest.timing import TimingConfig, alternate
from loadtest.torch_models import NUM_DENSE, IdDistribution
from training.dlrm.model import DLRM, DLRMConfig

logger = logging.getLogger(__name__)

VARIANTS = ("robe", "full-hbm", "full-hbm-vec", "full-host", "full-host-db", "full-host-uva")
CAPS_GB = (24, 48, 80)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
GATHER_SOURCE = Path(__file__).resolve().parent / "cuda" / "gather.cu"
RESULT_FILE = "gpu_bench.json"


@dataclass(frozen=True)
class FairConfig:
    """One run of the fair benchmark.

    Args:
        shape: ``terabyte``, ``kaggle`` or ``tiny``.
        batches: batch sizes.
        distributions: id distributions (``zipf``, ``uniform``).
        dtypes: dense-part precisions (``fp32``, ``bf16``).
        variants: which variants to measure.
        device: ``cuda`` or ``cpu`` (``cpu``: a logic check; CUDA-only variants are skipped with a reason).
        rows_scale: multiply every table's rows; 0 = the largest scale that fits host RAM and HBM.
        timing: warm-up and alternating rounds per (batch, ids, dtype).
        iters: calls per timed sample.
        budget_s: no new measurement starts after this many seconds.
        host_threads: CPU threads of the host gather (torch intra-op threads).
        graphs: capture CUDA graphs.
        build_dir: where the gather kernel library is built.
    """

    shape: str = "terabyte"
    batches: tuple[int, ...] = (512, 2048, 16384)
    distributions: tuple[IdDistribution, ...] = (IdDistribution.ZIPF, IdDistribution.UNIFORM)
    dtypes: tuple[str, ...] = ("fp32", "bf16")
    variants: tuple[str, ...] = VARIANTS
    device: str = "cuda"
    rows_scale: float = 0.0
    timing: TimingConfig = field(default_factory=lambda: TimingConfig(warmup=3, rounds=9, max_seconds=4.0))
    iters: int = 10
    budget_s: float = 300.0
    host_threads: int = 0
    graphs: bool = True
    build_dir: Path = Path("build/gpu_bench")

    def __post_init__(self) -> None:
        get_shape(self.shape)
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
        if set(self.dtypes) - set(DTYPES):
            raise ValueError(f"dtypes must be among {sorted(DTYPES)}, got {self.dtypes}")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"device must be cuda or cpu, got {self.device!r}")
        if not self.batches or min(self.batches) < 1 or self.iters < 1 or not 0 <= self.rows_scale <= 1:
            raise ValueError(f"need positive batches and iters, rows_scale in [0, 1]: {self}")


# --- the gather kernel ------------------------------------------------------------------------------------


def build_gather(build_dir: Path) -> Path:
    """Compile ``loadtest/cuda/gather.cu`` with nvcc (sm_80, sm_90); returns the library path."""
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("nvcc not found: the gather kernel cannot be built")
    build_dir.mkdir(parents=True, exist_ok=True)
    target = build_dir / "libgather.so"
    if target.exists() and target.stat().st_mtime >= GATHER_SOURCE.stat().st_mtime:
        return target
    command = [
        nvcc,
        "-O3",
        "-std=c++17",
        "-shared",
        "-Xcompiler",
        "-fPIC",
        "-gencode",
        "arch=compute_80,code=sm_80",
        "-gencode",
        "arch=compute_90,code=sm_90",
        str(GATHER_SOURCE),
        "-o",
        str(target),
    ]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    return target


class GatherKernel:
    """ctypes bridge to ``libgather.so``: rows of a device table or of a mapped host table."""

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        self.lib.robeserve_gather_rows.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        self.lib.robeserve_register_host.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint64,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        self.lib.robeserve_unregister_host.argtypes = [ctypes.c_void_p]
        self.lib.robeserve_error_string.restype = ctypes.c_char_p

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RuntimeError(f"{what}: {self.lib.robeserve_error_string(status).decode()}")

    def gather(self, table_pointer: int, dim: int, rows: torch.Tensor) -> torch.Tensor:
        out = torch.empty((*rows.shape, dim), dtype=torch.float32, device=rows.device)
        stream = torch.cuda.current_stream(rows.device).cuda_stream
        status = self.lib.robeserve_gather_rows(
            table_pointer, rows.data_ptr(), out.data_ptr(), rows.numel(), dim, stream
        )
        self._check(status, "gather kernel")
        return out

    def device_pointer(self, table: torch.Tensor) -> int:
        """A device pointer to a CPU tensor: its own address when it is pinned (cudaHostAlloc memory is mapped
        under unified addressing), else the mapped pointer of a fresh cudaHostRegister."""
        if table.is_pinned():
            return int(table.data_ptr())
        pointer = ctypes.c_void_p()
        nbytes = table.numel() * table.element_size()
        self._check(
            self.lib.robeserve_register_host(table.data_ptr(), nbytes, ctypes.byref(pointer)), "register"
        )
        return int(pointer.value or 0)


# --- preflight --------------------------------------------------------------------------------------------


def preflight(device: torch.device) -> dict[str, Any]:
    """The machine: card, memory, PCIe link, pinned and pageable host-to-device bandwidth."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }
    if device.type != "cuda":
        info["device"] = platform.processor() or platform.machine()
        return info
    props = torch.cuda.get_device_properties(device)
    info.update(
        device=props.name,
        memory_bytes=props.total_memory,
        cuda=torch.version.cuda,
        capability=f"{props.major}.{props.minor}",
        multiprocessors=props.multi_processor_count,
    )
    query = "pcie.link.gen.current,pcie.link.gen.max,pcie.link.width.current,pcie.link.width.max"
    try:
        info["pcie"] = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        info["pcie"] = f"unavailable: {exc}"
    size = 256 << 20
    device_buffer = torch.empty(size, dtype=torch.uint8, device=device)
    for kind, host in (
        ("pinned", torch.empty(size, dtype=torch.uint8, pin_memory=True)),
        ("pageable", torch.empty(size, dtype=torch.uint8)),
    ):
        for direction in ("h2d", "d2h"):
            times = []
            for _ in range(5):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                if direction == "h2d":
                    device_buffer.copy_(host, non_blocking=kind == "pinned")
                else:
                    host.copy_(device_buffer, non_blocking=kind == "pinned")
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            info[f"{kind}_{direction}_gb_per_s"] = round(size / statistics.median(times[1:]) / 1e9, 2)
    logger.info("preflight: %s", json.dumps(info))
    return info


# --- the models -------------------------------------------------------------------------------------------


class DensePart(nn.Module):
    """Everything after the lookup: ``DLRM`` around an identity embedding, in one precision."""

    def __init__(self, config: DLRMConfig, dtype: torch.dtype) -> None:
        super().__init__()
        self.dlrm = DLRM(config, nn.Identity())
        self.dtype = dtype

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        return self.dlrm(dense.to(self.dtype), sparse.to(self.dtype)).float()


def choose_scale(shape: Shape, config: FairConfig, device: torch.device) -> float:
    """The largest rows scale whose tables fit host RAM (16 GB kept free) and HBM (24 GB kept free)."""
    if config.rows_scale:
        return config.rows_scale
    host_free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") - (16 << 30)
    limits = [host_free / shape.table_bytes]
    if device.type == "cuda" and ("full-hbm" in config.variants or "full-hbm-vec" in config.variants):
        free, _ = torch.cuda.mem_get_info(device)
        limits.append((free - (24 << 30)) / shape.table_bytes)
    return max(1e-4, min(1.0, *limits))


@dataclass
class Tables:
    """What the variants read: the ROBE array, the full table on the device and in (pinned) host RAM."""

    shape: Shape
    offsets_device: torch.Tensor
    offsets_host: torch.Tensor
    robe_memory: torch.Tensor | None = None
    device_table: torch.Tensor | None = None
    host_table: torch.Tensor | None = None
    robe_params: Any = None
    notes: dict[str, str] = field(default_factory=dict)


def build_tables(shape: Shape, config: FairConfig, device: torch.device) -> Tables:
    starts = [0, *itertools.accumulate(shape.rows[:-1])]
    tables = Tables(
        shape, torch.tensor(starts, dtype=torch.int64, device=device), torch.tensor(starts, dtype=torch.int64)
    )
    rows, dim = shape.total_rows, shape.embedding_dim
    if "robe" in config.variants:
        tables.robe_memory = torch.empty(shape.robe_floats, device=device).uniform_(-0.05, 0.05)
    if {"full-hbm", "full-hbm-vec"} & set(config.variants):
        tables.device_table = torch.empty((rows, dim), device=device).uniform_(-0.05, 0.05)
    if {"full-host", "full-host-db", "full-host-uva"} & set(config.variants):
        pinned = device.type == "cuda"
        tables.host_table = torch.empty((rows, dim), pin_memory=pinned)
        if tables.device_table is not None:
            tables.host_table.copy_(tables.device_table)
        else:
            tables.host_table.uniform_(-0.05, 0.05)
    return tables


Step = Callable[[int], None]


class Runner:
    """Builds each variant's per-call function over fixed input batches (pinned host memory)."""

    def __init__(
        self,
        tables: Tables,
        dense: DensePart,
        device: torch.device,
        config: FairConfig,
        gather: GatherKernel | None,
        robe_ops: Any,
        batch: int,
        distribution: IdDistribution,
    ) -> None:
        self.tables, self.dense, self.device, self.config = tables, dense, device, config
        self.gather, self.robe_ops = gather, robe_ops
        self.batch = batch
        shape = tables.shape
        generator = torch.Generator().manual_seed(batch)
        rows = torch.tensor(shape.rows, dtype=torch.float64)
        count = max(4, min(32, (1 << 28) // (batch * shape.num_features * shape.embedding_dim * 4)))
        pin = device.type == "cuda"
        self.inputs = []
        for _ in range(count):
            u = torch.rand((batch, shape.num_features), dtype=torch.float64, generator=generator)
            zipf = distribution is IdDistribution.ZIPF
            picks = torch.exp(u * torch.log1p(rows)) - 1 if zipf else u * rows
            ids = torch.minimum(picks.floor(), rows - 1).to(torch.int64)
            dense_values = torch.rand((batch, NUM_DENSE), generator=generator)
            self.inputs.append(
                (dense_values.pin_memory() if pin else dense_values, ids.pin_memory() if pin else ids)
            )
        self.dense_d = torch.empty((batch, NUM_DENSE), device=device)
        self.ids_d = torch.empty((batch, shape.num_features), dtype=torch.int64, device=device)
        self.out_h = torch.empty(batch, pin_memory=pin)
        self.notes: dict[str, str] = {}

    # lookups on the device: ids_d -> [B, F, d]
    def lookup(self, variant: str) -> Callable[[], torch.Tensor]:
        t, shape = self.tables, self.tables.shape
        if variant == "robe":
            # the launcher (hash arrays, launch arguments) is made once, outside the timed call
            plan = self.robe_ops.robe_plan(t.robe_params, shape.embedding_dim, shape.block_size)
            return lambda: plan(self.ids_d, t.robe_memory)
        if variant == "full-hbm":
            table = t.device_table
            assert table is not None
            return lambda: F.embedding(self.ids_d + t.offsets_device, table)
        assert self.gather is not None
        gather = self.gather
        if variant == "full-hbm-vec":
            assert t.device_table is not None
            pointer = int(t.device_table.data_ptr())
        else:
            assert t.host_table is not None
            pointer = gather.device_pointer(t.host_table)
        return lambda: gather.gather(pointer, shape.embedding_dim, self.ids_d + t.offsets_device)

    def _graph(self, forward: Callable[[], torch.Tensor], label: str) -> Callable[[], torch.Tensor]:
        if not (self.config.graphs and self.device.type == "cuda"):
            return forward
        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(2):
                    forward()
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = forward()
        except Exception as exc:  # a kernel that cannot be captured runs eagerly; the result says so
            self.notes[label] = (
                f"eager (graph capture failed: {str(exc).splitlines()[0] if str(exc) else exc})"
            )
            torch.cuda.synchronize(self.device)
            return forward

        def replay() -> torch.Tensor:
            graph.replay()
            return static_out

        self.notes[label] = "cuda graph"
        return replay

    def device_step(self, variant: str) -> Step:
        lookup = self.lookup(variant)
        forward = self._graph(lambda: self.dense(self.dense_d, lookup()), variant)

        def step(i: int) -> None:
            dense_h, ids_h = self.inputs[i % len(self.inputs)]
            self.dense_d.copy_(dense_h, non_blocking=True)
            self.ids_d.copy_(ids_h, non_blocking=True)
            self.out_h.copy_(forward(), non_blocking=True)
            self._sync()

        return step

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()

    def host_steps(self, double_buffer: bool) -> Callable[[int], None]:
        """``run(n)``: n calls of the host-table path; double-buffered: the CPU gather of call i+1 overlaps
        the GPU work of call i."""
        t, shape = self.tables, self.tables.shape
        assert t.host_table is not None
        pin = self.device.type == "cuda"
        width = (self.batch * shape.num_features, shape.embedding_dim)
        buffers = [torch.empty(width, pin_memory=pin) for _ in range(2)]
        sparse_d = torch.empty((self.batch, shape.num_features, shape.embedding_dim), device=self.device)
        label = "full-host-db" if double_buffer else "full-host"
        forward = self._graph(lambda: self.dense(self.dense_d, sparse_d), label)
        events = [torch.cuda.Event() if pin else None for _ in range(2)]
        offsets = t.offsets_host
        host_table = t.host_table

        def gather_into(i: int, slot: int) -> None:
            _, ids_h = self.inputs[i % len(self.inputs)]
            torch.index_select(host_table, 0, (ids_h + offsets).view(-1), out=buffers[slot])

        def launch(i: int, slot: int) -> None:
            dense_h, _ = self.inputs[i % len(self.inputs)]
            self.dense_d.copy_(dense_h, non_blocking=True)
            sparse_d.view(width).copy_(buffers[slot], non_blocking=True)
            event = events[slot]
            if event is not None:
                event.record()
            self.out_h.copy_(forward(), non_blocking=True)

        if not double_buffer:

            def sequential(n: int) -> None:
                for i in range(n):
                    gather_into(i, 0)
                    launch(i, 0)
                    self._sync()

            return sequential
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="host-gather")

        def pipelined(n: int) -> None:
            pending: Future[None] = pool.submit(gather_into, 0, 0)
            for i in range(n):
                pending.result()
                launch(i, i % 2)
                if i + 1 < n:
                    event = events[(i + 1) % 2]
                    if event is not None:
                        event.synchronize()  # the buffer's previous copy to the device is done
                    pending = pool.submit(gather_into, i + 1, (i + 1) % 2)
                if self.device.type != "cuda":
                    self._sync()
            self._sync()

        return pipelined


def _timed(run: Callable[[int], None], iters: int) -> Callable[[], float]:
    def sample() -> float:
        start = time.perf_counter()
        run(iters)
        return (time.perf_counter() - start) / iters

    return sample


def _loop(step: Step) -> Callable[[int], None]:
    def run(n: int) -> None:
        for i in range(n):
            step(i)

    return run


def _device_bytes(variant: str, tables: Tables, dense: DensePart) -> int:
    mlp = sum(p.numel() * p.element_size() for p in dense.parameters())
    if variant == "robe" and tables.robe_memory is not None:
        return mlp + tables.robe_memory.numel() * 4
    if variant in ("full-hbm", "full-hbm-vec") and tables.device_table is not None:
        return mlp + tables.device_table.numel() * 4 + tables.offsets_device.numel() * 8
    return mlp


def run(config: FairConfig, out_dir: Path) -> dict[str, Any]:
    """Measure everything the config asks for; writes ``out_dir/gpu_bench.json`` after every measurement."""
    started = time.monotonic()
    device = torch.device(config.device)
    if config.host_threads:
        torch.set_num_threads(config.host_threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULT_FILE
    result: dict[str, Any] = {
        "config": {
            **asdict(config),
            "build_dir": str(config.build_dir),
            "distributions": [d.value for d in config.distributions],
        },
        "preflight": preflight(device),
        "runs": [],
        "skipped": [],
        "errors": [],
        "notes": {},
        "memory": {},
        "asserts": [],
    }
    base = get_shape(config.shape)
    shape = base.scaled(choose_scale(base, config, device))
    result["shape"] = {
        "name": shape.name.value,
        "rows_scale": shape.rows_scale,
        "table_bytes": shape.table_bytes,
        "full_scale_table_bytes": base.table_bytes,
        "robe_bytes": shape.robe_bytes,
    }
    variants = list(config.variants)
    gather = robe_ops = None
    if device.type != "cuda":
        for variant in ("robe", "full-hbm-vec", "full-host-uva"):
            if variant in variants:
                variants.remove(variant)
                result["skipped"].append(f"{variant}: needs a CUDA device")
    else:
        try:
            gather = GatherKernel(build_gather(config.build_dir))
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            for variant in ("full-hbm-vec", "full-host-uva"):
                if variant in variants:
                    variants.remove(variant)
                    result["skipped"].append(f"{variant}: gather kernel unavailable ({exc})")
        if "robe" in variants:
            try:
                from kernels import torch_ext

                robe_ops = torch_ext.load(torch_ext.Backend("auto"))
            except Exception as exc:  # the other variants still count
                variants.remove("robe")
                result["skipped"].append(f"robe: kernels.torch_ext unavailable ({exc})")
    tables = build_tables(shape, FairConfig(**{**asdict(config), "variants": tuple(variants)}), device)
    if robe_ops is not None:
        from kernels import reference

        tables.robe_params = reference.HashParams.from_seed(
            shape.num_features, shape.embedding_dim // shape.block_size, 0
        )
    torch.manual_seed(0)
    dlrm_config = DLRMConfig.preset(base.name.value, num_dense=NUM_DENSE, num_features=shape.num_features)
    fp32 = DensePart(dlrm_config, torch.float32).to(device).eval()
    denses = {"fp32": fp32}
    if "bf16" in config.dtypes:
        bf16 = DensePart(dlrm_config, torch.bfloat16).to(device).eval()
        bf16.load_state_dict(fp32.state_dict())  # the same weights
        bf16.dlrm.to(torch.bfloat16)
        denses["bf16"] = bf16
    with torch.no_grad():  # not inference_mode: the host-gather thread writes into these buffers
        for distribution, batch, dtype in itertools.product(
            config.distributions, config.batches, config.dtypes
        ):
            label = f"{distribution.value} batch {batch} {dtype}"
            if time.monotonic() - started > config.budget_s:
                result["skipped"].append(f"{label}: time budget of {config.budget_s:.0f} s spent")
                continue
            try:
                result["runs"] += measure(
                    tables,
                    denses[dtype],
                    device,
                    config,
                    gather,
                    robe_ops,
                    variants,
                    batch,
                    distribution,
                    dtype,
                    result,
                )
            except (RuntimeError, MemoryError) as exc:
                logger.error("%s failed: %s", label, exc)
                result["errors"].append(f"{label}: {str(exc).splitlines()[0] if str(exc) else exc}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            result["elapsed_s"] = round(time.monotonic() - started, 1)
            write_json(path, result)
    result["asserts"] = caps_asserts(result["memory"], shape, base)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    write_json(path, result)
    return result


def measure(
    tables: Tables,
    dense: DensePart,
    device: torch.device,
    config: FairConfig,
    gather: GatherKernel | None,
    robe_ops: Any,
    variants: list[str],
    batch: int,
    distribution: IdDistribution,
    dtype: str,
    result: dict[str, Any],
) -> list[dict[str, Any]]:
    """Every variant at one (batch, ids, dtype): alternating samples, medians, stage times, peak memory."""
    runner = Runner(tables, dense, device, config, gather, robe_ops, batch, distribution)
    calls: dict[str, Callable[[int], None]] = {}
    for variant in variants:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            baseline = torch.cuda.memory_allocated(device)
        if variant in ("full-host", "full-host-db"):
            calls[variant] = runner.host_steps(double_buffer=variant == "full-host-db")
        else:
            calls[variant] = _loop(runner.device_step(variant))
        calls[variant](2)
        activations = torch.cuda.max_memory_allocated(device) - baseline if device.type == "cuda" else 0
        entry = result["memory"].setdefault(
            variant, {"device_bytes": _device_bytes(variant, tables, dense), "activation_peak_bytes": 0}
        )
        entry["activation_peak_bytes"] = max(entry["activation_peak_bytes"], int(activations))
    result["notes"].update(runner.notes)
    timings = alternate({v: _timed(calls[v], config.iters) for v in variants}, config.timing)
    stages = stage_times(runner, variants, tables, device)
    records: list[dict[str, Any]] = []
    for variant, timing in timings.items():
        records.append(
            {
                "variant": variant,
                "batch": batch,
                "ids": distribution.value,
                "dtype": dtype,
                "median_ms": 1e3 * timing.median_s,
                "spread": round(timing.spread, 4),
                "rounds": len(timing.samples),
                "samples_per_s": batch / timing.median_s,
                "samples_ms": [1e3 * s for s in timing.samples],
                "stages_ms": stages.get(variant, {}),
                "graph": runner.notes.get(variant, "eager"),
            }
        )
    robe_rate = next((float(r["samples_per_s"]) for r in records if r["variant"] == "robe"), None)
    for record in records:
        record["robe_vs_this"] = robe_rate / float(record["samples_per_s"]) if robe_rate else None
    logger.info(
        "%s batch %d %s: %s",
        distribution.value,
        batch,
        dtype,
        ", ".join(f"{r['variant']} {r['samples_per_s']:,.0f}/s" for r in records),
    )
    return records


def stage_times(
    runner: Runner, variants: list[str], tables: Tables, device: torch.device, repeats: int = 10
) -> dict[str, dict[str, float]]:
    """Median ms of each variant's stages: lookup (device kernel or CPU gather), transfer (host-table
    variants: the [B, F, d] copy to the device), dense (the shared dense part)."""

    def clock(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            runner._sync()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times)

    dense_h, ids_h = runner.inputs[0]
    runner.ids_d.copy_(ids_h)
    runner.dense_d.copy_(dense_h)
    shape = tables.shape
    sparse = torch.zeros((runner.batch, shape.num_features, shape.embedding_dim), device=device)
    dense_ms = clock(lambda: runner.dense(runner.dense_d, sparse))
    out: dict[str, dict[str, float]] = {}
    for variant in variants:
        if variant in ("full-host", "full-host-db"):
            out[variant] = {**host_stages(tables, ids_h, device, clock), "dense": dense_ms}
        else:
            lookup = runner.lookup(variant)
            out[variant] = {"lookup": clock(lookup), "dense": dense_ms}
    return out


def host_stages(
    tables: Tables, ids: torch.Tensor, device: torch.device, clock: Callable[[Callable[[], object]], float]
) -> dict[str, float]:
    """CPU gather and host-to-device copy of one batch's [B*F, d] rows (ms)."""
    host_table = tables.host_table
    assert host_table is not None
    flat = (ids + tables.offsets_host).view(-1)
    staged = torch.index_select(host_table, 0, flat)
    staged = staged.pin_memory() if device.type == "cuda" else staged
    return {
        "lookup": clock(lambda: torch.index_select(host_table, 0, flat)),
        "transfer": clock(lambda: staged.to(device, non_blocking=True)),
    }


def caps_asserts(memory: dict[str, dict[str, int]], shape: Shape, base: Shape) -> list[dict[str, Any]]:
    """Where each variant can live under 24/48/80 GB, at the measured and at the full (unscaled) shape."""
    checks = []
    for variant, entry in memory.items():
        measured = entry["device_bytes"] + entry["activation_peak_bytes"]
        full_scale = measured
        if variant in ("full-hbm", "full-hbm-vec"):
            full_scale = measured - shape.table_bytes + base.table_bytes
        for cap in CAPS_GB:
            checks.append(
                {
                    "variant": variant,
                    "cap_gb": cap,
                    "device_bytes_measured": measured,
                    "device_bytes_full_scale": full_scale,
                    "fits_full_scale": full_scale <= cap * 10**9,
                }
            )
    return checks


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gpu_bench", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="terabyte")
    parser.add_argument("--batches", default="512,2048,16384")
    parser.add_argument("--ids", default="zipf,uniform")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--rows-scale", type=float, default=0.0, help="0: the largest that fits")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument(
        "--budget", type=float, default=300.0, help="seconds before no new measurement starts"
    )
    parser.add_argument("--host-threads", type=int, default=0)
    parser.add_argument("--no-graphs", action="store_true")
    parser.add_argument("--dry-run", action="store_true", help="tiny shape, few rounds (checks the logic)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "build/gpu_bench"))
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FairConfig:
    common = {
        "device": args.device,
        "graphs": not args.no_graphs,
        "host_threads": args.host_threads,
        "variants": tuple(v for v in args.variants.split(",") if v),
        "build_dir": args.out / "build",
    }
    if args.dry_run:
        return FairConfig(
            "tiny",
            (16, 64),
            (IdDistribution.ZIPF,),
            ("fp32", "bf16"),
            rows_scale=1.0,
            timing=TimingConfig(1, 3),
            iters=2,
            budget_s=args.budget,
            **common,
        )
    return FairConfig(
        args.shape,
        tuple(int(b) for b in args.batches.split(",")),
        tuple(IdDistribution(d) for d in args.ids.split(",")),
        tuple(args.dtypes.split(",")),
        rows_scale=args.rows_scale,
        timing=TimingConfig(2, args.rounds, max_seconds=4.0, min_rounds=3),
        iters=args.iters,
        budget_s=args.budget,
        **common,
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(force=True, level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    try:
        args = parse_args(argv)
        result = run(config_from_args(args), args.out)
    except (ValueError, OSError, RuntimeError) as exc:
        sys.stderr.write(f"error: {str(exc).splitlines()[0] if str(exc) else exc}\n")
        return 2
    return 0 if result["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
