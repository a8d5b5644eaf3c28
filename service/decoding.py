"""Request bodies -> model input tensors, kept off the event loop.

Decoding JSON is mostly one long call into a parser that holds the GIL (pydantic-core needs about 0.3 s
for 16 MiB of numbers here, and seconds for 16 MiB of predict records), so a worker *thread* would
still stall the event loop, and every health probe with it. Bodies larger than ``inline_max_bytes`` are
therefore decoded in a small pool of worker processes (``spawn``: no fork of a process that runs
onnxruntime threads); small bodies, the latency-sensitive common case, are decoded inline, where they
cost less than the hop to another process. Every function run in a worker takes and returns plain,
picklable values; the errors it raises (``InvalidInput``, ``PayloadTooLarge``) keep their status.

Limits that can be read before the tensors are built (instances per request) are checked first, so an
oversized request is refused without converting its data.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np
import pydantic_core
from pydantic import BaseModel, ValidationError

from service.domain import parse_categorical, records_to_tensors
from service.errors import InvalidInput, PayloadTooLarge, QueueClosed
from service.repository import ModelManifest, Task
from service.schemas import InferenceRequest, PredictRequest
from service.tensors import Datatype, decode_binary_data, decode_json_data, split_binary_body

logger = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
ModelT = TypeVar("ModelT", bound=BaseModel)
ResultT = TypeVar("ResultT")
INLINE_MAX_BYTES = 16 * 1024
TRIM_AFTER_BYTES = 1024 * 1024
PRECOUNT_BYTES = 1024 * 1024  # predict bodies above this have their instances counted before validation
M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 256 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def keep_large_buffers_out_of_the_heap() -> None:
    """Fix glibc's mmap threshold at 256 KiB (glibc raises it after freeing a large block, after which
    request-sized buffers come from the heap and their memory is never given back): request bodies and
    arrays are then mapped and unmapped, and RSS returns to its level once a large request is done."""
    if _LIBC is not None:
        _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)


def trim_heap() -> None:
    """Return free heap pages to the system (glibc only)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def give_memory_back() -> None:
    """Collect garbage and return free heap pages to the system (after decoding a large body)."""
    gc.collect()
    trim_heap()


def _in_worker(function: Callable[..., ResultT], body: bytes, *args: Any) -> ResultT:
    try:
        return function(body, *args)
    finally:
        if len(body) >= TRIM_AFTER_BYTES:
            give_memory_back()


def json_document(body: bytes) -> Any:
    """Parse JSON (NaN and Infinity are read, then refused by the value checks with a clear message)."""
    if not body.strip():
        raise InvalidInput("request body is empty")
    try:
        return pydantic_core.from_json(body)
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from None


def _invalid(exc: ValidationError) -> InvalidInput:
    problems = []
    for error in exc.errors(include_url=False)[:3]:
        location = ".".join(str(part) for part in error["loc"])
        problems.append(f"{location}: {error['msg']}" if location else error["msg"])
    return InvalidInput("invalid request: " + "; ".join(problems))


def validate(model: type[ModelT], document: Any) -> ModelT:
    """Validate a parsed JSON document; any problem is a 400 with a short description."""
    if not isinstance(document, dict):
        raise InvalidInput("invalid request: the body must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise _invalid(exc) from None


def validate_json(model: type[ModelT], body: bytes) -> ModelT:
    """Parse and validate in one pass (pydantic-core's own parser: the fastest way here)."""
    if not body.strip():
        raise InvalidInput("request body is empty")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from None


def check_instances(count: int, max_instances: int) -> None:
    """413 when a request carries more samples than allowed."""
    if count > max_instances:
        raise PayloadTooLarge(f"{count} instances exceed the limit of {max_instances} per request")


def decode_v2_body(
    body: bytes, header_length: str | None, manifest: ModelManifest, max_instances: int
) -> tuple[InferenceRequest, Tensors]:
    """A v2 inference body (JSON, or the binary tensor data extension) -> (request without data, tensors).

    The returned request keeps ``id``, ``parameters`` and ``outputs`` (what the answer needs), not the
    inputs, so that little travels back from a worker process.
    """
    json_part, binary = split_binary_body(body, header_length) if header_length is not None else (body, b"")
    request = validate_json(InferenceRequest, json_part)
    for tensor in request.inputs:
        spec = manifest.input(tensor.name)
        if spec is not None and len(tensor.shape) == len(spec.shape) and tensor.shape:
            check_instances(tensor.shape[0], max_instances)
    tensors = decode_v2_tensors(manifest, request, binary)
    return request.model_copy(update={"inputs": []}), tensors


def decode_predict_body(body: bytes, manifest: ModelManifest, max_instances: int) -> Tensors:
    """A domain predict body -> the model's input tensors (instances counted before validation)."""
    if len(body) <= PRECOUNT_BYTES:
        request = validate_json(PredictRequest, body)
    else:  # parse once, count, and validate only what may be served (validation is the slow part)
        document = json_document(body)
        if isinstance(document, dict) and isinstance(document.get("instances"), list):
            check_instances(len(document["instances"]), max_instances)
        request = validate(PredictRequest, document)
    check_instances(len(request.instances), max_instances)
    return records_to_tensors(manifest, request.instances)


def decode_v2_tensors(manifest: ModelManifest, request: InferenceRequest, binary: bytes) -> Tensors:
    """Decode the request's tensors (JSON ``data`` or binary extension) into arrays of the model types."""
    tensors: Tensors = {}
    position = 0
    for tensor in request.inputs:
        spec = manifest.input(tensor.name)
        if spec is None:
            raise InvalidInput(f"model '{manifest.name}' has no input '{tensor.name}'")
        if tensor.name in tensors:
            raise InvalidInput(f"input '{tensor.name}' is given twice")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if (
                not isinstance(size, int)
                or isinstance(size, bool)
                or size < 0
                or position + size > len(binary)
            ):
                raise InvalidInput(f"input '{tensor.name}': binary_data_size {size!r} does not fit the body")
            raw, position = binary[position : position + size], position + size
            value = decode_binary_data(raw, tensor.datatype, tensor.shape, tensor.name)
        elif tensor.data is not None:
            value = decode_json_data(tensor.data, tensor.datatype, tensor.shape, tensor.name)
        else:
            raise InvalidInput(f"input '{tensor.name}' has neither data nor binary_data_size")
        tensors[tensor.name] = _to_model_type(value, tensor.datatype, spec.datatype, manifest, tensor.name)
    if position != len(binary):
        raise InvalidInput(f"{len(binary) - position} bytes of binary data belong to no input")
    return tensors


def _to_model_type(
    value: np.ndarray, sent: Datatype, wanted: Datatype, manifest: ModelManifest, name: str
) -> np.ndarray:
    if sent is wanted:
        return value
    if (
        sent is Datatype.BYTES
        and wanted is Datatype.INT64
        and manifest.task is Task.CTR
        and name == "categorical"
    ):
        ids = np.fromiter(
            (parse_categorical(item) for item in value.ravel()), dtype=np.int64, count=value.size
        )
        return ids.reshape(value.shape)
    raise InvalidInput(f"input '{name}' has datatype {sent.value}, model takes {wanted.value}")


def _warm_up() -> int:
    return 0


class Decoder:
    """Runs decode functions inline (small bodies) or in worker processes (large ones).

    Args:
        workers: worker processes; 0 decodes everything inline.
        inline_max_bytes: bodies up to this size are decoded inline.

    Example:
        >>> decoder = Decoder(workers=2)
        >>> decoder.start()
        >>> tensors = await decoder.run(decode_predict_body, body, manifest, 1024)
    """

    def __init__(self, workers: int, inline_max_bytes: int = INLINE_MAX_BYTES) -> None:
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        self.inline_max_bytes = inline_max_bytes
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Create the pool and start its processes (in the background: nothing waits for them)."""
        if self.workers > 0 and self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=keep_large_buffers_out_of_the_heap,
            )
            for _ in range(self.workers):
                self._pool.submit(_warm_up)

    async def run(self, function: Callable[..., ResultT], body: bytes, *args: Any) -> ResultT:
        """``function(body, *args)`` inline or in a worker; exceptions come back as raised."""
        pool = self._pool
        if pool is None or len(body) <= self.inline_max_bytes:
            return function(body, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, _in_worker, function, body, *args)
        except BrokenProcessPool:
            logger.error("a decode worker process died; starting a new pool")
            if self._pool is pool:
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
                self.start()
            raise QueueClosed("the request decoder restarted; retry the request") from None

    def close(self) -> None:
        """Stop the worker processes (queued decodes are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
