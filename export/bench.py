"""``python -m export.bench --repository models``: what the ai.robe nodes buy over standard ONNX ops.

For every model of the repository (latest version) with ai.robe nodes, the same trained model is timed
as exported (custom-op graph, ai.robe kernels registered) and as its standard-op twin
(``graph.portable``: every function inlined, what plain onnxruntime runs), end to end and for the
embedding stage alone (the lookup probe). Variants alternate (A B A B ...) after a warm-up; medians are
reported. One intra-op thread per session, spinning off (DESIGN.md section 7).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from export import graph
from export.cli import Parser, setup_logging
from export.repository import MODEL_FILE, VERIFY_FILE, read_card, versions
from export.verify import session

logger = logging.getLogger(__name__)

BATCHES = (1, 64, 4096)


def _inputs(model_dir: Path, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``batch`` rows drawn (with replacement) from the held-out rows in verify.npz: real ids, so known
    values hit the vocabulary / learned signatures as often as in the data."""
    with np.load(model_dir / VERIFY_FILE) as bundle:
        held_out = {k.removeprefix("input/"): bundle[k] for k in bundle.files if k.startswith("input/")}
    rows = rng.integers(0, len(next(iter(held_out.values()))), size=batch)
    return {name: np.ascontiguousarray(values[rows]) for name, values in held_out.items()}


def _time(sessions: dict[str, ort.InferenceSession], feeds: dict[str, np.ndarray], repeats: int,
          budget_s: float) -> dict[str, float]:
    """Median milliseconds per run of each session, interleaved."""
    for sess in sessions.values():  # warm-up (and page in every weight)
        sess.run(None, feeds)
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    deadline = time.perf_counter() + budget_s
    for i in range(repeats):
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feeds)
            samples[name].append((time.perf_counter() - start) * 1e3)
        if i >= 4 and time.perf_counter() > deadline:
            break
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_model(model_dir: Path, batches: tuple[int, ...], repeats: int, budget_s: float) -> dict[str, Any]:
    """Node counts, parity and latencies of one model version."""
    card = read_card(model_dir)
    custom = onnx.load(str(model_dir / MODEL_FILE))
    standard = graph.portable(custom)
    probe = graph.lookup_probe(custom, model_dir)
    variants = {
        "custom": session(custom.SerializeToString(), with_kernels=True),
        "standard": session(standard.SerializeToString(), with_kernels=False),
    }
    stages = {
        "custom": session(probe.SerializeToString(), with_kernels=True),
        "standard": session(graph.portable(probe).SerializeToString(), with_kernels=False),
    }
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        feeds = _inputs(model_dir, batch, rng)
        end_to_end = _time(variants, feeds, repeats, budget_s)
        embedding = _time(stages, {"categorical": feeds["categorical"]}, repeats, budget_s)
        rows.append({"batch": batch, "end_to_end_ms": end_to_end, "embedding_ms": embedding,
                     "speedup": end_to_end["standard"] / end_to_end["custom"],
                     "embedding_speedup": embedding["standard"] / embedding["custom"]})
        logger.info("%s batch %d: %s", card["name"], batch, rows[-1])
    return {
        "name": card["name"], "method": card["embedding"]["method"], "verification": card.get("verification"),
        # stored top-level nodes of the custom-op graph vs every node (Loop bodies included) of the
        # standard-op graph
        "nodes": {"custom": len(custom.graph.node), "standard": graph.node_counts(standard)["nodes_inlined"]},
        "latency": rows,
    }


def run(repository: Path, names: list[str] | None, batches: tuple[int, ...], repeats: int,
        budget_s: float) -> dict[str, Any]:
    """Benchmark every custom-op model of ``repository`` (or ``names``)."""
    models = []
    candidates = names or sorted(p.name for p in repository.iterdir()
                                 if p.is_dir() and not p.name.startswith("."))
    for name in candidates:
        found = versions(repository, name)
        if not found:
            raise FileNotFoundError(f"no version of {name} in {repository}")
        model_dir = repository / name / str(found[-1])
        card = read_card(model_dir)
        if not card.get("custom_ops"):
            logger.info("%s has no ai.robe node: nothing to compare", name)
            continue
        models.append(bench_model(model_dir, batches, repeats, budget_s))
    return {"hardware": {"machine": platform.machine(), "cpu": _cpu_name(), "cpus": os.cpu_count(),
                         "python": platform.python_version(), "onnxruntime": ort.__version__,
                         "threads_per_session": 1},
            "models": models}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export.bench", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repository", type=Path, default=Path("models"))
    parser.add_argument("--models", help="comma-separated model names (default: all)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per variant and batch (max)")
    parser.add_argument("--budget-s", type=float, default=20.0, help="time cap per model and batch")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    args = parser.parse_args(argv)
    setup_logging(False)
    try:
        batches = tuple(int(b) for b in args.batches.split(","))
        names = args.models.split(",") if args.models else None
        results = run(args.repository, names, batches, args.repeats, args.budget_s)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201 (CLI output)
        return 1
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)  # noqa: T201 (CLI output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
