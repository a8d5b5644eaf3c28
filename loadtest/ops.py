"""CPU lookup throughput of the ai.robe ops: ``python -m loadtest.ops`` (issue 4, DESIGN.md section 7).

At batch 4096 x 26 features, for d in {16, 128} and Z in {d, 4}, one ONNX model per (d, Z) holds a single
``ai.robe::RobeEmbedding`` node plus its model-local function in standard ONNX ops
(:func:`export.functions.robe_embedding`). Two sessions run it:

- ``robe_op``: the custom-op library registered, so its kernel takes the node;
- ``standard_ops``: no library, so onnxruntime inlines the function (the same lookup in standard ops).

Beside them, ``full_gather`` is a plain ``Gather`` from a full Criteo-Kaggle table (33.8M x 16 float32 =
2.16 GB, random values, every page touched before timing) with Zipf ids (d = 16 only). ROBE's M holds
540,000 floats (2.16 MB, the Kaggle tables / 1000) for d = 16 and 27M floats (108 MB) for d = 128.

All sessions: the same intra-op thread count, ``allow_spinning`` off, inputs and a preallocated output
bound once (io_binding), warm-up, then alternating rounds (:func:`loadtest.timing.alternate`), medians.
Both halves of the model are checked equal before timing. Results: ``ops.json`` (``robe_vs_standard_ops``
= the smallest ratio over the four (d, Z), ``robe_vs_full_gather`` = ROBE Z = d = 16 vs the full gather),
``ops.md`` and ``ops.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

import kernels
from export.functions import robe_embedding
from kernels.reference import HashParams
from loadtest.shapes import KAGGLE_ROWS
from loadtest.timing import TimingConfig, alternate, wall_clock

logger = logging.getLogger(__name__)

FULL_DIM = 16
SMALL_M = sum(KAGGLE_ROWS) * FULL_DIM // 1000  # 540,201 floats: 2.16 MB
LARGE_M = 27_000_000  # 108 MB, the ROBE paper's Criteo Terabyte budget
ZIPF_EXPONENT = 1.05


@dataclass(frozen=True)
class OpsBenchConfig:
    """One benchmark run.

    Args:
        batch: rows per inference; each has ``len(KAGGLE_ROWS)`` = 26 ids.
        threads: intra-op threads of every session.
        dims: embedding dims to measure (Z in {d, 4} each).
        rounds: timed rounds (each runs every variant once).
        target_sample_s: each sample repeats a run until about this long.
        full_table: include the 2.16 GB full-table gather.
        seed: ids, M and hash parameters.
    """

    batch: int = 4096
    threads: int = 1
    dims: tuple[int, ...] = (16, 128)
    rounds: int = 15
    target_sample_s: float = 0.1
    full_table: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch < 1 or self.threads < 1 or self.rounds < 1 or not self.target_sample_s > 0:
            raise ValueError(f"batch, threads, rounds and target_sample_s must be positive: {self}")
        if not self.dims or any(d < 4 or d % 4 for d in self.dims):
            raise ValueError(f"dims must be multiples of 4, got {self.dims}")


@dataclass(frozen=True)
class Variant:
    name: str
    dim: int
    block_size: int
    run: Callable[[], object]


def _options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def robe_model(params: HashParams, dim: int, block_size: int) -> bytes:
    """One RobeEmbedding node with its standard-op function: ids [B, F], M [m] -> out [B, F, d]."""
    node = helper.make_node(
        "RobeEmbedding",
        ["ids", "M"],
        ["out"],
        domain="ai.robe",
        embedding_dim=dim,
        block_size=block_size,
        **{k: getattr(params, k).tolist() for k in ("a1", "a2", "c", "g1", "g2")},
    )
    graph = helper.make_graph(
        [node],
        "robe",
        [
            helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", params.num_features]),
            helper.make_tensor_value_info("M", TensorProto.FLOAT, ["m"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", params.num_features, dim])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("ai.robe", 1)],
        functions=[robe_embedding()],
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def gather_model(num_features: int, dim: int) -> bytes:
    """Gather(table [R, d], rows [B, F]) -> out [B, F, d]."""
    node = helper.make_node("Gather", ["table", "rows"], ["out"], axis=0)
    graph = helper.make_graph(
        [node],
        "full",
        [
            helper.make_tensor_value_info("table", TensorProto.FLOAT, ["R", dim]),
            helper.make_tensor_value_info("rows", TensorProto.INT64, ["B", num_features]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", num_features, dim])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()


def zipf_rows(rng: np.random.Generator, batch: int) -> np.ndarray:
    """Rows [B, F] of the concatenated Kaggle tables: Zipf ranks scattered over each feature's rows."""
    columns = []
    for cardinality in KAGGLE_ROWS:
        ranks = (rng.zipf(ZIPF_EXPONENT, size=batch) - 1) % cardinality
        columns.append((ranks.astype(np.int64) * 2654435761) % cardinality)
    return np.stack(columns, axis=1) + np.concatenate([[0], np.cumsum(KAGGLE_ROWS)[:-1]])


def _bound(
    session: ort.InferenceSession, inputs: dict[str, np.ndarray], out: np.ndarray
) -> Callable[[], object]:
    """A run with inputs and output bound once (no copies, no allocation per run)."""
    binding = session.io_binding()
    for name, array in inputs.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array))
    binding.bind_ortvalue_output("out", ort.OrtValue.ortvalue_from_numpy(out))
    return lambda: session.run_with_iobinding(binding)


def robe_variants(config: OpsBenchConfig, rng: np.random.Generator, library: Path) -> list[Variant]:
    """robe_op and standard_ops for every (d, Z), after checking the two agree bit for bit."""
    features = len(KAGGLE_ROWS)
    ids = rng.integers(0, 1 << 62, size=(config.batch, features), dtype=np.int64)
    variants = []
    for dim in config.dims:
        memory = rng.standard_normal(SMALL_M if dim == FULL_DIM else LARGE_M, dtype=np.float32)
        for block_size in dict.fromkeys((dim, 4)):
            params = HashParams.from_seed(features, dim // block_size, config.seed)
            model = robe_model(params, dim, block_size)
            with_library = _options(config.threads)
            with_library.register_custom_ops_library(str(library))
            outs = {
                name: np.empty((config.batch, features, dim), np.float32)
                for name in ("robe_op", "standard_ops")
            }
            runs = {
                "robe_op": _bound(
                    ort.InferenceSession(model, with_library, providers=["CPUExecutionProvider"]),
                    {"ids": ids, "M": memory},
                    outs["robe_op"],
                ),
                "standard_ops": _bound(
                    ort.InferenceSession(model, _options(config.threads), providers=["CPUExecutionProvider"]),
                    {"ids": ids, "M": memory},
                    outs["standard_ops"],
                ),
            }
            for run in runs.values():
                run()
            if not np.array_equal(outs["robe_op"], outs["standard_ops"]):
                raise RuntimeError(f"robe_op and standard_ops disagree at d={dim} Z={block_size}")
            variants += [Variant(name, dim, block_size, run) for name, run in runs.items()]
    return variants


def full_gather_variant(config: OpsBenchConfig, rng: np.random.Generator) -> Variant:
    table = np.empty((sum(KAGGLE_ROWS), FULL_DIM), dtype=np.float32)
    logger.info("filling the full table (%.2f GB)", table.nbytes / 1e9)
    rng.random(out=table, dtype=np.float32)  # writes, so every page is resident before timing
    session = ort.InferenceSession(
        gather_model(len(KAGGLE_ROWS), FULL_DIM), _options(config.threads), providers=["CPUExecutionProvider"]
    )
    out = np.empty((config.batch, len(KAGGLE_ROWS), FULL_DIM), np.float32)
    return Variant(
        "full_gather",
        FULL_DIM,
        FULL_DIM,
        _bound(session, {"table": table, "rows": zipf_rows(rng, config.batch)}, out),
    )


def _repeats(run: Callable[[], object], target_s: float) -> int:
    start = time.perf_counter()
    run()
    return max(1, round(target_s / max(time.perf_counter() - start, 1e-6)))


def run_benchmark(config: OpsBenchConfig, library: Path) -> dict[str, Any]:
    """Time every variant; returns the ops.json document."""
    rng = np.random.default_rng(config.seed)
    variants = robe_variants(config, rng, library)
    if config.full_table and FULL_DIM in config.dims:
        variants.append(full_gather_variant(config, rng))
    samples = {
        f"{v.name} d={v.dim} Z={v.block_size}": wall_clock(v.run, _repeats(v.run, config.target_sample_s))
        for v in variants
    }
    load_before = os.getloadavg()
    timings = alternate(
        samples, TimingConfig(warmup=2, rounds=config.rounds, min_rounds=min(3, config.rounds))
    )
    lookups = config.batch * len(KAGGLE_ROWS)
    runs = []
    for v, (label, timing) in zip(variants, timings.items(), strict=True):
        runs.append(
            {
                "variant": v.name,
                "embedding_dim": v.dim,
                "block_size": v.block_size,
                "batch": config.batch,
                "features": len(KAGGLE_ROWS),
                "threads": config.threads,
                "median_ms": timing.median_s * 1e3,
                "ns_per_lookup": timing.median_s / lookups * 1e9,
                "spread": timing.spread,
                "rounds": len(timing.samples),
                "label": label,
            }
        )
    return {**ratios(runs), "runs": runs, "config": asdict(config), "machine": machine(load_before)}


def ratios(runs: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """robe_vs_standard_ops (smallest over (d, Z)) and robe_vs_full_gather (Z = d = 16)."""
    median = {(r["variant"], r["embedding_dim"], r["block_size"]): r["median_ms"] for r in runs}
    vs_standard = [
        median[("standard_ops", d, z)] / ms for (name, d, z), ms in median.items() if name == "robe_op"
    ]
    robe16 = median.get(("robe_op", FULL_DIM, FULL_DIM))
    full = median.get(("full_gather", FULL_DIM, FULL_DIM))
    return {
        "robe_vs_standard_ops": min(vs_standard) if vs_standard else None,
        "robe_vs_full_gather": full / robe16 if full and robe16 else None,
    }


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    cpu = (
        next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else ""
    )
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }


def render_markdown(result: dict[str, Any], command: str) -> str:
    m, c = result["machine"], result["config"]
    lines = [
        "# ai.robe ops on CPU: ROBE lookup vs standard ONNX ops vs a full-table Gather",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, onnxruntime {m['onnxruntime']}, "
        f"Python {m['python']}; load average {m['load_average_before'][0]:.1f} before timing, "
        f"{m['load_average_after'][0]:.1f} after (a shared machine: other jobs ran beside this one).",
        "",
        f"Batch {c['batch']} x 26 features, {c['threads']} intra-op thread(s) in every session, "
        f"allow_spinning off, io_binding with a preallocated output, {c['rounds']} alternating rounds after "
        "warm-up; medians. "
        "No trained weights are needed for throughput.",
        "",
        "| variant | d | Z | median ms per batch | ns per lookup | spread (p90-p10)/median |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['variant']} | {r['embedding_dim']} | {r['block_size']} | {r['median_ms']:.2f} "
            f"| {r['ns_per_lookup']:.1f} | {r['spread']:.2f} |"
        )
    vs_standard, vs_full = result["robe_vs_standard_ops"], result["robe_vs_full_gather"]
    lines += [
        "",
        f"- **robe_vs_standard_ops = {vs_standard:.1f}x** (the smallest standard_ops / robe_op ratio "
        "over the (d, Z) above; target >= 10x)."
        if vs_standard
        else "- robe_vs_standard_ops: not measured.",
        f"- **robe_vs_full_gather = {vs_full:.2f}x** (full_gather / robe_op at d = Z = 16; target >= 3x)."
        if vs_full
        else "- robe_vs_full_gather: not measured (no full table in this run).",
        "",
        "robe_op: the ai.robe kernel; standard_ops: the same model without the library, so onnxruntime "
        "runs the model-local function (export/functions.py); full_gather: Gather from the 2.16 GB table "
        "with Zipf ids. M: 2.16 MB (d = 16) or 108 MB (d = 128).",
        "",
        "![ops](ops.png)",
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, ax = plt.subplots(figsize=(9, 4))
    colors = {"robe_op": "tab:green", "standard_ops": "tab:gray", "full_gather": "tab:red"}
    ax.barh(
        [r["label"] for r in runs],
        [r["ns_per_lookup"] for r in runs],
        color=[colors[r["variant"]] for r in runs],
    )
    ax.set_xscale("log")
    ax.set_xlabel("ns per lookup (median, log scale)")
    ax.invert_yaxis()
    ax.set_title(
        f"CPU lookups, batch {result['config']['batch']} x 26, {result['config']['threads']} thread(s)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ops", description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dims", default="16,128", help="comma-separated embedding dims")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-full-table", action="store_true", help="skip the 2.16 GB full-table gather")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    logging.basicConfig(force=True, level=logging.INFO, format="%(message)s")
    try:
        config = OpsBenchConfig(
            args.batch,
            args.threads,
            tuple(int(d) for d in args.dims.split(",")),
            args.rounds,
            full_table=not args.no_full_table,
        )
        library = kernels.library_path()
    except (ValueError, kernels.LibraryNotBuilt) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    result = run_benchmark(config, library)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m loadtest.ops " + " ".join(argv if argv is not None else sys.argv[1:])
    (args.out / "ops.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "ops.md").write_text(render_markdown(result, command.strip()))
    plot(result, args.out / "ops.png")
    logger.info(
        "robe_vs_standard_ops %s, robe_vs_full_gather %s (written to %s)",
        result["robe_vs_standard_ops"],
        result["robe_vs_full_gather"],
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
