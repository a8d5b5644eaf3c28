"""Timing half of the GPU check (kernels/gpu_check.py): each op at batch 4096 x 26 with CUDA events.

GPU time comes from replaying a CUDA graph of GRAPH_CALLS calls (no Python between launches); the eager
time runs the same calls from Python, wrapper overhead included. Beside the ai.robe ops, PyTorch gathers
from a full Criteo-Kaggle table (33.8M x 16 floats, 2.16 GB) with Zipf ids give the uncompressed baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels import reference as ref

logger = logging.getLogger(__name__)

# Criteo Kaggle (Display Advertising Challenge) cardinalities of the 26 categorical features: 33.8M rows
# (as loadtest.shapes.KAGGLE_ROWS; repeated so the GPU check needs nothing outside kernels/).
KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992, 5461306, 10,
    5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
GRAPH_CALLS = 20


@dataclass(frozen=True)
class Timing:
    """GPU time per call from a CUDA graph of GRAPH_CALLS calls (no Python in the loop), and the eager
    time per call, which includes the Python overhead of the op wrapper."""

    name: str
    us_per_call: float
    eager_us_per_call: float
    lookups_per_s: float
    output_gb_per_s: float


def zipf_ids(rng: np.random.Generator, shape: tuple[int, ...], cardinality: int) -> np.ndarray:
    """Zipf(1.05) ranks below cardinality, scattered over [0, cardinality) so hot rows are not adjacent."""
    ranks = (rng.zipf(1.05, size=shape) - 1) % cardinality
    return (ranks.astype(np.int64) * 2654435761) % cardinality


def event_time(call: Callable[[], object], iters: int, repeats: int) -> float:
    """Median over repeats of the mean time of one call, in microseconds (CUDA events)."""
    import torch

    for _ in range(10):
        call()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            call()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000.0 / iters)
    return float(np.median(samples))


def time_call(call: Callable[[], object], iters: int, repeats: int) -> tuple[float, float]:
    """(GPU microseconds per call from a replayed CUDA graph, eager microseconds per call)."""
    import torch

    eager = event_time(call, iters, repeats)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_CALLS):
            call()
    return event_time(graph.replay, max(iters // GRAPH_CALLS, 1), repeats) / GRAPH_CALLS, eager


def robe_call(
    ops: Any, ids: Any, memory: Any, params: ref.HashParams, dim: int, block: int
) -> Callable[[], object]:
    """One RobeEmbedding call into a preallocated output, through a plan made once (as a model does)."""
    import torch

    out = torch.empty((ids.shape[0], ids.shape[1], dim), device="cuda")
    plan = ops.robe_plan(ref.HashParams.from_seed(params.num_features, dim // block, params.seed), dim, block)
    return lambda: plan(ids, memory, out=out)


def run_timings(ops: Any, rng: np.random.Generator, batch: int, iters: int, repeats: int) -> list[Timing]:
    """Every op at batch x 26 Kaggle-distributed (Zipf) ids, then PyTorch's full-table gathers."""
    import torch

    features = len(KAGGLE_CARDINALITIES)
    lookups = batch * features
    ids_np = np.stack([zipf_ids(rng, (batch,), c) for c in KAGGLE_CARDINALITIES], axis=1)
    ids = torch.from_numpy(ids_np).cuda()
    params = ref.HashParams.from_seed(features, 1, 0)  # robe_call draws the blocks of each geometry
    timings = []

    def add(name: str, bytes_per_lookup: int, call: Callable[[], object]) -> None:
        try:
            us, eager = time_call(call, iters, repeats)
        except Exception as exc:  # one failed timing must not hide the others
            logger.error("timing %s failed: %s: %s", name, type(exc).__name__, exc)
            return
        timings.append(Timing(name, us, eager, lookups / us * 1e6, lookups * bytes_per_lookup / us / 1e3))
        logger.info("timed %-50s %8.1f us (eager %.1f us)", name, us, eager)

    small = torch.randn(540_000, device="cuda")  # 2.16 MB: the Kaggle tables compressed 1000x
    large = torch.randn(27_000_000, device="cuda")  # 108 MB: the paper's Terabyte budget
    for dim, block, memory, label in [
        (16, 16, small, "2.16 MB"),
        (16, 4, small, "2.16 MB"),
        (16, 1, small, "2.16 MB"),
        (128, 128, large, "108 MB"),
        (128, 32, large, "108 MB"),
        (128, 4, large, "108 MB"),
    ]:
        add(
            f"RobeEmbedding d={dim} Z={block}, M {label}",
            dim * 4,
            robe_call(ops, ids, memory, params, dim, block),
        )
    offsets = np.concatenate([[0], np.cumsum(KAGGLE_CARDINALITIES)]).astype(np.int64)
    # Kaggle-size vocabulary: feature f knows the values 0 .. cardinality_f - 1 (keys sorted per feature).
    keys = torch.from_numpy(
        np.concatenate([np.arange(c, dtype=np.int64) for c in KAGGLE_CARDINALITIES])
    ).cuda()
    size = (keys.numel(), ref.DEFAULT_NUM_MINHASHES)
    signatures = torch.from_numpy(rng.integers(0, 256, size=size).astype(np.uint8)).cuda()
    rows = torch.empty((batch, features), dtype=torch.int64, device="cuda")
    add("VocabLookup, 33.8M keys", 8, lambda: ops.vocab_forward(ids, keys, offsets, out=rows))
    out16 = torch.empty((batch, features, 16), device="cuda")
    lma = ops.lma_plan(ref.HashParams.from_seed(features, 4, 0), 16, 4, keys, offsets, signatures,
                       ref.DEFAULT_KEYS_PER_BLOCK)
    add(
        f"LmaEmbedding d=16 Z=4 k={ref.DEFAULT_KEYS_PER_BLOCK} S={ref.DEFAULT_NUM_MINHASHES}, 33.8M keys",
        64,
        lambda: lma(ids, small, out=out16),
    )
    table = torch.randn((int(offsets[-1]), 16), device="cuda")  # 2.16 GB full table
    flat_rows = (ids + torch.from_numpy(offsets[:-1]).cuda()).reshape(-1)
    add(
        "torch index_select, full table 33.8M x 16 (2.16 GB)",
        64,
        lambda: torch.index_select(table, 0, flat_rows, out=out16.view(-1, 16)),
    )
    add(
        "torch embedding, full table 33.8M x 16 (2.16 GB)",
        64,
        lambda: torch.nn.functional.embedding(flat_rows, table),
    )
    return timings
