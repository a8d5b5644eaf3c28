"""ASGI middleware: the request body limit (413), and what every response gets (metrics, headers)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, error_response
from service.metrics import observe_request, observe_response
from service.state import AppState


class BodyLimitMiddleware:
    """Refuse bodies over ``max_body_bytes``: at once from Content-Length, else while reading.

    Args:
        app: the wrapped application.
        max_body_bytes: the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, self._message(int(declared)))
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise PayloadTooLarge(self._message(received))
            return message

        await self.app(scope, limited_receive, send)

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes"


INFERENCE_ROUTES = {
    "/v2/models/{model_name}/infer": "infer",
    "/v2/models/{model_name}/versions/{model_version}/infer": "infer",
    "/v1/models/{model_name}/predict": "predict",
}
UNMATCHED = "unmatched"
# The status page and its files: a strict policy (same-origin scripts, styles and fetches, no framing).
PAGE_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
]
NOSNIFF = (b"x-content-type-options", b"nosniff")


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/static/")


def _match_route(scope: Scope, routes: Sequence[BaseRoute]) -> tuple[str, dict[str, Any]]:
    """(route template, path parameters) of a request that routing has not labelled itself (a 404, 405,
    or a response sent before routing, such as the Content-Length 413)."""
    for route in routes:
        match, child = route.matches(scope)
        if match is not Match.NONE:
            return str(getattr(route, "path", UNMATCHED)), dict(child.get("path_params", {}))
    return UNMATCHED, {}


class ResponseMiddleware:
    """What every response gets: counted, timed, and given its headers.

    Counts every response in ``robeserve_http_responses_total{route,code}`` (route templates only), and
    inference requests in ``robeserve_requests_total`` with the labels the route set
    (``request.state.metric_labels``; a response sent before routing, such as the Content-Length 413,
    is labelled from the route it would have reached when its model exists). Adds ``Retry-After`` to
    every 503, ``Connection: close`` while the service drains (clients move to another replica instead
    of reusing a connection that is about to close), ``X-Content-Type-Options: nosniff`` everywhere and a
    Content-Security-Policy with ``X-Frame-Options`` on the status page and its files.

    Args:
        app: the wrapped application.
        state: the process state (settings, draining flag, known models).
        routes: the application's routes (their templates are the only route labels).
    """

    def __init__(self, app: ASGIApp, state: AppState, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.state = state
        self.routes = list(routes)
        self.retry_after = str(state.settings.retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value
        page = _is_page(scope["path"])

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if status == HTTPStatus.SERVICE_UNAVAILABLE and b"retry-after" not in names:
                    headers.append((b"retry-after", self.retry_after))
                if self.state.draining and b"connection" not in names:
                    headers.append((b"connection", b"close"))
                headers.append(NOSNIFF)
                if page:
                    headers.extend(PAGE_SECURITY_HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            self._observe(scope, status, time.perf_counter() - started)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        labels: tuple[str, str, str] | None = scope.get("state", {}).get("metric_labels")
        if route is not None:
            template = str(getattr(route, "path", UNMATCHED))
        else:
            template, params = _match_route(scope, self.routes)
            endpoint = INFERENCE_ROUTES.get(template)
            model = params.get("model_name")
            if labels is None and endpoint is not None and model in self.state.manager.entries:
                labels = (str(model), "", endpoint)
        observe_response(template, status)
        if labels is not None:
            model, version, endpoint = labels
            observe_request(model, version, endpoint, status, seconds)
