"""Transport-neutral inference: check request tensors against the model, preprocess, batch, check outputs.

The REST routes (``service/api``) only parse HTTP into the calls below and encode what they return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidInput, PayloadTooLarge
from service.manager import ModelManager, ServedModel
from service.repository import MAX_ID, ModelManifest, Preprocessing, Task
from service.schemas import InferenceRequest
from service.tensors import Datatype, decode_binary_data, decode_json_data

logger = logging.getLogger(__name__)

Tensors = dict[str, np.ndarray]
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_categorical(value: str | int | None) -> int:
    """A raw categorical value: hex string as in Criteo files, int, or null/"" (missing -> 0)."""
    if value is None or value == "":
        return 0
    if isinstance(value, str):
        text = value.strip()
        if not 0 < len(text) <= 16 or not HEX_DIGITS.issuperset(text):
            raise InvalidInput(f"categorical value {value!r} is not a hex string of 1-16 digits")
        number = int(text, 16)
    else:
        number = int(value)
    if not 0 <= number < MAX_ID:
        raise InvalidInput(f"categorical id {number} is out of range [0, 2^62)")
    return number


def _apply_preprocessing(values: np.ndarray, transform: Preprocessing) -> np.ndarray:
    if transform is Preprocessing.LOG1P_CLIP0:
        return np.log1p(np.maximum(values, 0)).astype(values.dtype, copy=False)
    return values


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

    async def infer(self, served: ServedModel, inputs: Tensors) -> Tensors:
        """Check and preprocess ``inputs``, run them in a batch, return this request's outputs.

        Everything before the first ``await`` is synchronous, so a version swapped out after
        ``resolve`` still accepts this request: its queue closes only after the swap.
        """
        feeds = self.prepare(served.manifest, inputs)
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

    def decode_v2(self, manifest: ModelManifest, request: InferenceRequest, binary: bytes) -> Tensors:
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
                    raise InvalidInput(
                        f"input '{tensor.name}': binary_data_size {size!r} does not fit the body"
                    )
                raw, position = binary[position : position + size], position + size
                value = decode_binary_data(raw, tensor.datatype, tensor.shape, tensor.name)
            elif tensor.data is not None:
                value = decode_json_data(tensor.data, tensor.datatype, tensor.shape, tensor.name)
            else:
                raise InvalidInput(f"input '{tensor.name}' has neither data nor binary_data_size")
            tensors[tensor.name] = _to_model_type(
                value, tensor.datatype, spec.datatype, manifest, tensor.name
            )
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
