"""``python -m service --repository models --host 127.0.0.1 --port 8000``: run the inference service.

Settings come from ``ROBESERVE_*`` environment variables; flags given here win over them.
SIGTERM: readiness turns 503 at once, requests are still served for ``drain_delay_s``, then the listener
closes, in-flight requests finish and every queue drains before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import threading
from http import HTTPStatus
from types import FrameType
from typing import Any, NoReturn

import uvicorn
from pydantic import ValidationError
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.app import create_app
from service.config import LogFormat, Settings
from service.logs import configure_logging
from service.metrics import observe_response
from service.state import AppState

logger = logging.getLogger("service")
MALFORMED_ROUTE = "malformed"
IDLE_CONNECTION_GRACE_S = 0.5


class UsageError(Exception):
    """A bad command line, reported as one ``error: ...`` line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m service", description="robeserve inference service")
    parser.add_argument("--repository", help="model repository root (default: models)")
    parser.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default: 8000)")
    parser.add_argument("--providers", help="onnxruntime providers, comma-separated, or 'auto'")
    parser.add_argument("--intra-op-threads", type=int, help="onnxruntime threads per session (0: default)")
    parser.add_argument("--max-batch-size", type=int, help="most samples per merged run")
    parser.add_argument(
        "--max-queue-delay-us", type=int, help="longest wait for a batch to fill, microseconds"
    )
    parser.add_argument("--max-queue-size", type=int, help="requests waiting per model before 503")
    parser.add_argument("--gpu-memory-limit", help="device memory budget (5MB, 24GB, ...); default: GPU free")
    parser.add_argument("--placement", help="auto, device or hybrid; per model: auto,dlrm-full=hybrid")
    parser.add_argument("--hybrid-threads", help="LOOKUP,DENSE threads of hybrid models (default: sized)")
    parser.add_argument("--poll-interval-s", type=float, help="repository poll interval, 0 = off")
    parser.add_argument("--log-format", choices=[item.value for item in LogFormat], help="text or json")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ...")
    return parser


def settings_from_args(argv: list[str] | None) -> Settings:
    """Environment settings overridden by the flags that were given."""
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {key: value for key, value in vars(args).items() if value is not None}
    return Settings(**overrides)


class CountingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol, counting the 400s it sends itself for unparsable HTTP (the app never
    sees those requests) as ``robeserve_http_responses_total{route="malformed",code="400"}``."""

    def send_400_response(self, msg: str) -> None:
        observe_response(MALFORMED_ROUTE, HTTPStatus.BAD_REQUEST)
        super().send_400_response(msg)


class DrainingServer(uvicorn.Server):
    """uvicorn server whose SIGTERM first flips readiness to 503 and keeps serving for a while."""

    def __init__(self, config: uvicorn.Config, state: AppState) -> None:
        super().__init__(config)
        self.state = state

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, then give requests already written on accepted connections a moment to be
        read before uvicorn closes the connections it finds idle (else such a request is lost)."""
        for server in self.servers:
            server.close()
        await asyncio.sleep(IDLE_CONNECTION_GRACE_S)
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        delay = self.state.settings.drain_delay_s
        if sig == signal.SIGTERM and not self.state.draining and delay > 0:
            self.state.draining = True
            logger.info("SIGTERM: readiness is now 503; closing the listener in %.1f s", delay)
            timer = threading.Timer(delay, super().handle_exit, args=(sig, None))
            timer.daemon = True
            timer.start()
            return
        self.state.draining = True
        super().handle_exit(sig, frame)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = settings_from_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        print(f"error: {'.'.join(str(part) for part in first['loc'])}: {first['msg']}", file=sys.stderr)
        return 2
    configure_logging(settings.log_format, settings.log_level)
    if not settings.repository.is_dir():
        print(f"error: model repository {settings.repository} is not a directory", file=sys.stderr)
        return 2
    try:
        app = create_app(settings)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        http=CountingHttpToolsProtocol,
        access_log=settings.access_log,
        timeout_graceful_shutdown=int(settings.graceful_timeout_s),
        lifespan="on",
    )
    server = DrainingServer(config, app.state.robeserve)
    try:
        server.run()
    except OSError as exc:
        print(f"error: cannot serve on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
