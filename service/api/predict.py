"""Domain endpoint: ``POST /v1/models/{name}/predict`` with JSON records of the model's task."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from service.api.common import (
    ERROR_RESPONSES,
    json_body_schema,
    json_response,
    label_request,
    parse_json,
    state_of,
)
from service.domain import records_to_tensors, tensors_to_predictions
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
    label_request(request, state, model_name, None, "predict")
    body = await request.body()
    parsed = parse_json(PredictRequest, body)
    served = state.dataplane.resolve(model_name, None)
    label_request(request, state, model_name, served.version, "predict")
    inputs = records_to_tensors(served.manifest, parsed.instances)
    outputs = await state.dataplane.infer(served, inputs)
    predictions = tensors_to_predictions(served.manifest, outputs)
    response = PredictResponse(model_name=served.name, model_version=served.version, predictions=predictions)
    return json_response(response.model_dump())


RESPONSE_MODELS: list[type[BaseModel]] = [PredictRequest, PredictResponse]
