"""Request and response bodies (pydantic), following the Open Inference Protocol v2 REST spec.

The v2 models mirror the spec's JSON objects ("Inference Request JSON Object", "Model Metadata Response
JSON Object", ...); the ``v1`` predict and status models are robeserve's own.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from service.tensors import Datatype

Dimension = Annotated[int, Field(ge=0, le=2**31 - 1)]
TENSOR_DATA_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}, {"type": "array"}]},
    "description": "Tensor elements in row-major order, flat or nested.",
}


class ErrorResponse(BaseModel):
    """Every 4xx/5xx body: ``{"error": "<message>"}``."""

    error: str


class ServerMetadataResponse(BaseModel):
    """``GET /v2``: server name, version and the protocol extensions it supports."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """One model input or output; ``-1`` marks a variable dimension (the batch)."""

    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    """``GET /v2/models/{name}[/versions/{version}]``."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    placement: str | None = None  # robeserve: "device" or "hybrid" (DESIGN.md section 6)
    placement_reason: str | None = None  # robeserve: the bytes behind the placement
    device_bytes: int | None = None  # robeserve: bytes the version holds on the device, when counted


class LiveResponse(BaseModel):
    """Body of the liveness endpoint."""

    live: bool


class ReadyResponse(BaseModel):
    """Body of the readiness endpoints (the HTTP status carries the answer: 200 or 503)."""

    ready: bool
    name: str | None = None


class RequestInput(BaseModel):
    """One input tensor of an inference request.

    ``data`` may be omitted only when ``parameters.binary_data_size`` says the bytes follow the JSON
    header (binary tensor data extension).
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    name: str
    shape: list[Dimension] = Field(max_length=8)
    datatype: Datatype = Field(strict=False)  # the name as text (strict would want an enum instance)
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = Field(default=None, json_schema_extra=TENSOR_DATA_SCHEMA)


class RequestOutput(BaseModel):
    """An output the client asks for (all outputs when the request names none)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}[/versions/{version}]/infer`` request body."""

    model_config = ConfigDict(strict=True, extra="forbid")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: Datatype
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    """Inference response body; ``id`` echoes the request's."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class CtrInstance(BaseModel):
    """One click-through-rate record: raw dense features and raw categorical values.

    Categorical values are hex strings as in the Criteo files (``"68fd1e64"``), integers in
    ``[0, 2^62)``, or null/empty for missing (id 0). Dense values may be null (missing, read as 0).
    """

    model_config = ConfigDict(strict=True, extra="forbid")

    dense: list[float | None] | None = None
    categorical: list[str | int | None]


class LocalizationInstance(BaseModel):
    """One WiFi fingerprint: RSSI in dBm per access point, 100 (or null) for "not seen"."""

    model_config = ConfigDict(strict=True, extra="forbid")

    rssi: list[float | None]


class PredictRequest(BaseModel):
    """``POST /v1/models/{name}/predict``: records of the model's task."""

    model_config = ConfigDict(strict=True, extra="forbid")

    instances: list[CtrInstance | LocalizationInstance] = Field(min_length=1)


class Location(BaseModel):
    """A localization prediction."""

    longitude: float
    latitude: float
    floor: int
    building: int


class PredictResponse(BaseModel):
    """Predictions in request order: probabilities (CTR) or locations (localization)."""

    model_name: str
    model_version: str
    predictions: list[float] | list[Location]


class ModelStatus(BaseModel):
    """One model on the status page."""

    name: str
    state: str
    version: str | None
    reason: str
    task: str | None
    method: str | None
    parameter_bytes: int | None
    metrics: dict[str, Any]
    dataset: str | None
    created: str | None
    versions_available: list[str]
    requests_total: float
    inferences_total: float
    requests_per_s: float
    samples_per_s: float
    placement: str | None = None
    placement_reason: str = ""
    device_bytes: int | None = None
    table_bytes: int | None = None
    method_detail: str = ""
    history: list[tuple[float, float]] = []  # (seconds ago, samples/s), oldest first
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None
    stage_ms: dict[str, float] = {}


class ServiceStatus(BaseModel):
    """``GET /v1/status``: readiness, providers and every model with its live rates."""

    name: str
    version: str
    ready: bool
    draining: bool
    uptime_s: float
    providers: list[str]
    rate_window_s: float
    models: list[ModelStatus]
    device_budget_bytes: int | None = None  # --gpu-memory-limit (or the GPU's free memory less a margin)
    device_bytes_held: int = 0  # what the serving versions hold on the device (counted ones)


class RepositoryIndexEntry(BaseModel):
    """One entry of ``POST /v2/repository/index``."""

    name: str
    version: str | None
    state: str
    reason: str
