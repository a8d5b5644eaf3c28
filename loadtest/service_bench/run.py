"""The service benchmark: HTTP throughput vs a raw onnxruntime session, and latency at half saturation.

1. Saturation: ``clients`` closed-loop clients post ranking requests of ``samples_per_request`` samples.
   The service's own ``robeserve_batch_size`` histogram gives the effective batch size.
2. Raw: the same model in a bare onnxruntime session (same thread count) at that batch size.
3. Half saturation: an open-loop client at half the saturated request rate; p50 and p99 latency.
Throughput needs no trained weights: the model is a DLRM-sized MLP with random weights.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

from loadtest.service_bench.load import (
    LoadResult,
    build_request,
    closed_loop,
    open_loop,
    percentile,
    v2_ctr_body,
)
from loadtest.service_process import HOST, ServiceProcess
from loadtest.synthetic import CtrShape, ctr_model, write_entry

MODEL = "dlrm-bench"
BENCH_SHAPE = CtrShape(rows=100_000, embedding_dim=16, bottom=(512, 256, 64, 16), top=(512, 256))


class Encoding(StrEnum):
    """How request tensors travel: JSON ``data`` lists or the binary tensor data extension."""

    JSON = "json"
    BINARY = "binary"


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark run does.

    Args:
        clients: concurrent closed-loop clients.
        samples_per_request: samples (candidates) per request.
        seconds: length of each measured phase.
        rounds: raw/HTTP phase pairs; medians are reported.
        warmup_s: unmeasured load before the saturation phase.
        max_batch_size: the service's ``max_batch_size``.
        max_queue_delay_us: the service's ``max_queue_delay_us``.
        intra_op_threads: onnxruntime threads, for the service and for the raw session.
        encoding: ``json`` or ``binary`` request tensors.
        port: service port.
    """

    clients: int = 64
    samples_per_request: int = 128
    seconds: float = 5.0
    rounds: int = 3
    warmup_s: float = 3.0
    max_batch_size: int = 512
    max_queue_delay_us: int = 2000
    intra_op_threads: int = 1
    encoding: Encoding = Encoding.JSON
    port: int = 8123

    def __post_init__(self) -> None:
        if (
            min(
                self.clients,
                self.samples_per_request,
                self.max_batch_size,
                self.intra_op_threads,
                self.rounds,
            )
            < 1
        ):
            raise ValueError(
                "clients, samples_per_request, max_batch_size, intra_op_threads, rounds must be >= 1"
            )
        if self.seconds <= 0 or self.warmup_s < 0:
            raise ValueError("seconds must be > 0 and warmup_s >= 0")
        object.__setattr__(self, "encoding", Encoding(self.encoding))


def _features(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    dense = rng.integers(0, 1000, size=(size, BENCH_SHAPE.num_dense)).astype(np.float32)
    categorical = rng.integers(0, 2**32, size=(size, BENCH_SHAPE.num_categorical), dtype=np.int64)
    return dense, categorical


def _body(dense: np.ndarray, categorical: np.ndarray, encoding: Encoding) -> tuple[bytes, dict[str, str]]:
    if encoding is Encoding.JSON:
        return v2_ctr_body(dense, categorical), {"Content-Type": "application/json"}
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "dense",
                    "shape": list(dense.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": dense.nbytes},
                },
                {
                    "name": "categorical",
                    "shape": list(categorical.shape),
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": categorical.nbytes},
                },
            ],
            "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
        }
    ).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + dense.tobytes() + categorical.tobytes(), headers


def raw_samples_per_s(model_path: Path, batch: int, threads: int, seconds: float) -> float:
    """Samples/s of a bare onnxruntime session at ``batch`` (inputs already preprocessed)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    dense, categorical = _features(np.random.default_rng(1), batch)
    feeds = {"dense": np.log1p(dense), "categorical": categorical}
    for _ in range(5):
        session.run(None, feeds)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def _batch_histogram(url: str) -> tuple[float, float]:
    total = count = 0.0
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("robeserve_batch_size_sum{"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("robeserve_batch_size_count{"):
            count += float(line.rsplit(" ", 1)[1])
    return total, count


def _start_service(repository: Path, config: BenchConfig, log: Path) -> ServiceProcess:
    env = {
        "ROBESERVE_MAX_BATCH_SIZE": str(config.max_batch_size),
        "ROBESERVE_MAX_QUEUE_DELAY_US": str(config.max_queue_delay_us),
        "ROBESERVE_INTRA_OP_THREADS": str(config.intra_op_threads),
        "ROBESERVE_MAX_QUEUE_SIZE": str(max(256, 2 * config.clients)),
        "ROBESERVE_POLL_INTERVAL_S": "0",
        "ROBESERVE_DRAIN_DELAY_S": "0",
    }
    service = ServiceProcess(repository, config.port, log, env)
    service.wait_ready(120)
    return service


def _latency_summary(result: LoadResult) -> dict[str, float]:
    p50, p99 = percentile(result.latencies_s, 0.50), percentile(result.latencies_s, 0.99)
    return {
        "requests_per_s": result.requests_per_s,
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "p99_over_p50": p99 / p50,
        "failed": result.failed,
    }


def _saturation_phase(config: BenchConfig, requests: list[bytes]) -> tuple[LoadResult, float]:
    """One closed-loop phase; returns its result and the effective batch size the service formed."""
    url = f"http://{HOST}:{config.port}"
    batch_sum, batch_count = _batch_histogram(url)
    result = asyncio.run(closed_loop(HOST, config.port, requests, config.clients, config.seconds))
    batch_sum_after, batch_count_after = _batch_histogram(url)
    return result, (batch_sum_after - batch_sum) / max(1.0, batch_count_after - batch_count)


def _alternate(config: BenchConfig, requests: list[bytes], model_path: Path, batch: int) -> dict[str, Any]:
    """Raw and HTTP phases alternated (A B A B ...), so that load from other processes hits both."""
    raw, http, batches = [], [], []
    for _ in range(config.rounds):
        raw.append(raw_samples_per_s(model_path, batch, config.intra_op_threads, config.seconds))
        result, effective = _saturation_phase(config, requests)
        if result.failed:
            raise RuntimeError(f"{result.failed} requests failed under saturation: {result.statuses}")
        http.append(result.requests_per_s * config.samples_per_request)
        batches.append(effective)
    return {"raw_samples_per_s": raw, "http_samples_per_s": http, "effective_batch_size": batches}


def run_bench(config: BenchConfig, workdir: Path | None = None) -> dict[str, Any]:
    """Run every phase; returns the figures that ``docs/benchmarks/service.md`` reports."""
    root = Path(workdir or tempfile.mkdtemp(prefix="robeserve-bench-"))
    model_dir = write_entry(
        root / "models",
        MODEL,
        "1",
        ctr_model(BENCH_SHAPE, seed=0),
        "ctr",
        preprocessing={"dense": "log1p_clip0"},
    )
    rng = np.random.default_rng(0)
    requests = [
        build_request(
            HOST,
            f"/v2/models/{MODEL}/infer",
            *_body(*_features(rng, config.samples_per_request), config.encoding),
        )
        for _ in range(16)
    ]
    service = _start_service(root / "models", config, root / "service.log")
    try:
        _, warm_batch = _saturation_phase(replace(config, seconds=config.warmup_s), requests)
        rounds = _alternate(config, requests, model_dir / "model.onnx", max(1, round(warm_batch)))
        http_median = statistics.median(rounds["http_samples_per_s"])
        rate = http_median / config.samples_per_request / 2
        gc.collect()
        gc.disable()  # a collection in this client would show up as server latency
        try:
            half = asyncio.run(open_loop(HOST, config.port, requests, rate, config.seconds))
        finally:
            gc.enable()
    finally:
        service.stop()
    raw_median = statistics.median(rounds["raw_samples_per_s"])
    return {
        "config": asdict(config),
        "model": {"name": MODEL, "shape": asdict(BENCH_SHAPE), "parameters": BENCH_SHAPE.parameter_count},
        "hardware": {
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0],
            "onnxruntime": ort.__version__,
            "python": platform.python_version(),
        },
        "raw_batch_size": max(1, round(warm_batch)),
        "rounds": rounds,
        "raw_samples_per_s": raw_median,
        "http_samples_per_s": http_median,
        "http_vs_raw": http_median / raw_median,
        "half_saturation": {**_latency_summary(half), "target_requests_per_s": rate},
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
