"""Dynamic batching: concurrent requests to one model merged into one ``session.run``.

Follows Ray Serve's ``_BatchQueue``: one future per request, a batch closes when it holds
``max_batch_size`` samples or when its first request has waited ``max_queue_delay_us``; the merged run
happens in a worker thread (off the event loop); results are counted against the batch (every output
must have one row per sample) and a failed batch fails the futures of its own requests, nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.errors import InferenceFailed, QueueClosed, QueueFull, ServiceError

logger = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
RunBatch = Callable[[Tensors], Tensors]


@dataclass(frozen=True)
class BatchConfig:
    """Batching limits of one model.

    Args:
        max_batch_size: most samples in one run (a single larger request runs alone).
        max_queue_delay_us: longest wait of a batch's first request for others to join.
        max_queue_size: requests waiting (not yet running) before ``submit`` raises QueueFull.
        retry_after_s: Retry-After seconds suggested to clients turned away.
    """

    max_batch_size: int
    max_queue_delay_us: int
    max_queue_size: int
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_queue_delay_us < 0:
            raise ValueError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")
        if self.max_queue_size < 1:
            raise ValueError(f"max_queue_size must be >= 1, got {self.max_queue_size}")


class BatchObserver(Protocol):
    """Receives what the queue measures (the metrics module implements it)."""

    def queue_depth(self, depth: int) -> None: ...

    def batch_started(self, size: int, waits_s: list[float]) -> None: ...

    def batch_finished(self, size: int, compute_s: float) -> None: ...


@dataclass(eq=False)
class _Request:
    inputs: Tensors
    size: int
    key: tuple[tuple[str, str, tuple[int, ...]], ...]
    future: asyncio.Future[Tensors]
    enqueued: float


def _signature(inputs: Tensors) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    """Requests merge only when every input has the same dtype and non-batch shape."""
    return tuple((name, value.dtype.str, value.shape[1:]) for name, value in sorted(inputs.items()))


class BatchQueue:
    """Per-model queue and worker that merge requests into batches.

    Args:
        run_batch: runs one merged batch (called in a worker thread).
        config: batching limits.
        name: used for the worker thread's name and log lines.
        observer: receives queue depth, waits, batch sizes and compute times.
        pipeline_depth: batches in flight at once (2 for a hybrid model, whose ``run_batch`` locks each
            stage, so batch n+1's lookup overlaps batch n's dense part).

    Example:
        >>> queue = BatchQueue(model.run, BatchConfig(64, 1000, 256), "dlrm-robe")
        >>> queue.start()                           # inside the event loop
        >>> outputs = await queue.submit({"dense": dense, "categorical": ids})
    """

    def __init__(
        self,
        run_batch: RunBatch,
        config: BatchConfig,
        name: str,
        observer: BatchObserver | None = None,
        pipeline_depth: int = 1,
    ):
        self._run_batch = run_batch
        self.config = config
        self.name = name
        self._observer = observer
        self._queue: deque[_Request] = deque()
        self._forming = 0
        self._reserved = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=pipeline_depth, thread_name_prefix=f"batch-{name}")
        self._worker: asyncio.Task[None] | None = None
        self._pipeline_depth = pipeline_depth
        self._slots = asyncio.Semaphore(pipeline_depth)
        self._in_flight: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the worker task on the running loop."""
        self._worker = asyncio.get_running_loop().create_task(self._work(), name=f"batch-{self.name}")

    @property
    def depth(self) -> int:
        """Requests accepted but not yet running."""
        return len(self._queue) + self._forming

    @property
    def reserved(self) -> int:
        """Places held by requests whose bodies are still being read (see ``reserve``)."""
        return self._reserved

    def check_room(self) -> None:
        """QueueClosed or QueueFull (503 + Retry-After) unless one more request fits."""
        if self._closed:
            raise QueueClosed(f"model '{self.name}' is no longer accepting requests")
        waiting = self.depth + self._reserved
        if waiting >= self.config.max_queue_size:
            raise QueueFull(
                f"model '{self.name}' has {waiting} requests waiting (limit {self.config.max_queue_size})",
                self.config.retry_after_s,
            )

    def _has_room(self) -> bool:
        return self.depth + self._reserved < self.config.max_queue_size

    async def wait_for_room(self, timeout_s: float) -> None:
        """Return once one more request fits; wait up to ``timeout_s`` in line (FIFO) when the queue is
        full, then QueueFull (503 + Retry-After).

        A request waiting here has not been read yet: it costs the server nothing but its connection,
        where a request refused at once would come straight back and be refused again (a flood of
        retries eats the CPU that the admitted requests need).
        """
        if self._closed or (self._has_room() and not self._waiters):
            return  # a closed queue: the caller resolves the serving version again after the body
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self.check_room()
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
            if self._closed or self._has_room():
                return

    def _wake_waiters(self) -> None:
        """Let as many waiting requests in as there are free places."""
        free = self.config.max_queue_size - self.depth - self._reserved
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def reserve(self) -> None:
        """Hold a place for a request before its body is read (QueueFull or QueueClosed as ``submit``).

        Every ``reserve`` is followed by one ``release`` or one ``submit(..., reserved=True)``.
        """
        self.check_room()
        self._reserved += 1

    def release(self) -> None:
        """Give back a place taken by ``reserve`` (the request failed before it was submitted)."""
        self._reserved = max(0, self._reserved - 1)
        self._wake_waiters()

    def submit(self, inputs: Tensors, reserved: bool = False) -> asyncio.Future[Tensors]:
        """Queue one request (every input shares the batch dimension); its future gets its outputs.

        ``reserved``: the request holds a place from ``reserve`` (it is used up here).
        """
        if reserved:
            self.release()
            if self._closed:
                raise QueueClosed(f"model '{self.name}' is no longer accepting requests")
        else:
            self.check_room()
        sizes = {value.shape[0] for value in inputs.values()}
        if len(sizes) != 1:
            raise ValueError(f"inputs disagree on the batch dimension: {sorted(sizes)}")
        future: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(inputs, sizes.pop(), _signature(inputs), future, time.monotonic()))
        self._wakeup.set()
        self._report_depth()
        return future

    async def close(self) -> None:
        """Stop accepting requests, run everything already queued, then stop the worker."""
        self._closed = True
        self._wakeup.set()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._worker is not None:
            await self._worker
        self._executor.shutdown(wait=False)

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(self.depth)

    async def _work(self) -> None:
        while True:
            if self._pipeline_depth > 1:
                await self._slots.acquire()  # a free pipeline slot before the next batch is taken
            batch = await self._collect()
            if batch is None:
                await asyncio.gather(*self._in_flight, return_exceptions=True)
                return
            if self._pipeline_depth > 1:
                self._start_pipelined(batch)
                continue
            try:
                await self._execute(batch)
            except Exception:  # never let the worker die: later requests would hang
                logger.exception("batch worker of model '%s' failed", self.name)
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(InferenceFailed("internal batching error"))

    def _start_pipelined(self, batch: list[_Request]) -> None:
        async def guarded() -> None:
            try:
                await self._execute(batch)
            except Exception:  # as in _work: every request gets an answer
                logger.exception("batch worker of model '%s' failed", self.name)
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(InferenceFailed("internal batching error"))
            finally:
                self._slots.release()

        task = asyncio.get_running_loop().create_task(guarded())
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _wait(self, timeout: float | None) -> bool:
        """Wait for a submit or close; False on timeout."""
        self._wakeup.clear()
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _collect(self) -> list[_Request] | None:
        while not self._queue:
            if self._closed:
                return None
            await self._wait(None)
        first = self._queue.popleft()
        batch, size = [first], first.size
        self._forming = 1
        deadline = first.enqueued + self.config.max_queue_delay_us / 1e6
        while size < self.config.max_batch_size:
            if self._queue:
                candidate = self._queue[0]
                if candidate.key != first.key or size + candidate.size > self.config.max_batch_size:
                    break
                batch.append(self._queue.popleft())
                size += candidate.size
                self._forming += 1
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed or not await self._wait(remaining):
                break
        self._forming = 0
        self._report_depth()
        self._wake_waiters()
        return [request for request in batch if not request.future.done()]

    async def _execute(self, batch: list[_Request]) -> None:
        if not batch:
            return
        size = sum(request.size for request in batch)
        started = time.monotonic()
        if self._observer is not None:
            self._observer.batch_started(size, [started - request.enqueued for request in batch])
        parts = [request.inputs for request in batch]
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._merge_and_run, parts
            )
            _check_rows(outputs, size)
        except Exception as exc:
            error = exc if isinstance(exc, ServiceError) else InferenceFailed(f"inference failed: {exc}")
            logger.error("batch of %d samples on model '%s' failed: %s", size, self.name, exc)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        finally:
            if self._observer is not None:
                self._observer.batch_finished(size, time.monotonic() - started)
        offset = 0
        for request in batch:
            if not request.future.done():
                request.future.set_result(
                    {name: value[offset : offset + request.size] for name, value in outputs.items()}
                )
            offset += request.size

    def _merge_and_run(self, parts: list[Tensors]) -> Tensors:
        if len(parts) == 1:
            return self._run_batch(parts[0])
        merged = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        return self._run_batch(merged)


def _check_rows(outputs: Tensors, size: int) -> None:
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != size:
            rows = value.shape[0] if value.ndim else 0
            raise InferenceFailed(f"output '{name}' has {rows} rows for a batch of {size} samples")
