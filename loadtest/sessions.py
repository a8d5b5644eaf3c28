"""onnxruntime sessions for benchmarks, page-in of memory-mapped weights, and the process memory probe.

``python -m loadtest.sessions --model DIR/model.onnx --started T`` is the probe the engine benchmark
starts in a fresh process: it imports only onnxruntime, NumPy and ``kernels`` (as the service does, no
torch), opens the model, answers one request, touches every mapped weight page and prints one JSON line
(cold start from ``T``, the parent's clock at spawn; resident memory).

DESIGN.md section 7's lessons: with several sessions in one process on few cores, ``allow_spinning`` is off
(idle pools would steal the CPU from the session being timed); every page of a memory-mapped table is
read once before timing (an evicted page made lookups 3-5x slower for a minute).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import kernels

logger = logging.getLogger(__name__)

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 64 << 20


class BenchmarkError(RuntimeError):
    """The benchmark cannot run as asked (missing library, provider, model)."""


def make_session(path: Path, provider: str = "cpu", threads: int = 1) -> ort.InferenceSession:
    """A session with the ai.robe library registered, spinning off, ``threads`` intra-op threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    if not kernels.register(options):
        raise BenchmarkError("the ai.robe custom-op library is not built: run `make kernels`")
    if provider == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BenchmarkError("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def model_files(model: Path) -> list[Path]:
    """``model.onnx`` and its external weights file, when there is one."""
    return [p for p in (model, model.with_name(model.name + ".data")) if p.exists()]


def page_in(files: Sequence[Path]) -> int:
    """Read ``files`` once (page cache) and touch every page of them that this process has memory-mapped
    (so they are resident before timing). Returns the bytes touched in mappings."""
    wanted = {str(path.resolve()) for path in files}
    for path in files:
        with path.open("rb") as stream:
            while stream.read(CHUNK):
                pass
    touched = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[5] not in wanted or "r" not in fields[1]:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        view = np.ctypeslib.as_array((ctypes.c_uint8 * (end - start)).from_address(start))
        int(view[::PAGE].sum())  # one read per page faults it in
        touched += end - start
    return touched


def evict(files: Sequence[Path]) -> None:
    """Drop ``files`` from the page cache (only their clean pages, nothing else), so the next start reads
    them from disk."""
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def memory_bytes() -> dict[str, int]:
    """Resident set now and at its peak (VmRSS, VmHWM) of this process."""
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines if ":" in line)
    rss = int(status["VmRSS"].split()[0]) * 1024
    peak = int(status.get("VmHWM", "0 kB").split()[0]) * 1024
    peak = max(peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"rss_bytes": rss, "peak_rss_bytes": peak}


def feeds_for(session: ort.InferenceSession, dense: np.ndarray,
              categorical: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs this session takes (the embedding stage takes ``categorical`` only)."""
    names = {i.name for i in session.get_inputs()}
    return {name: value for name, value in (("dense", dense), ("categorical", categorical)) if name in names}


def probe(model: Path, provider: str, threads: int, started: float) -> dict[str, Any]:
    """Cold start and memory of one model in this (fresh) process; ``started`` = the parent's
    ``time.time()`` just before it spawned the process. ``cold_start_s``: to the first answer;
    ``resident_s``: until every page of the weights is resident (full speed from then on)."""
    imported = time.time()
    session = make_session(model, provider, threads)
    loaded = time.time()
    num_features = next(i.shape[1] for i in session.get_inputs() if i.name == "categorical")
    session.run(None, feeds_for(session, np.ones((1, 13), np.float32), np.ones((1, num_features), np.int64)))
    ready = time.time()
    before = memory_bytes()
    touched = page_in(model_files(model))
    resident = time.time()
    return {"cold_start_s": ready - started, "resident_s": resident - started, "import_s": imported - started,
            "session_s": loaded - imported, "first_run_s": ready - loaded, "mapped_bytes": touched,
            "rss_loaded_bytes": before["rss_bytes"], **memory_bytes()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.sessions", description="cold start and memory")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--provider", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--started", type=float, default=None, help="time.time() when the process started")
    args = parser.parse_args(argv)
    try:
        result = probe(args.model, args.provider, args.threads, args.started or time.time())
    except (BenchmarkError, OSError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(json.dumps(result))  # noqa: T201 - the probe's output
    return 0


if __name__ == "__main__":
    sys.exit(main())
