"""GPU check of the ai.robe CUDA kernels: ``bash kernels/gpu_check.sh`` (= ``python -m kernels.gpu_check``).

On a machine with an NVIDIA GPU, nvcc and PyTorch (no internet, no onnxruntime-gpu needed) it:

1. compiles the launchers with nvcc for the visible GPU (``build/gpu_check``) and loads them through
   :mod:`kernels.torch_ext` (the PyTorch extension when it builds, else ctypes);
2. checks every kernel against :mod:`kernels.reference` bit for bit: fresh random inputs (the seed is
   printed), outputs poisoned before each run, vector and scalar paths, misaligned M, M of one block,
   invalid ids, empty and one-row batches, 128 features, a side stream, and every robe / lma golden case
   of ``tests/golden/hash_golden.json`` (one with m > 2^31 floats);
3. times each op with CUDA events at batch 4096 x 26 beside a PyTorch gather from a full Criteo-Kaggle
   table (33.8M x 16 floats, Zipf ids), and prints a table last.

``gpu_check.json`` and ``gpu_check.md`` go to ``build/gpu_check`` and, when ``$OUT`` is set, to ``$OUT``.
Exit status 1 when any check fails, 2 when the machine cannot run the check.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kernels import reference as ref
from kernels.gpu_timing import GRAPH_CALLS, KAGGLE_CARDINALITIES, Timing, run_timings, zipf_ids

logger = logging.getLogger(__name__)

SPECIAL_IDS = (0, 1, 2**31 - 1, 2**31, 2**32 - 1, 3 * 2**31 - 1, 2**62 - 1)
INVALID_IDS = (-1, -(2**31), 2**62, 2**63 - 1)
POISON_FLOAT = -12345.5
POISON_INT = -7
GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden" / "hash_golden.json"
EXACT_FLOATS = 1 << 24  # float32 holds every integer below this: M's values spell indices in two digits


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Report:
    device: str
    backend: str = ""
    seed: int = 0
    checks: list[CheckResult] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)


def random_ids(rng: np.random.Generator, batch: int, features: int) -> np.ndarray:
    """Ids [B, F] < 2^62: a quarter special ids, a quarter small Zipf values, the rest uniform."""
    ids = rng.integers(0, ref.ID_LIMIT, size=(batch, features), dtype=np.int64)
    pick = rng.random((batch, features))
    ids = np.where(pick < 0.25, rng.choice(np.asarray(SPECIAL_IDS, dtype=np.int64), size=ids.shape), ids)
    return np.where((pick >= 0.25) & (pick < 0.5), zipf_ids(rng, ids.shape, 1000), ids)


def vocabulary(
    rng: np.random.Generator, ids: np.ndarray, sizes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys per feature (about half taken from ids, so they are found) and offsets [F + 1]."""
    keys, offsets = [], [0]
    for f, size in enumerate(sizes):
        column = ids[:, f][ids[:, f] >= 0]
        known = column[: size // 2] if len(column) else column
        extra = rng.integers(0, ref.ID_LIMIT, size=max(size - len(known), 0), dtype=np.int64)
        feature_keys = np.unique(np.concatenate([known, extra]))[:size] if size else np.zeros(0, np.int64)
        keys.append(feature_keys)
        offsets.append(offsets[-1] + len(feature_keys))
    return np.concatenate(keys).astype(np.int64), np.asarray(offsets, dtype=np.int64)


class Checker:
    """Runs the bit-exactness checks of one backend of :mod:`kernels.torch_ext`.

    Args:
        ops: the loaded CUDA ops.
        rng: source of fresh random inputs.
        prefix: put before every check name (which bridge ran it).
        device: where inputs and outputs live (``cpu`` only to dry-run the harness in tests).
    """

    def __init__(self, ops: Any, rng: np.random.Generator, prefix: str = "", device: str = "cuda") -> None:
        import torch

        self.ops, self.rng, self.torch, self.prefix, self.device = ops, rng, torch, prefix, device
        self.results: list[CheckResult] = []

    def cuda(self, array: np.ndarray) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def synchronize(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def record(self, name: str, run: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        try:
            got, expected = run()
            ok = got.shape == expected.shape and np.array_equal(
                got, expected, equal_nan=got.dtype.kind == "f"
            )
            detail = "" if ok else f"{int(np.sum(got != expected))} of {expected.size} values differ"
        except Exception as exc:  # a failing check must not hide the others
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        name = self.prefix + name
        self.results.append(CheckResult(name, ok, detail))
        logger.info("%-54s %s %s", name, "ok" if ok else "FAIL", detail)

    def poisoned(self, shape: tuple[int, ...], dtype: Any) -> Any:
        fill = POISON_INT if dtype == self.torch.int64 else POISON_FLOAT
        return self.torch.full(shape, fill, dtype=dtype, device=self.device)

    def robe(
        self,
        name: str,
        features: int,
        dim: int,
        block: int,
        m: int,
        batch: int,
        *,
        misalign: bool = False,
        invalid: bool = False,
        side_stream: bool = False,
    ) -> None:
        def run() -> tuple[np.ndarray, np.ndarray]:
            params = ref.HashParams.from_seed(features, dim // block, int(self.rng.integers(1 << 30)))
            ids = random_ids(self.rng, batch, features)
            memory = self.rng.standard_normal(m).astype(np.float32)
            expected = ref.robe_lookup(ids, memory, params, dim, block)
            if invalid and batch:
                ids[0, 0], ids[-1, -1] = INVALID_IDS[0], INVALID_IDS[2]
                expected[0, 0], expected[-1, -1] = np.nan, np.nan
            # A view one float into a buffer: 4-byte aligned only, which must select the scalar path.
            shifted = self.cuda(np.concatenate([np.zeros(1, np.float32), memory]))
            device_memory = shifted[1:] if misalign else self.cuda(memory)
            out = self.poisoned((batch, features, dim), self.torch.float32)
            device_ids = self.cuda(ids)
            if side_stream and self.device == "cuda":
                stream = self.torch.cuda.Stream()
                stream.wait_stream(self.torch.cuda.current_stream())
                with self.torch.cuda.stream(stream):
                    self.ops.robe_plan(params, dim, block)(device_ids, device_memory, out=out)
            else:
                self.ops.robe_plan(params, dim, block)(device_ids, device_memory, out=out)
            self.synchronize()
            return out.cpu().numpy(), expected

        self.record(name, run)

    def lma(
        self,
        name: str,
        features: int,
        dim: int,
        block: int,
        m: int,
        batch: int,
        keys_per_block: int,
        vocab_size: int,
        *,
        invalid: bool = False,
    ) -> None:
        def run() -> tuple[np.ndarray, np.ndarray]:
            params = ref.HashParams.from_seed(features, dim // block, int(self.rng.integers(1 << 30)))
            ids = random_ids(self.rng, batch, features)
            sizes = [0 if f == 1 else int(self.rng.integers(1, vocab_size + 1)) for f in range(features)]
            keys, offsets = vocabulary(self.rng, ids, sizes)
            num_minhashes = keys_per_block + int(self.rng.integers(0, 8))
            signatures = self.rng.integers(0, 256, size=(len(keys), num_minhashes)).astype(np.uint8)
            signatures[: len(keys) // 4] = signatures[0]  # tokens sharing every block
            memory = self.rng.standard_normal(m).astype(np.float32)
            idx = ref.lma_indices(ids, keys, offsets, signatures, params, m, dim, block, keys_per_block)
            expected = memory[idx]
            if invalid and batch:
                ids[0, 0] = INVALID_IDS[3]
                expected[0, 0] = np.nan
            out = self.poisoned((batch, features, dim), self.torch.float32)
            plan = self.ops.lma_plan(params, dim, block, self.cuda(keys), offsets, self.cuda(signatures),
                                     keys_per_block)
            plan(self.cuda(ids), self.cuda(memory), out=out)
            self.synchronize()
            return out.cpu().numpy(), expected

        self.record(name, run)

    def golden(self, kind: str, case: dict[str, Any]) -> None:
        """A golden case of tests/golden (m up to 2^31 + 5): the indices every element reads, bit for bit.

        M holds the index's low base-2^24 digit in one run and its high digit in a second run (both exact
        in float32), so any m that fits the device is checked without a float rounding an index.
        """

        def run() -> tuple[np.ndarray, np.ndarray]:
            torch = self.torch
            params = ref.HashParams.from_dict(case["params"])
            dim, block = case["embedding_dim"], case["block_size"]
            ids = self.cuda(np.asarray(case["ids"], np.int64))
            if kind == "robe":
                plan = self.ops.robe_plan(params, dim, block)
            else:
                plan = self.ops.lma_plan(params, dim, block, self.cuda(np.asarray(case["keys"], np.int64)),
                                         case["offsets"], self.cuda(np.asarray(case["signatures"], np.uint8)),
                                         case["keys_per_block"])
            digits = []
            for digit in (lambda i: i % EXACT_FLOATS, lambda i: i // EXACT_FLOATS):
                memory = digit(torch.arange(case["m"], dtype=torch.int64,
                                            device=self.device)).to(torch.float32)
                out = self.poisoned((ids.shape[0], ids.shape[1], dim), torch.float32)
                plan(ids, memory, out=out)
                self.synchronize()
                digits.append(out.cpu().numpy().astype(np.int64))
                del memory
            return digits[1] * EXACT_FLOATS + digits[0], np.asarray(case["indices"], np.int64)

        self.record(f"golden {kind} {case['name']}", run)

    def vocab(self, name: str, features: int, batch: int, vocab_size: int, *, invalid: bool = False) -> None:
        def run() -> tuple[np.ndarray, np.ndarray]:
            ids = random_ids(self.rng, batch, features)
            sizes = [0 if f == 1 else int(self.rng.integers(1, vocab_size + 1)) for f in range(features)]
            keys, offsets = vocabulary(self.rng, ids, sizes)
            expected = ref.vocab_lookup(ids, keys, offsets)
            if invalid and batch:
                ids[0, -1] = INVALID_IDS[1]
                expected[0, -1] = offsets[features] + features - 1  # the OOV row of the last feature
            out = self.poisoned((batch, features), self.torch.int64)
            self.ops.vocab_forward(self.cuda(ids), self.cuda(keys), offsets, out=out)
            self.synchronize()
            return out.cpu().numpy(), expected

        self.record(name, run)


def run_checks(checker: Checker, quick: bool = False) -> None:
    """Every case; quick keeps small batches (for compute-sanitizer, or a second backend)."""
    c = checker
    big = 64 if quick else 4096
    c.robe("robe d16 Z16 (vector, 4 lanes per block)", 26, 16, 16, 540_000, big)
    c.robe("robe d16 Z4 (vector, 1 lane per block)", 26, 16, 4, 540_003, big)
    c.robe("robe d16 Z1 (scalar)", 26, 16, 1, 1_000_003, 513)
    c.robe("robe d128 Z128 (a warp per block)", 26, 128, 128, 1_000_001, 1000)
    c.robe("robe d128 Z32", 5, 128, 32, 99_991, 333)
    c.robe("robe d12 Z12 (3-lane groups straddle warps)", 7, 12, 12, 1009, 777)
    c.robe("robe d24 Z8", 3, 24, 8, 65_537, 100)
    c.robe("robe d6 Z3 (scalar)", 3, 6, 3, 97, 50)
    c.robe("robe d8 Z8, M of one block", 4, 8, 8, 8, 64)
    c.robe("robe d8 Z4, M of Z + 1 floats (tail reads)", 4, 8, 4, 5, 64)
    c.robe("robe d16 Z16, misaligned M (scalar path)", 26, 16, 16, 54_321, 200, misalign=True)
    c.robe("robe 128 features", 128, 16, 4, 10_007, 64)
    c.robe("robe empty batch", 26, 16, 4, 1000, 0)
    c.robe("robe one row", 26, 16, 4, 1000, 1)
    c.robe("robe invalid ids -> NaN (vector)", 26, 16, 4, 1000, 10, invalid=True)
    c.robe("robe invalid ids -> NaN (scalar)", 3, 6, 3, 1000, 10, invalid=True)
    c.robe("robe on a side stream", 26, 16, 16, 540_000, big, side_stream=True)
    c.lma("lma d16 Z4 k2", 26, 16, 4, 540_000, big // 2, 2, 5000)
    c.lma("lma d32 Z8 k6", 5, 32, 8, 4099, 300, 6, 50)
    c.lma("lma d16 Z1 k2 (scalar)", 26, 16, 1, 100_003, 200, 2, 500)
    c.lma("lma d6 Z3 k1 (scalar)", 3, 6, 3, 50, 100, 1, 20)
    c.lma("lma d16 Z16 k2 invalid id -> NaN", 26, 16, 16, 10_000, 10, 2, 100, invalid=True)
    c.lma("lma empty batch", 26, 16, 4, 1000, 0, 2, 10)
    golden = json.loads(GOLDEN.read_text())
    for kind in ("robe", "lma"):
        for case in golden[kind]:
            if not quick or case["m"] <= EXACT_FLOATS:  # quick (and the CPU dry run) skip m > 2^24
                c.golden(kind, case)
    c.vocab("vocab F26", 26, big, 100_000)
    c.vocab("vocab F1", 1, 100, 10)
    c.vocab("vocab invalid id -> OOV row", 26, 10, 100, invalid=True)
    c.vocab("vocab empty batch", 26, 0, 10)


def render_table(report: Report, batch: int) -> str:
    lines = [
        f"ai.robe CUDA kernels on {report.device} (backend {report.backend}, seed {report.seed})",
        "",
        f"| op (batch {batch} x {len(KAGGLE_CARDINALITIES)}) | GPU us per call | eager us per call "
        "| Mlookups/s | output GB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in report.timings:
        lines.append(
            f"| {t.name} | {t.us_per_call:.1f} | {t.eager_us_per_call:.1f} | {t.lookups_per_s / 1e6:.0f} "
            f"| {t.output_gb_per_s:.0f} |"
        )
    lines.append(
        f"GPU us: CUDA events around replays of a CUDA graph of {GRAPH_CALLS} calls; eager: the same "
        "calls from Python (wrapper overhead included)."
    )
    failed = [c.name for c in report.checks if not c.ok]
    lines += [
        "",
        f"correctness: {len(report.checks) - len(failed)} of {len(report.checks)} checks bit-exact"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""),
    ]
    return "\n".join(lines)


def describe_device() -> str:
    import torch

    props = torch.cuda.get_device_properties(0)
    memory = f"{props.total_memory / 2**30:.0f} GiB"
    return (
        f"{props.name} (sm_{props.major}{props.minor}, {memory}), torch {torch.__version__} "
        f"(CUDA {torch.version.cuda}), Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["auto", "extension", "ctypes"], default="auto")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=None, help="default: from the clock (printed)")
    parser.add_argument("--no-timing", action="store_true", help="correctness checks only")
    parser.add_argument("--quick", action="store_true", help="small batches only (for compute-sanitizer)")
    parser.add_argument("--no-report", action="store_true", help="write no gpu_check.json / .md")
    args = parser.parse_args(argv)
    logging.basicConfig(force=True, level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        import torch
    except ImportError:
        sys.stderr.write("error: PyTorch is not installed for this Python; the GPU check needs it\n")
        return 2
    from kernels import torch_ext

    if not torch.cuda.is_available():
        sys.stderr.write("error: no CUDA device visible to PyTorch; run this on a GPU machine\n")
        return 2
    build_dir = Path(__file__).resolve().parent.parent / "build" / "gpu_check"
    build_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    raw, backend = torch_ext.build(torch_ext.Backend(args.backend), build_dir)
    logger.info("built in %.0f s", time.perf_counter() - started)
    ops = torch_ext.CudaOps(raw, backend)
    seed = args.seed if args.seed is not None else int(time.time())
    report = Report(device=describe_device(), backend=backend.value, seed=seed)
    logger.info("%s", report.device)
    rng = np.random.default_rng(seed)
    checker = Checker(ops, rng)
    run_checks(checker, args.quick)
    if backend is torch_ext.Backend.EXTENSION:  # the fallback bridge must work too
        second = Checker(
            torch_ext.CudaOps(*torch_ext.build(torch_ext.Backend.CTYPES, build_dir)), rng, "ctypes: "
        )
        run_checks(second, quick=True)
        checker.results += second.results
    report.checks = checker.results
    if not args.no_timing:
        report.timings = run_timings(ops, rng, args.batch, args.iters, args.repeats)
    table = render_table(report, args.batch)
    targets = [build_dir] + ([Path(os.environ["OUT"])] if os.environ.get("OUT") else [])
    for out in [] if args.no_report else targets:
        out.mkdir(parents=True, exist_ok=True)
        (out / "gpu_check.json").write_text(json.dumps(asdict(report), indent=2) + "\n")
        (out / "gpu_check.md").write_text(table + "\n")
    logger.info("\n%s", table)
    return 0 if all(c.ok for c in report.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
