"""Transport-neutral inference: check request tensors against the model, preprocess, batch, check outputs.

The REST routes (``service/api``) only parse HTTP into the calls below and encode what they return.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from service.batching import BatchQueue
from service.domain import parse_categorical
from service.errors import InvalidInput, PayloadTooLarge
from service.manager import ModelManager, ServedModel
from service.repository import MAX_ID, ModelManifest, Preprocessing, Task

logger = logging.getLogger(__name__)
__all__ = ["Admission", "DataPlane", "DataPlaneLimits", "parse_categorical"]

Tensors = dict[str, np.ndarray]


def _apply_preprocessing(values: np.ndarray, transform: Preprocessing) -> np.ndarray:
    if transform is Preprocessing.LOG1P_CLIP0:
        return np.log1p(np.maximum(values, 0)).astype(values.dtype, copy=False)
    return values


@dataclass(eq=False)
class Admission:
    """A place held in one queue (``used`` once the request is submitted there)."""

    queue: BatchQueue
    used: bool = False


@dataclass(frozen=True)
class DataPlaneLimits:
    """Request limits applied before anything is queued.

    Args:
        max_instances: samples (batch dimension) allowed in one request.
    """

    max_instances: int

    def __post_init__(self) -> None:
        if self.max_instances < 1:
            raise ValueError(f"max_instances must be >= 1, got {self.max_instances}")


class DataPlane:
    """Runs checked requests through a model's batching queue.

    Args:
        manager: the model manager (which version serves).
        limits: request limits.
    """

    def __init__(self, manager: ModelManager, limits: DataPlaneLimits) -> None:
        self.manager = manager
        self.limits = limits

    def resolve(self, name: str, version: str | None) -> ServedModel:
        """The serving version (404 unknown model or version, 503 not ready)."""
        return self.manager.resolve(name, version)

    @contextlib.contextmanager
    def admit(self, served: ServedModel) -> Iterator[Admission]:
        """Hold a place in ``served``'s queue while the body is decoded (503 when none is left).

        A request that could not be queued is thus refused before its body is decoded.
        """
        admission = Admission(served.queue)
        served.queue.reserve()
        try:
            yield admission
        finally:
            if not admission.used:
                served.queue.release()

    async def infer(
        self, served: ServedModel, inputs: Tensors, admission: Admission | None = None
    ) -> Tensors:
        """Check and preprocess ``inputs``, run them in a batch, return this request's outputs.

        Everything before the first ``await`` is synchronous, so a version swapped out after
        ``resolve`` still accepts this request: its queue closes only after the swap. ``admission``
        (from ``admit``) is used when it holds a place in this version's queue.
        """
        feeds = self.prepare(served.manifest, inputs)
        if admission is not None and admission.queue is served.queue:
            admission.used = True
            outputs = await served.queue.submit(feeds, reserved=True)
        else:
            outputs = await served.queue.submit(feeds)
        _check_outputs_finite(outputs)
        served.metrics.samples_scored(next(iter(feeds.values())).shape[0])
        return outputs

    def prepare(self, manifest: ModelManifest, inputs: Tensors) -> Tensors:
        """Validate names, shapes, values and limits; apply the manifest's preprocessing."""
        declared = {spec.name for spec in manifest.inputs}
        missing, unknown = declared - set(inputs), set(inputs) - declared
        if missing or unknown:
            raise InvalidInput(
                f"model '{manifest.name}' takes inputs {sorted(declared)}; missing "
                f"{sorted(missing)}, unknown {sorted(unknown)}"
            )
        for spec in manifest.inputs:
            shape = inputs[spec.name].shape
            if len(shape) != len(spec.shape) or any(
                want != -1 and got != want for got, want in zip(shape[1:], spec.shape[1:], strict=True)
            ):
                raise InvalidInput(
                    f"input '{spec.name}' has shape {list(shape)}, model takes {list(spec.shape)}"
                )
        batch_sizes = {value.shape[0] for value in inputs.values()}
        if len(batch_sizes) != 1:
            raise InvalidInput(f"inputs disagree on the batch dimension: {sorted(batch_sizes)}")
        batch = batch_sizes.pop()
        if batch < 1:
            raise InvalidInput("the batch dimension must be at least 1")
        if batch > self.limits.max_instances:
            raise PayloadTooLarge(
                f"{batch} instances exceed the limit of {self.limits.max_instances} per request"
            )
        feeds = {}
        for spec in manifest.inputs:
            value = inputs[spec.name]
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise InvalidInput(f"input '{spec.name}' holds NaN or infinite values")
            feeds[spec.name] = _apply_preprocessing(
                value, manifest.preprocessing.get(spec.name, Preprocessing.NONE)
            )
        if manifest.task is Task.CTR:
            _check_ids(feeds["categorical"])
        return feeds


def _check_ids(ids: np.ndarray) -> None:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= MAX_ID):
        bad = ids[(ids < 0) | (ids >= MAX_ID)].ravel()[0]
        raise InvalidInput(f"categorical id {int(bad)} is out of range [0, 2^62)")


def _check_outputs_finite(outputs: Tensors) -> None:
    for name, value in outputs.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise InvalidInput(
                f"output '{name}' is not finite for these inputs (values far outside the training range?)"
            )
