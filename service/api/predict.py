"""Domain endpoint: ``POST /v1/models/{name}/predict`` with JSON records of the model's task."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from service.api.common import (
    ERROR_RESPONSES,
    json_body_schema,
    json_response,
    label_request,
    read_body,
    require_json,
    state_of,
)
from service.decoding import decode_predict_body
from service.domain import tensors_to_predictions
from service.schemas import PredictRequest, PredictResponse

router = APIRouter(tags=["predict"], responses=ERROR_RESPONSES)

PREDICT_DOC = {
    **json_body_schema(PredictRequest),
    "responses": {
        "200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}}
    },
}


@router.post("/v1/models/{model_name}/predict", openapi_extra=PREDICT_DOC)
async def predict(model_name: str, request: Request) -> Response:
    """CTR records -> probabilities; WiFi fingerprints -> locations (same batching as v2 inference)."""
    state = state_of(request)
    label_request(request, state, model_name, "predict")
    require_json(request)
    served = state.dataplane.resolve(model_name, None)  # 404/503 before the body is read
    label_request(request, state, model_name, "predict", served.version)
    # A full queue: wait in line (unread) for up to queue_wait_s, then 503, before the body is read.
    await served.queue.wait_for_room(state.settings.queue_wait_s)
    body = await read_body(request, state)
    served = state.dataplane.resolve(model_name, None)  # the version may have been swapped meanwhile
    with state.dataplane.admit(served) as admission:  # ... and a full queue refuses before decoding
        inputs = await state.decoder.run(
            decode_predict_body, body, served.manifest, state.dataplane.limits.max_instances
        )
        served = state.dataplane.resolve(model_name, None)
        label_request(request, state, model_name, "predict", served.version)
        outputs = await state.dataplane.infer(served, inputs, admission)
    predictions = tensors_to_predictions(served.manifest, outputs)
    response = PredictResponse(model_name=served.name, model_version=served.version, predictions=predictions)
    return json_response(response.model_dump())


RESPONSE_MODELS: list[type[BaseModel]] = [PredictRequest, PredictResponse]
