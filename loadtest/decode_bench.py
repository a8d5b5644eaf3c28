"""How long decoding a request body holds the event loop: pydantic's JSON validation (the old path), the
service's decode functions inline, and the same functions in the service's worker processes.

``python -m loadtest.decode_bench [--repeats 3] [--out docs/benchmarks/decode]`` builds v2 and predict
bodies of 1024 instances and of the 16 MiB body limit, and for each reports the decode time (median of
``repeats``) and the longest event-loop stall seen by a 1 ms ticker while the body is decoded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.abuse import MAX_BODY, ctr_body, fitting_body, predict_body
from loadtest.synthetic import CtrShape, ctr_model, write_entry
from service.decoding import Decoder, decode_predict_body, decode_v2_body, decode_v2_tensors
from service.domain import records_to_tensors
from service.errors import ServiceError
from service.repository import ModelManifest, read_manifest
from service.schemas import InferenceRequest, PredictRequest

logger = logging.getLogger(__name__)
MAX_INSTANCES = 1024


def old_v2(body: bytes, manifest: ModelManifest) -> Any:
    """What the service did before: pydantic parses and validates the whole JSON, then the tensors."""
    request = InferenceRequest.model_validate_json(body)
    return decode_v2_tensors(manifest, request, b"")


def old_predict(body: bytes, manifest: ModelManifest) -> Any:
    """Before: pydantic parses and validates every record, then the records become tensors."""
    return records_to_tensors(manifest, PredictRequest.model_validate_json(body).instances)


async def _stall_while(work: Callable[[], Any]) -> tuple[float, float]:
    """(seconds of ``work``, longest gap between 1 ms ticks meanwhile)."""
    longest = 0.0
    running = True

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    try:
        result = work()
        if asyncio.iscoroutine(result):
            await result
    except ServiceError:
        pass  # a 413 for the oversized bodies is the expected answer
    except Exception as exc:  # pydantic's own validation errors on the old path
        logger.debug("old path refused the body: %s", exc)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.01)
    running = False
    await task
    return elapsed, longest


async def measure(repeats: int, manifest: ModelManifest) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    bodies = {
        "v2, 1024 instances": ("v2", ctr_body(rng, MAX_INSTANCES)),
        "v2, 16 MiB": ("v2", fitting_body(ctr_body, MAX_BODY)),
        "predict, 1024 instances": ("predict", predict_body(rng, MAX_INSTANCES)),
        "predict, 16 MiB": ("predict", fitting_body(predict_body, MAX_BODY)),
    }
    decoder = Decoder(workers=2)
    decoder.start()
    await asyncio.sleep(5.0)  # let the worker processes start
    rows = []
    try:
        for name, (kind, body) in bodies.items():
            ways: dict[str, Callable[[], Any]]
            if kind == "v2":
                ways = {
                    "pydantic model_validate_json, inline (before)": partial(old_v2, body, manifest),
                    "decode_v2_body, inline": partial(decode_v2_body, body, None, manifest, MAX_INSTANCES),
                    "decode_v2_body, worker process (service)": partial(
                        decoder.run, decode_v2_body, body, None, manifest, MAX_INSTANCES
                    ),
                }
            else:
                ways = {
                    "pydantic model_validate_json, inline (before)": partial(old_predict, body, manifest),
                    "decode_predict_body, inline": partial(
                        decode_predict_body, body, manifest, MAX_INSTANCES
                    ),
                    "decode_predict_body, worker process (service)": partial(
                        decoder.run, decode_predict_body, body, manifest, MAX_INSTANCES
                    ),
                }
            for way, work in ways.items():
                runs = [await _stall_while(work) for _ in range(repeats)]
                rows.append(
                    {
                        "body": name,
                        "bytes": len(body),
                        "way": way,
                        "decode_ms": round(statistics.median(r[0] for r in runs) * 1e3, 1),
                        "loop_stall_ms": round(statistics.median(r[1] for r in runs) * 1e3, 1),
                        "runs": [[round(a * 1e3, 1), round(b * 1e3, 1)] for a, b in runs],
                    }
                )
                logger.info(
                    "%-24s %-48s decode %8.1f ms  loop stall %8.1f ms",
                    name,
                    way,
                    rows[-1]["decode_ms"],
                    rows[-1]["loop_stall_ms"],
                )
    finally:
        decoder.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.decode_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write <out>.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as work:
        entry = write_entry(Path(work), "ctr", "1", ctr_model(CtrShape()), "ctr")
        rows = asyncio.run(measure(args.repeats, read_manifest(entry)))
    if args.out is not None:
        command = f"python -m loadtest.decode_bench --repeats {args.repeats} --out {args.out}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(
            json.dumps({"command": command, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
