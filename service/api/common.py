"""Helpers shared by the routes: the state dependency, JSON bodies, metric labels, OpenAPI bodies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import pydantic_core
from fastapi import Depends, Request, Response
from pydantic import BaseModel, ValidationError

from service.errors import InvalidInput
from service.schemas import ErrorResponse
from service.state import AppState

ModelT = TypeVar("ModelT", bound=BaseModel)
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 503)
}


def state_of(request: Request) -> AppState:
    """The process state (set by ``create_app``); the inference routes call this directly because
    resolving a FastAPI dependency costs more than the lookup itself."""
    state: AppState = request.app.state.robeserve
    return state


async def app_state(request: Request) -> AppState:
    """Dependency form of ``state_of`` (async: sync dependencies would hop through a thread pool)."""
    return state_of(request)


State = Annotated[AppState, Depends(app_state)]


def json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that the route parses itself (the model is added to
    the components by ``create_app``)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def parse_json(model: type[ModelT], body: bytes) -> ModelT:
    """Validate a JSON body; any problem is a 400 with a short description."""
    if not body.strip():
        raise InvalidInput("request body is empty")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False)[:3]:
            location = ".".join(str(part) for part in error["loc"])
            problems.append(f"{location}: {error['msg']}" if location else error["msg"])
        raise InvalidInput("invalid request: " + "; ".join(problems)) from None


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response serialised by pydantic-core (fast for long numeric lists)."""
    return Response(pydantic_core.to_json(content), status_code=status_code, media_type="application/json")


def label_request(request: Request, state: AppState, model: str, version: str | None, endpoint: str) -> None:
    """Mark an inference request for the request metrics (known model names only: bounded labels)."""
    entry = state.manager.entries.get(model)
    if entry is None:
        return
    if version is None and entry.serving is not None:
        version = entry.serving.version
    request.state.metric_labels = (model, version or "", endpoint)
