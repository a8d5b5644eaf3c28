"""Open Inference Protocol v2 (KServe v2 / Triton HTTP): health, metadata and inference.

Inference accepts JSON tensors and the binary tensor data extension (``Inference-Header-Content-Length``).
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import pydantic_core
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from service.api.common import (
    ERROR_RESPONSES,
    State,
    json_body_schema,
    json_response,
    label_request,
    read_body,
    require_json,
    state_of,
)
from service.decoding import decode_v2_body
from service.errors import InvalidInput, ServiceNotReady
from service.manager import ServedModel
from service.schemas import (
    InferenceRequest,
    InferenceResponse,
    LiveResponse,
    ModelMetadataResponse,
    ReadyResponse,
    ServerMetadataResponse,
    TensorMetadata,
)
from service.tensors import (
    BINARY_HEADER,
    datatype_from_name,
    encode_binary_data,
    encode_json_data,
)

logger = logging.getLogger(__name__)
router = APIRouter(tags=["v2"], responses=ERROR_RESPONSES)
# Routed before everything else: the hot path should not be matched against a dozen other routes first.
inference_router = APIRouter(tags=["v2"], responses=ERROR_RESPONSES)
PLATFORM = "onnxruntime_onnx"
EXTENSIONS = ["binary_tensor_data", "model_repository"]


def server_version() -> str:
    """The installed robeserve version."""
    try:
        return package_version("robeserve")
    except PackageNotFoundError:
        return "0+unknown"


@router.get("/v2", response_model=ServerMetadataResponse)
async def server_metadata() -> ServerMetadataResponse:
    """Server name, version and supported extensions."""
    return ServerMetadataResponse(name="robeserve", version=server_version(), extensions=EXTENSIONS)


@router.get("/v2/health/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    """200 while the process serves HTTP."""
    return LiveResponse(live=True)


@router.get("/v2/health/ready", response_model=ReadyResponse, response_model_exclude_none=True)
async def ready(state: State) -> ReadyResponse:
    """200 when at least one model serves and every model is loaded; 503 while loading, when a model
    failed, when nothing serves (empty repository, all unloaded), or after SIGTERM."""
    reason = state.not_ready_reason()
    if reason is not None:
        raise ServiceNotReady(reason)
    return ReadyResponse(ready=True)


def _metadata(served: ServedModel) -> ModelMetadataResponse:
    manifest = served.manifest
    return ModelMetadataResponse(
        name=manifest.name,
        versions=[manifest.version],
        platform=PLATFORM,
        inputs=[
            TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in manifest.inputs
        ],
        outputs=[
            TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in manifest.outputs
        ],
        placement=served.placement,
        placement_reason=served.model.decision_reason or None,
        device_bytes=served.model.device_bytes,
    )


@router.get("/v2/models/{model_name}", response_model=ModelMetadataResponse)
async def model_metadata(model_name: str, state: State) -> ModelMetadataResponse:
    """Inputs and outputs of the serving version (-1 marks the batch dimension)."""
    return _metadata(state.dataplane.resolve(model_name, None))


@router.get("/v2/models/{model_name}/versions/{model_version}", response_model=ModelMetadataResponse)
async def model_version_metadata(model_name: str, model_version: str, state: State) -> ModelMetadataResponse:
    """Metadata of one version (404 unless it is the serving one)."""
    return _metadata(state.dataplane.resolve(model_name, model_version))


@router.get("/v2/models/{model_name}/ready", response_model=ReadyResponse, response_model_exclude_none=True)
async def model_ready(model_name: str, state: State) -> ReadyResponse:
    """200 when the model serves, 503 when it exists but does not, 404 when unknown."""
    state.dataplane.resolve(model_name, None)
    return ReadyResponse(name=model_name, ready=True)


@router.get(
    "/v2/models/{model_name}/versions/{model_version}/ready",
    response_model=ReadyResponse,
    response_model_exclude_none=True,
)
async def model_version_ready(model_name: str, model_version: str, state: State) -> ReadyResponse:
    """200 when this version serves."""
    state.dataplane.resolve(model_name, model_version)
    return ReadyResponse(name=model_name, ready=True)


INFER_DOC = {
    **json_body_schema(InferenceRequest),
    "responses": {
        "200": {
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InferenceResponse"}}}
        }
    },
}


@inference_router.post("/v2/models/{model_name}/infer", openapi_extra=INFER_DOC)
async def infer(model_name: str, request: Request) -> Response:
    """Run the serving version on the request's tensors."""
    return await _infer(request, model_name, None)


@inference_router.post("/v2/models/{model_name}/versions/{model_version}/infer", openapi_extra=INFER_DOC)
async def infer_version(model_name: str, model_version: str, request: Request) -> Response:
    """Run one version (404 unless it is the serving one)."""
    return await _infer(request, model_name, model_version)


async def _infer(request: Request, model_name: str, model_version: str | None) -> Response:
    state = state_of(request)
    label_request(request, state, model_name, "infer")
    require_json(request)
    # Admission before the body is read: unknown models, versions that do not serve and full queues are
    # refused before the body costs anything.
    served = state.dataplane.resolve(model_name, model_version)
    label_request(request, state, model_name, "infer", served.version)
    # A full queue: wait in line (unread) for up to queue_wait_s, then 503, before the body is read.
    await served.queue.wait_for_room(state.settings.queue_wait_s)
    body = await read_body(request, state)
    # The version may have been swapped while the body arrived; the place in the queue is held from
    # here (decoding on), so a slow sender holds none.
    served = state.dataplane.resolve(model_name, model_version)
    with state.dataplane.admit(served) as admission:
        parsed, inputs = await state.decoder.run(
            decode_v2_body,
            body,
            request.headers.get(BINARY_HEADER),
            served.manifest,
            state.dataplane.limits.max_instances,
        )
        # From this resolve to the submit nothing awaits, so a version swap cannot close the queue in
        # between (a swap while the body was read moves the request to the new version).
        served = state.dataplane.resolve(model_name, model_version)
        label_request(request, state, model_name, "infer", served.version)
        wanted = _requested_outputs(served, parsed)
        outputs = await state.dataplane.infer(served, inputs, admission)
    return _encode(served, parsed, {name: outputs[name] for name in wanted}, wanted)


def _requested_outputs(served: ServedModel, request: InferenceRequest) -> dict[str, bool]:
    """Output name -> whether it goes back as binary data."""
    all_binary = bool((request.parameters or {}).get("binary_data_output", False))
    if not request.outputs:
        return {spec.name: all_binary for spec in served.manifest.outputs}
    wanted: dict[str, bool] = {}
    for output in request.outputs:
        if served.manifest.output(output.name) is None:
            raise InvalidInput(f"model '{served.name}' has no output '{output.name}'")
        wanted[output.name] = bool((output.parameters or {}).get("binary_data", all_binary))
    return wanted


def _encode(
    served: ServedModel, request: InferenceRequest, outputs: dict[str, np.ndarray], binary: dict[str, bool]
) -> Response:
    entries, blobs = [], []
    for name, value in outputs.items():
        spec = served.manifest.output(name)
        datatype = spec.datatype if spec is not None else datatype_from_name(value.dtype.name)
        entry: dict[str, Any] = {"name": name, "datatype": datatype.value, "shape": list(value.shape)}
        if binary[name]:
            blob = encode_binary_data(value)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = encode_json_data(value)
        entries.append(entry)
    document: dict[str, Any] = {
        "model_name": served.name,
        "model_version": served.version,
        "outputs": entries,
    }
    if request.id is not None:
        document["id"] = request.id
    if not blobs:
        return json_response(document)
    header = pydantic_core.to_json(document)
    return Response(
        header + b"".join(blobs),
        media_type="application/octet-stream",
        headers={BINARY_HEADER: str(len(header))},
    )


RESPONSE_MODELS: list[type[BaseModel]] = [InferenceRequest, InferenceResponse]
