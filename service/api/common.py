"""Helpers shared by the routes: the state dependency, JSON bodies, metric labels, OpenAPI bodies."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pydantic_core
from fastapi import Depends, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from service.errors import ClientClosedRequest, RequestTimeout, UnsupportedMediaType
from service.schemas import ErrorResponse
from service.state import AppState
from service.tensors import BINARY_HEADER

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 408, 413, 415, 503)
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


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response serialised by pydantic-core (fast for long numeric lists)."""
    return Response(pydantic_core.to_json(content), status_code=status_code, media_type="application/json")


def label_request(request: Request, state: AppState, model: str, endpoint: str, version: str = "") -> None:
    """Mark an inference request for the request metrics.

    Only names the repository holds become labels: an unknown model is not labelled at all (it is still
    counted per route in ``robeserve_http_responses_total``), and the version label is empty until the
    route has resolved the version that serves, so 10,000 requests naming made-up models or versions
    add no series.
    """
    if model in state.manager.entries:
        request.state.metric_labels = (model, version, endpoint)


JSON_MEDIA_TYPE = "application/json"


def require_json(request: Request) -> None:
    """415 unless the body is declared ``application/json``.

    A browser can send a cross-origin "simple" POST (``text/plain``, form encodings, or a Blob with no
    type) without asking the server first; requiring ``application/json`` makes it ask (a CORS
    preflight, which this service never grants), so such a POST never reaches inference. Two kinds of
    request cannot come from a simple POST and are accepted as they are: those with the v2 binary
    extension's ``Inference-Header-Content-Length`` header (a custom header forces the preflight; Triton's
    client sends no Content-Type with it), and those with neither Content-Type nor ``Origin`` (browsers
    send ``Origin`` on every POST; Triton's client sends JSON requests with no Content-Type).
    """
    headers = request.headers
    content_type = headers.get("content-type")
    if content_type is None:
        if "origin" in headers and BINARY_HEADER.lower() not in headers:
            raise UnsupportedMediaType("a browser request needs Content-Type: application/json")
        return
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == JSON_MEDIA_TYPE:
        return
    if BINARY_HEADER.lower() in headers:
        return
    raise UnsupportedMediaType(f"Content-Type must be {JSON_MEDIA_TYPE}, got {media_type!r}")


async def read_body(request: Request, state: AppState) -> bytes:
    """The whole body, within ``body_timeout_s`` (408 and the connection closes); a client that closes
    the connection meanwhile is a 499."""
    try:
        return await asyncio.wait_for(request.body(), state.settings.body_timeout_s)
    except TimeoutError:
        raise RequestTimeout(
            f"the request body did not arrive within {state.settings.body_timeout_s:g} s"
        ) from None
    except ClientDisconnect:
        raise ClientClosedRequest("client closed the connection while sending the body") from None
