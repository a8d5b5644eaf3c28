"""ASGI middleware: the request body limit (413) and the per-request inference metrics."""

from __future__ import annotations

import time
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge, error_response
from service.metrics import observe_request


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


class RequestMetricsMiddleware:
    """Count inference requests by status code and time them.

    Routes mark a request with ``request.state.metric_labels = (model, version, endpoint)``; requests
    without labels (health, metadata, unknown models) are not counted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            labels: tuple[str, str, str] | None = scope.get("state", {}).get("metric_labels")
            if labels is not None:
                model, version, endpoint = labels
                observe_request(model, version, endpoint, status, time.perf_counter() - started)
