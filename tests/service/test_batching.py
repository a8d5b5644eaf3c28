"""BatchQueue alone: merging, limits, failures confined to their batch, draining on close."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from service.batching import BatchConfig, BatchQueue
from service.errors import InferenceFailed, QueueClosed, QueueFull

Tensors = dict[str, np.ndarray]


class Recorder:
    """A fake model: doubles ``x``; records batch sizes; can fail on marked samples or block."""

    def __init__(self, fail_value: float | None = None, rows_off_by: int = 0) -> None:
        self.sizes: list[int] = []
        self.fail_value = fail_value
        self.rows_off_by = rows_off_by
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, feeds: Tensors) -> Tensors:
        self.gate.wait(5)
        x = feeds["x"]
        self.sizes.append(len(x))
        if self.fail_value is not None and np.any(x == self.fail_value):
            raise RuntimeError("bad sample")
        return {"y": np.concatenate([x * 2, np.zeros((self.rows_off_by, *x.shape[1:]), x.dtype)])}


class Observer:
    def __init__(self) -> None:
        self.depths: list[int] = []
        self.batches: list[int] = []
        self.waits: list[float] = []

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)

    def batch_started(self, size: int, waits_s: list[float]) -> None:
        self.batches.append(size)
        self.waits += waits_s

    def batch_finished(self, size: int, compute_s: float) -> None:
        assert compute_s >= 0


def run(body: Callable[[], Any]) -> Any:
    return asyncio.run(body())


def sample(value: float, rows: int = 1) -> Tensors:
    return {"x": np.full((rows, 2), value, dtype=np.float32)}


def test_config_is_validated() -> None:
    for bad in ((0, 10, 10), (1, -1, 10), (1, 10, 0)):
        with pytest.raises(ValueError):
            BatchConfig(*bad)


def test_concurrent_requests_merge_and_results_go_back_in_order() -> None:
    model, observer = Recorder(), Observer()

    async def body() -> list[Tensors]:
        queue = BatchQueue(model, BatchConfig(8, 50_000, 100), "m", observer)
        queue.start()
        futures = [queue.submit(sample(float(i), rows=1 + i % 2)) for i in range(6)]
        results = await asyncio.gather(*futures)
        await queue.close()
        return results

    results = run(body)
    for i, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], sample(2.0 * i, rows=1 + i % 2)["x"])
    assert sum(model.sizes) == 9 and max(model.sizes) <= 8 and len(model.sizes) == 2
    assert observer.batches == model.sizes and len(observer.waits) == 6


def test_delay_closes_a_partial_batch() -> None:
    model = Recorder()

    async def body() -> float:
        queue = BatchQueue(model, BatchConfig(64, 20_000, 100), "m")
        queue.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await queue.submit(sample(1.0))
        waited = loop.time() - started
        await queue.close()
        return waited

    waited = run(body)
    assert 0.015 <= waited < 1.0 and model.sizes == [1]


def test_oversized_request_runs_alone_and_signature_splits_batches() -> None:
    model = Recorder()

    async def body() -> None:
        queue = BatchQueue(model, BatchConfig(4, 10_000, 100), "m")
        queue.start()
        other_width = {"x": np.ones((1, 3), dtype=np.float32)}
        await asyncio.gather(
            queue.submit(sample(1.0, rows=6)), queue.submit(sample(2.0)), queue.submit(other_width)
        )
        await queue.close()

    run(body)
    assert model.sizes == [6, 1, 1]


def test_failed_batch_fails_only_its_own_requests() -> None:
    model = Recorder(fail_value=13.0)

    async def body() -> list[Any]:
        queue = BatchQueue(model, BatchConfig(2, 0, 100), "m")
        queue.start()
        model.gate.clear()  # hold the first batch so that the rest queue up behind it
        futures = [queue.submit(sample(value)) for value in (1.0, 2.0, 13.0, 3.0, 4.0, 5.0)]
        await asyncio.sleep(0.05)
        model.gate.set()
        results = await asyncio.gather(*futures, return_exceptions=True)
        await queue.close()
        return results

    results = run(body)
    assert model.sizes == [1, 2, 2, 1] or model.sizes == [2, 2, 2]
    failed = [i for i, result in enumerate(results) if isinstance(result, Exception)]
    assert all(isinstance(results[i], InferenceFailed) for i in failed)
    assert 2 in failed and len(failed) == 2  # 13.0 and the one sample that shared its batch
    assert all(isinstance(results[i], dict) for i in range(6) if i not in failed)


def test_outputs_must_have_one_row_per_sample() -> None:
    async def body() -> Any:
        queue = BatchQueue(Recorder(rows_off_by=1), BatchConfig(4, 0, 100), "m")
        queue.start()
        result = await asyncio.gather(queue.submit(sample(1.0)), return_exceptions=True)
        await queue.close()
        return result[0]

    error = run(body)
    assert isinstance(error, InferenceFailed) and "2 rows for a batch of 1" in str(error)


def test_queue_bound_and_close() -> None:
    model = Recorder()

    async def body() -> None:
        queue = BatchQueue(model, BatchConfig(64, 200_000, 3, retry_after_s=7), "m")
        queue.start()
        futures = [queue.submit(sample(float(i))) for i in range(3)]
        with pytest.raises(QueueFull) as full:
            queue.submit(sample(9.0))
        assert full.value.headers == {"Retry-After": "7"}
        await queue.close()  # runs the queued requests at once instead of waiting 200 ms
        assert all(future.done() and not future.exception() for future in futures)
        with pytest.raises(QueueClosed):
            queue.submit(sample(1.0))

    run(body)
    assert model.sizes == [3]


def test_cancelled_request_is_skipped() -> None:
    model = Recorder()

    async def body() -> None:
        queue = BatchQueue(model, BatchConfig(64, 30_000, 10), "m")
        queue.start()
        cancelled = queue.submit(sample(1.0))
        kept = queue.submit(sample(2.0))
        cancelled.cancel()
        result = await kept
        np.testing.assert_array_equal(result["y"], sample(4.0)["x"])
        await queue.close()

    run(body)
    assert model.sizes == [1]
