"""Typed service errors and the ONE table that maps them to HTTP responses ``{"error": "..."}``.

Code raises these where a problem is found; routes never build error responses themselves.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the errors a client may see; ``status_code`` is the HTTP status it maps to."""

    status_code: int = HTTPStatus.INTERNAL_SERVER_ERROR

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidInput(ServiceError):
    """The request is malformed or its values are unusable (wrong shape, datatype, NaN, id range)."""

    status_code = HTTPStatus.BAD_REQUEST


class ModelNotFound(ServiceError):
    """No such model, or no such version of it, in the repository."""

    status_code = HTTPStatus.NOT_FOUND


class ModelNotReady(ServiceError):
    """The model exists but no version of it is serving (loading, failed or unloaded)."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class ServiceNotReady(ServiceError):
    """The readiness answer while models load, when one failed, or after SIGTERM."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class PayloadTooLarge(ServiceError):
    """The body or the number of instances exceeds a configured limit."""

    status_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(ServiceError):
    """An inference body that is not declared ``application/json`` (keeps cross-origin "simple" POSTs out)."""

    status_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class RequestTimeout(ServiceError):
    """The body did not arrive within the body-read timeout; the connection is closed."""

    status_code = HTTPStatus.REQUEST_TIMEOUT

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


CLIENT_CLOSED_REQUEST = 499  # nginx's code for "the client went away before the answer"


class ClientClosedRequest(ServiceError):
    """The client closed the connection before its request was read; nobody receives this answer."""

    status_code = CLIENT_CLOSED_REQUEST


class QueueFull(ServiceError):
    """The model's batching queue is full; the client should retry after ``Retry-After`` seconds."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class QueueClosed(ServiceError):
    """The queue stopped accepting work (model swapped out or the service is stopping)."""

    status_code = HTTPStatus.SERVICE_UNAVAILABLE


class Unauthorized(ServiceError):
    """Missing or wrong bearer token on a management endpoint."""

    status_code = HTTPStatus.UNAUTHORIZED

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class AdminDisabled(ServiceError):
    """Management endpoints are off because no admin token is configured."""

    status_code = HTTPStatus.FORBIDDEN


class ModelLoadFailed(ServiceError):
    """A requested (re)load failed; the previously serving version, if any, keeps serving."""

    status_code = HTTPStatus.BAD_REQUEST


class InferenceFailed(ServiceError):
    """onnxruntime failed on a batch, or returned outputs that do not fit the batch."""

    status_code = HTTPStatus.INTERNAL_SERVER_ERROR


def error_response(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The body every error carries: ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status_code, headers=headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500 and not isinstance(
        exc, QueueFull | QueueClosed | ModelNotReady | ServiceNotReady
    ):
        logger.error("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    else:
        logger.info("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    return error_response(exc.status_code, exc.message, exc.headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(item) for item in error.get("loc", ()) if item != "body")
        parts.append(
            f"{location}: {error.get('msg', 'invalid')}" if location else error.get("msg", "invalid")
        )
    return "invalid request: " + "; ".join(parts)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message = _describe_validation(exc)
    logger.info("%s %s -> 400: %s", request.method, request.url.path, message)
    return error_response(HTTPStatus.BAD_REQUEST, message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _client_disconnect(request: Request, exc: Exception) -> JSONResponse:
    logger.info("%s %s -> %d: client closed the connection", request.method, request.url.path,
                CLIENT_CLOSED_REQUEST)
    return error_response(CLIENT_CLOSED_REQUEST, "client closed the connection")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s -> 500", request.method, request.url.path, exc_info=exc)
    return error_response(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}")


def add_exception_handlers(app: FastAPI) -> None:
    """Install the mapping of every error type to its HTTP response."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_exception_handler(Exception, _unexpected_error)
