"""The abuse suite: attacks and overloads against a real service process, with their measured outcomes.

``python -m loadtest.abuse [--short] [--out docs/benchmarks/abuse]`` (``make abuse``) starts
``python -m service`` on 127.0.0.1 with a small CTR model and a queue of 4, then runs each attack in turn
while a separate process probes ``GET /v2/health/live`` every 20 ms. Per attack it records what was sent,
the answers by class (2xx / 4xx / 5xx / timeouts, connection refusals), whether each answer was the
expected one, liveness latency during the attack (p50 / p99 / max), the service's RSS and its number of
``robeserve_`` metric series. The targets (issue 15) are checked at the end and every figure goes to
``<out>.json`` and ``<out>.md``. ``--short`` is the version ``make test`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from loadtest.service_bench.load import build_request
from loadtest.service_process import ServiceProcess
from loadtest.synthetic import CtrShape, ctr_model, write_entry

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
ADMIN_TOKEN = "abuse-admin-token"
MODEL = "ctr"
MIB = 1024 * 1024
MAX_BODY = 16 * MIB
MAX_INSTANCES = 1024
QUEUE_SIZE = 4
BODY_TIMEOUT_S = 2.0
PROBE_INTERVAL_S = 0.02
PROBE_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 30.0
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Sizes:
    """How much each attack sends (``--short`` is the ``make test`` version)."""

    unknown_names: int
    bad_input_rounds: int
    big_body_rounds: int
    slow_connections: int
    aborted_connections: int
    overload_s: float
    reload_clients: int
    drain_clients: int


FULL = Sizes(10_000, 5, 3, 300, 300, 15.0, 4, 4)
SHORT = Sizes(2_000, 1, 1, 20, 20, 4.0, 4, 4)


@dataclass
class Outcome:
    """What one attack got back."""

    name: str
    attack: str
    expected: str
    sent: int = 0
    codes: Counter[int] = field(default_factory=Counter)
    timeouts: int = 0
    refused: int = 0
    lost: int = 0
    unexpected: list[str] = field(default_factory=list)
    missing_retry_after: int = 0
    seconds: float = 0.0
    liveness_ms: dict[str, float] = field(default_factory=dict)
    rss_mib: float = 0.0
    series: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def answer(self, status: int, headers: dict[str, str], allowed: set[int]) -> None:
        self.codes[status] += 1
        if status == 503 and "retry-after" not in headers:
            self.missing_retry_after += 1
        if status not in allowed and len(self.unexpected) < 20:
            self.unexpected.append(f"HTTP {status}")

    def summary(self) -> dict[str, Any]:
        by_class = {f"{k}xx": sum(n for code, n in self.codes.items() if code // 100 == k) for k in (2, 4, 5)}
        unexpected_5xx = sum(n for code, n in self.codes.items() if code >= 500 and code != 503)
        unexpected_5xx += sum(1 for item in self.unexpected if item.startswith("HTTP 503"))
        return {
            **{key: value for key, value in asdict(self).items() if key != "codes"},
            "codes": {str(code): n for code, n in sorted(self.codes.items())},
            **by_class,
            "unexpected_5xx": unexpected_5xx,
        }


# ---------------------------------------------------------------------------- the service under attack


def build_repository(root: Path) -> Path:
    write_entry(
        root, MODEL, "1", ctr_model(CtrShape(), seed=1), "ctr", preprocessing={"dense": "log1p_clip0"}
    )
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Service(ServiceProcess):
    """``python -m service`` on a free port with the suite's settings (``loadtest.service_process`` starts,
    waits for and stops it)."""

    def __init__(self, repository: Path, log_path: Path) -> None:
        env = {
            "ROBESERVE_ADMIN_TOKEN": ADMIN_TOKEN,
            "ROBESERVE_MAX_QUEUE_SIZE": str(QUEUE_SIZE),
            "ROBESERVE_MAX_BODY_BYTES": str(MAX_BODY),
            "ROBESERVE_MAX_INSTANCES": str(MAX_INSTANCES),
            "ROBESERVE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            "ROBESERVE_POLL_INTERVAL_S": "0.5",
            "ROBESERVE_DRAIN_DELAY_S": "1.0",
            "ROBESERVE_INTRA_OP_THREADS": "1",
            "ROBESERVE_RETRY_AFTER_S": "1",
        }
        super().__init__(repository, free_port(), log_path, env, cwd=REPO_ROOT)

    def log(self) -> str:
        return self.log_text()

    def rss_mib(self) -> float:
        """Resident memory of the service and its decode workers."""
        total = 0
        for pid in [self.process.pid, *_children(self.process.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total / MIB

    def main_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def metrics(self) -> str:
        return httpx.get(self.url + "/metrics", timeout=30.0).text

    def series(self) -> int:
        return len(self.series_names())

    def series_names(self) -> set[str]:
        """Every ``robeserve_`` series (name and labels) on ``/metrics``."""
        return {
            line.rsplit(" ", 1)[0] for line in self.metrics().splitlines() if line.startswith("robeserve_")
        }

def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            if all(f'{key}="{wanted}"' in head for key, wanted in labels.items()):
                total += float(value)
    return total


# ---------------------------------------------------------------------------- liveness prober (own process)


def _probe(port: int, conn: Connection) -> None:
    """Probe liveness until told to stop; send back (monotonic start, latency s or None) pairs."""
    samples: list[tuple[float, float | None]] = []
    request = f"GET /v2/health/live HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
    sock: socket.socket | None = None
    while not conn.poll():
        started = time.monotonic()
        try:
            if sock is None:
                sock = socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT_S)
            sock.settimeout(PROBE_TIMEOUT_S)
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed")
                data += chunk
            samples.append((started, time.monotonic() - started))
            if len(samples) == 1:
                conn.send("started")
        except OSError:
            samples.append((started, None))
            if sock is not None:
                sock.close()
            sock = None
        time.sleep(max(0.0, PROBE_INTERVAL_S - (time.monotonic() - started)))
    conn.send(samples)


class Prober:
    """A separate process probing liveness (the suite's own event loop must not delay the probes)."""

    def __init__(self, port: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._parent, child = context.Pipe()
        self._process = context.Process(target=_probe, args=(port, child), daemon=True)
        self._process.start()
        if not self._parent.poll(60) or self._parent.recv() != "started":
            raise RuntimeError("the liveness prober did not start")

    def stop(self) -> list[tuple[float, float | None]]:
        self._parent.send("stop")
        samples: list[tuple[float, float | None]] = self._parent.recv()
        self._process.join(10)
        return samples


def latency_summary(samples: list[tuple[float, float | None]], start: float, end: float) -> dict[str, float]:
    window = [value for at, value in samples if start <= at <= end]
    latencies = sorted(PROBE_TIMEOUT_S if value is None else value for value in window)
    if not latencies:
        return {"probes": 0}
    p99 = latencies[min(len(latencies) - 1, max(0, round(0.99 * len(latencies)) - 1))]
    return {
        "probes": len(latencies),
        "failed": sum(1 for value in window if value is None),
        "p50_ms": round(statistics.median(latencies) * 1e3, 2),
        "p99_ms": round(p99 * 1e3, 2),
        "max_ms": round(latencies[-1] * 1e3, 2),
    }


# ---------------------------------------------------------------------------- request bodies


def ctr_body(rng: np.random.Generator, rows: int) -> bytes:
    dense = rng.integers(0, 1000, size=(rows, 13)).astype(float).tolist()
    ids = rng.integers(0, 2**40, size=(rows, 26)).tolist()
    return json.dumps(
        {
            "inputs": [
                {"name": "dense", "shape": [rows, 13], "datatype": "FP32", "data": dense},
                {"name": "categorical", "shape": [rows, 26], "datatype": "INT64", "data": ids},
            ]
        }
    ).encode()


def predict_body(rng: np.random.Generator, rows: int) -> bytes:
    instances = [
        {
            "dense": rng.integers(0, 1000, 13).astype(float).tolist(),
            "categorical": [f"{value:08x}" for value in rng.integers(0, 2**32, 26)],
        }
        for _ in range(rows)
    ]
    return json.dumps({"instances": instances}).encode()


def padded_to(body: bytes, size: int) -> bytes:
    """``body`` (a JSON object) with whitespace before its last brace up to exactly ``size`` bytes."""
    if len(body) > size:
        raise ValueError(f"body of {len(body)} bytes is already over {size}")
    return body[:-1] + b" " * (size - len(body)) + b"}"


def fitting_body(make: Callable[[np.random.Generator, int], bytes], size: int) -> bytes:
    """The largest body of ``make`` rows that fits ``size`` bytes, padded to exactly ``size``."""
    rng = np.random.default_rng(7)
    per_row = len(make(rng, 100)) / 100
    rows = int(size / per_row * 0.97)
    body = make(rng, rows)
    while len(body) > size:
        rows = int(rows * 0.98)
        body = make(rng, rows)
    return padded_to(body, size)


def _ctr_input(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


GOOD_DENSE = _ctr_input("dense", "FP32", [1, 13], [1.0] * 13)
GOOD_IDS = _ctr_input("categorical", "INT64", [1, 26], [1] * 26)
BAD_V2: list[bytes | dict[str, Any]] = [
    b'{"inputs": [',
    b"",
    b"[1, 2]",
    b"\xff\xfe{}",
    {"inputs": []},
    {"inputs": [_ctr_input("dense", "FP32", [1, 13], [1.0] * 12), GOOD_IDS]},
    {"inputs": [_ctr_input("dense", "FP32", [13], [1.0] * 13), GOOD_IDS]},
    {"inputs": [_ctr_input("dense", "INT64", [1, 13], [1] * 13), GOOD_IDS]},
    {"inputs": [_ctr_input("dense", "FP128", [1, 13], [1.0] * 13), GOOD_IDS]},
    {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [1.5] * 26)]},
    {"inputs": [_ctr_input("dense", "FP32", [1, 13], [None] * 13), GOOD_IDS]},
    {"inputs": [_ctr_input("dense", "FP32", [2, 13], [[1.0] * 13, [1.0] * 12]), GOOD_IDS]},
    {"inputs": [GOOD_DENSE]},
    {"inputs": [GOOD_DENSE, GOOD_DENSE, GOOD_IDS]},
    {"inputs": [_ctr_input("dense", "FP32", [1, 13], [1e39] + [1.0] * 12), GOOD_IDS]},
    {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [-1] + [1] * 25)]},
    {"inputs": [GOOD_DENSE, _ctr_input("categorical", "INT64", [1, 26], [2**64] + [1] * 25)]},
    {"inputs": [GOOD_DENSE, _ctr_input("categorical", "BYTES", [1, 26], ["xyz"] * 26)]},
    {"inputs": [GOOD_DENSE, GOOD_IDS], "outputs": [{"name": "nope"}]},
    {"inputs": [_ctr_input("dense", "FP32", [2**31 - 1, 2**31 - 1], [1.0]), GOOD_IDS]},
    {"inputs": [GOOD_DENSE, GOOD_IDS], "extra": True},
    {"inputs": [{**GOOD_DENSE, "extra": 1}, GOOD_IDS]},
    b'{"inputs": [{"name": "dense", "datatype": "FP32", "shape": [1, 13], "data": [NaN'
    + b", 1.0" * 12
    + b"]}]}",
    b"[" * 100_000 + b"]" * 100_000,
]
BAD_PREDICT: list[bytes | dict[str, Any]] = [
    {"instances": []},
    {"instances": [{"dense": [1.0] * 13, "categorical": [1] * 25}]},
    {"instances": [{"dense": [1.0] * 12, "categorical": [1] * 26}]},
    {"instances": [{"dense": [1.0] * 13, "categorical": ["zz"] + [1] * 25}]},
    {"instances": [{"dense": [1.0] * 13, "categorical": [2**62] + [1] * 25}]},
    {"instances": [{"dense": [1.0] * 13, "categorical": [True] + [1] * 25}]},
    {"instances": [{"rssi": [1.0] * 520}]},
    {"instances": [{"dense": [1.0] * 13, "categorical": [1] * 26, "extra": 1}]},
    {"instances": [{"dense": [1.0] * 13, "categorical": [1] * 26}], "extra": 1},
    {"rows": []},
    b'{"instances": [{"dense": [NaN' + b", 1.0" * 12 + b'], "categorical": [' + b"1, " * 25 + b"1]}]}",
    b"not json",
]


# ---------------------------------------------------------------------------- raw HTTP connections


class Raw:
    """One keep-alive HTTP/1.1 connection writing prepared bytes (cheap enough to flood with)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection(HOST, port, limit=2**20)
        return cls(reader, writer)

    async def response(self, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[int, dict[str, str], bytes]:
        status, headers = await self.response_head(timeout_s)
        body = await asyncio.wait_for(
            self.reader.readexactly(int(headers.get("content-length", "0"))), timeout_s
        )
        return status, headers, body

    async def response_head(self, timeout_s: float = REQUEST_TIMEOUT_S) -> tuple[int, dict[str, str]]:
        """The status and headers of the next response (its body left unread)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout_s)
        status = int(head.split(b" ", 2)[1])
        headers = {}
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def send(
        self, data: bytes, timeout_s: float = REQUEST_TIMEOUT_S
    ) -> tuple[int, dict[str, str], bytes]:
        self.writer.write(data)
        return await self.response(timeout_s)

    def close(self) -> None:
        self.writer.close()


def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One complete POST to the service under attack (JSON unless ``headers`` say otherwise)."""
    return build_request(HOST, path, body, headers)


async def _httpx_answer(
    outcome: Outcome, client: httpx.AsyncClient, method: str, path: str, allowed: set[int], **kwargs: Any
) -> httpx.Response | None:
    outcome.sent += 1
    try:
        response = await client.request(method, path, **kwargs)
    except httpx.TimeoutException:
        outcome.timeouts += 1
        return None
    except httpx.TransportError as exc:
        outcome.lost += 1
        outcome.unexpected.append(f"{type(exc).__name__}")
        return None
    outcome.answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, allowed)
    if response.status_code >= 400:
        try:
            if "error" not in response.json():
                outcome.unexpected.append(f"{method} {path}: no error field")
        except ValueError:
            outcome.unexpected.append(f"{method} {path}: error body is not JSON")
    return response


# ---------------------------------------------------------------------------- attacks


class Suite:
    def __init__(self, service: Service, sizes: Sizes, repository: Path, progress: tqdm) -> None:
        self.service = service
        self.sizes = sizes
        self.repository = repository
        self.progress = progress
        self.rng = np.random.default_rng(15)
        self.service_before_names: set[str] = set()

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.service.url, timeout=REQUEST_TIMEOUT_S, **kwargs)

    async def bad_input(self) -> Outcome:
        outcome = Outcome(
            "bad-input",
            "malformed and invalid bodies on v2 infer and v1 predict",
            "400 each (413 for a shape over the instance limit)",
        )
        async with self.client() as client:
            for _ in range(self.sizes.bad_input_rounds):
                for path, bodies in (
                    (f"/v2/models/{MODEL}/infer", BAD_V2),
                    (f"/v1/models/{MODEL}/predict", BAD_PREDICT),
                ):
                    for body in bodies:
                        content = body if isinstance(body, bytes) else json.dumps(body).encode()
                        await _httpx_answer(
                            outcome,
                            client,
                            "POST",
                            path,
                            {400, 413},
                            content=content,
                            headers={"Content-Type": "application/json"},
                        )
        return outcome

    async def content_type(self) -> Outcome:
        outcome = Outcome(
            "content-type",
            "cross-origin 'simple' POSTs: text/plain, form encodings, a typeless body with Origin",
            "415 each; a typeless body without Origin (Triton's JSON client) and binary-extension bodies 200",
        )
        body = ctr_body(self.rng, 1)
        async with self.client() as client:
            for content_type in (
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x",
            ):
                for path in (f"/v2/models/{MODEL}/infer", f"/v1/models/{MODEL}/predict"):
                    await _httpx_answer(
                        outcome,
                        client,
                        "POST",
                        path,
                        {415},
                        content=body,
                        headers={"Content-Type": content_type, "Origin": "http://evil.example"},
                    )
            await _httpx_answer(
                outcome,
                client,
                "POST",
                f"/v2/models/{MODEL}/infer",
                {415},
                content=body,
                headers={"Origin": "http://evil.example"},
            )
            await _httpx_answer(outcome, client, "POST", f"/v2/models/{MODEL}/infer", {200}, content=body)
            dense = np.ones((1, 13), "<f4").tobytes()
            ids = np.ones((1, 26), "<i8").tobytes()
            header = json.dumps(
                {
                    "inputs": [
                        {
                            "name": "dense",
                            "shape": [1, 13],
                            "datatype": "FP32",
                            "parameters": {"binary_data_size": len(dense)},
                        },
                        {
                            "name": "categorical",
                            "shape": [1, 26],
                            "datatype": "INT64",
                            "parameters": {"binary_data_size": len(ids)},
                        },
                    ]
                }
            ).encode()
            await _httpx_answer(
                outcome,
                client,
                "POST",
                f"/v2/models/{MODEL}/infer",
                {200},
                content=header + dense + ids,
                headers={
                    "Inference-Header-Content-Length": str(len(header)),
                    "Content-Type": "application/octet-stream",
                },
            )
        return outcome

    async def traversal(self) -> Outcome:
        outcome = Outcome(
            "path-traversal",
            "../ and encoded variants against /static and model names",
            "404/400/405, never a file from outside service/static",
        )
        paths = [
            "/static/../../../../etc/passwd",
            "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/static//etc/passwd",
            "/static/..\\..\\etc\\passwd",
            "/static/%252e%252e/etc/passwd",
            "/v2/models/..%2f..%2f..%2fetc%2fpasswd",
            "/v2/models/../../etc/passwd/ready",
            "/static/../config.py",
            "/static/..%2fconfig.py",
        ]
        async with self.client() as client:
            for path in paths:
                response = await _httpx_answer(outcome, client, "GET", path, {400, 404, 405})
                if response is not None and (b"root:" in response.content or b"pydantic" in response.content):
                    outcome.unexpected.append(f"{path}: leaked a file")
            for path in ("/v2/models/..%2f..%2fetc/infer", "/v1/models/%2e%2e/predict"):
                await _httpx_answer(outcome, client, "POST", path, {400, 404}, json={"inputs": []})
        return outcome

    async def admin_auth(self) -> Outcome:
        outcome = Outcome(
            "admin-auth",
            "management endpoints without, with wrong, empty or non-bearer tokens",
            "401 each (403 when off); 405 for GET",
        )
        async with self.client() as client:
            for path in (
                "/v2/repository/index",
                f"/v2/repository/models/{MODEL}/unload",
                f"/v2/repository/models/{MODEL}/load",
            ):
                for headers in (
                    {},
                    {"Authorization": "Bearer wrong"},
                    {"Authorization": "Bearer"},
                    {"Authorization": f"Basic {ADMIN_TOKEN}"},
                    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
                ):
                    await _httpx_answer(outcome, client, "POST", path, {401}, headers=headers)
                await _httpx_answer(outcome, client, "GET", path, {405})
        return outcome

    async def methods_and_malformed(self) -> Outcome:
        outcome = Outcome(
            "methods-malformed-http",
            "wrong methods on inference routes; unparsable HTTP",
            "405 / 400, each counted in robeserve_http_responses_total",
        )
        before = self.service.metrics()
        async with self.client() as client:
            for method in ("DELETE", "PUT", "PATCH", "GET"):
                await _httpx_answer(outcome, client, method, f"/v2/models/{MODEL}/infer", {405})
        garbage = [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
            b"POST /v2 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"GET /\x00 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
        ]
        for data in garbage:
            outcome.sent += 1
            connection = await Raw.open(self.service.port)
            try:
                status, headers, _ = await connection.send(data, 5.0)
                outcome.answer(status, headers, {400, 404, 405, 505})
            except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
                outcome.timeouts += 1
            finally:
                connection.close()
        await asyncio.sleep(0.2)
        after = self.service.metrics()
        counted_405 = metric_sum(after, "robeserve_http_responses_total", code="405") - metric_sum(
            before, "robeserve_http_responses_total", code="405"
        )
        counted_400 = metric_sum(
            after, "robeserve_http_responses_total", route="malformed", code="400"
        ) - metric_sum(before, "robeserve_http_responses_total", route="malformed", code="400")
        outcome.extra = {
            "counted_405": counted_405,
            "counted_malformed_400": counted_400,
            "sent_405": outcome.codes[405],
            "sent_400": outcome.codes[400],
        }
        if counted_405 != outcome.codes[405] or counted_400 != outcome.codes[400]:
            outcome.unexpected.append(
                f"counted 405/400 {counted_405}/{counted_400} of {outcome.codes[405]}/{outcome.codes[400]}"
            )
        return outcome

    async def unknown_names(self) -> Outcome:
        count = self.sizes.unknown_names
        outcome = Outcome(
            "unknown-names",
            f"{count} requests naming random models and versions",
            "404 each; 0 new metric series",
        )
        self.service_before_names = self.service.series_names()
        series_before = len(self.service_before_names)
        body = ctr_body(self.rng, 1)

        def path(index: int) -> tuple[str, str]:
            token = f"{random.getrandbits(48):012x}"
            return [
                ("POST", f"/v2/models/{MODEL}/versions/{token}/infer"),
                ("POST", f"/v2/models/m{token}/infer"),
                ("POST", f"/v2/models/m{token}/versions/{token}/infer"),
                ("POST", f"/v1/models/m{token}/predict"),
                ("GET", f"/v2/models/{MODEL}/versions/{token}/ready"),
                ("GET", f"/v2/models/m{token}"),
            ][index % 6]

        async with self.client(limits=httpx.Limits(max_connections=8)) as client:
            semaphore = asyncio.Semaphore(8)

            async def one(index: int) -> None:
                method, target = path(index)
                async with semaphore:
                    await _httpx_answer(
                        outcome,
                        client,
                        method,
                        target,
                        {404},
                        content=body if method == "POST" else None,
                        headers={"Content-Type": "application/json"},
                    )

            # One request of each kind first: each creates its route's 404 series (a fixed set: route
            # templates x status codes, and the known model with an empty version label).
            for index in range(6):
                await one(index)
            first = self.service.series_names()
            await asyncio.gather(*(one(index) for index in range(count)))
        after = self.service.series_names()
        outcome.extra = {
            "series_before": series_before,
            "series_after_one_of_each_kind": len(first),
            "series_created_by_one_of_each_kind": sorted(first - set(self.service_before_names)),
            "series_after": len(after),
            "series_added": len(after - first),
        }
        return outcome

    async def big_bodies(self) -> Outcome:
        outcome = Outcome(
            "big-bodies",
            f"bodies of exactly the {MAX_BODY // MIB} MiB limit (v2 and predict, too many instances), "
            "one byte over it (Content-Length), and over it with no Content-Length (chunked)",
            "413 each, liveness unaffected",
        )
        v2_path, predict_path = f"/v2/models/{MODEL}/infer", f"/v1/models/{MODEL}/predict"
        v2_max = fitting_body(ctr_body, MAX_BODY)
        predict_max = fitting_body(predict_body, MAX_BODY)
        over = padded_to(ctr_body(self.rng, 10), MAX_BODY + 1)
        durations: dict[str, list[float]] = {
            "v2_max": [],
            "predict_max": [],
            "over_length": [],
            "over_chunked": [],
        }
        async with self.client() as client:
            for _ in range(self.sizes.big_body_rounds):
                for key, path, body in (
                    ("v2_max", v2_path, v2_max),
                    ("predict_max", predict_path, predict_max),
                    ("over_length", v2_path, over),
                ):
                    started = time.perf_counter()
                    await _httpx_answer(
                        outcome,
                        client,
                        "POST",
                        path,
                        {413},
                        content=body,
                        headers={"Content-Type": "application/json"},
                    )
                    durations[key].append(time.perf_counter() - started)

                async def chunks() -> Any:
                    for start in range(0, len(over), MIB):
                        yield over[start : start + MIB]

                started = time.perf_counter()
                await _httpx_answer(
                    outcome,
                    client,
                    "POST",
                    v2_path,
                    {413},
                    content=chunks(),
                    headers={"Content-Type": "application/json"},
                )
                durations["over_chunked"].append(time.perf_counter() - started)
                await asyncio.sleep(0.5)
        outcome.extra = {
            "seconds_to_413": {key: [round(v, 3) for v in values] for key, values in durations.items()},
            "body_bytes": {"max": MAX_BODY, "over": MAX_BODY + 1},
        }
        return outcome

    async def slow_bodies(self) -> Outcome:
        count = self.sizes.slow_connections
        outcome = Outcome(
            "slow-bodies",
            f"{count} connections sending their body at 1 byte/s",
            f"408 after the {BODY_TIMEOUT_S:g} s body timeout, connection closed",
        )
        body = ctr_body(self.rng, 1)
        head = post(f"/v2/models/{MODEL}/infer", body)[: -len(body)]

        async def one() -> None:
            outcome.sent += 1
            connection = await Raw.open(self.service.port)
            try:
                connection.writer.write(head)
                reader = asyncio.create_task(connection.response_head(BODY_TIMEOUT_S + 20))
                for byte in body:
                    if reader.done():
                        break
                    connection.writer.write(bytes([byte]))
                    await asyncio.sleep(1.0)
                status, headers = await reader
                outcome.answer(status, headers, {408})
                # The server closes with trickled bytes unread, so the kernel may answer with a reset that
                # overtakes the rest of the response: a reset after the status line is a close too.
                try:
                    length = int(headers.get("content-length", "0"))
                    await asyncio.wait_for(connection.reader.readexactly(length), 5.0)
                    closed = await asyncio.wait_for(connection.reader.read(1), 5.0) == b""
                except (ConnectionResetError, asyncio.IncompleteReadError):
                    closed = True
                outcome.extra["closed_by_server"] = outcome.extra.get("closed_by_server", 0) + int(closed)
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                outcome.timeouts += 1
            finally:
                connection.close()

        await asyncio.gather(*(one() for _ in range(count)))
        return outcome

    async def aborted_bodies(self) -> Outcome:
        count = self.sizes.aborted_connections
        outcome = Outcome(
            "client-aborts",
            f"{count} clients closing the connection halfway through the body",
            "counted as 499, one INFO line each, no 500, no traceback",
        )
        before = self.service.metrics()
        log_before = self.service.log()
        body = ctr_body(self.rng, 4)
        data = post(f"/v2/models/{MODEL}/infer", body)

        async def one() -> None:
            outcome.sent += 1
            connection = await Raw.open(self.service.port)
            connection.writer.write(data[: len(data) - len(body) // 2])
            await connection.writer.drain()
            await asyncio.sleep(0.3)
            connection.writer.transport.abort()

        await asyncio.gather(*(one() for _ in range(count)))
        await asyncio.sleep(1.0)
        after = self.service.metrics()
        log = self.service.log()[len(log_before) :]

        def delta(**labels: str) -> float:
            return metric_sum(after, "robeserve_requests_total", **labels) - metric_sum(
                before, "robeserve_requests_total", **labels
            )

        outcome.extra = {
            "counted_499": delta(code="499"),
            "counted_500": delta(code="500"),
            "log_lines_client_closed": log.count("client closed the connection"),
            "tracebacks": log.count("Traceback"),
            "log_lines": len(log.splitlines()),
        }
        outcome.codes[499] += int(outcome.extra["counted_499"])
        if (
            outcome.extra["counted_499"] != count
            or outcome.extra["counted_500"]
            or outcome.extra["tracebacks"]
        ):
            outcome.unexpected.append(f"aborts counted {outcome.extra}")
        return outcome

    async def _closed_loop(self, clients: int, seconds: float, data: bytes, outcome: Outcome) -> int:
        deadline = time.monotonic() + seconds
        ok = 0

        async def one() -> None:
            nonlocal ok
            connection = await Raw.open(self.service.port)
            try:
                while time.monotonic() < deadline:
                    outcome.sent += 1
                    try:
                        status, headers, _ = await connection.send(data)
                    except TimeoutError:
                        outcome.timeouts += 1
                        connection.close()
                        connection = await Raw.open(self.service.port)
                        continue
                    outcome.answer(status, headers, {200, 503})
                    ok += status == 200
                    if headers.get("connection") == "close":
                        connection.close()
                        connection = await Raw.open(self.service.port)
            finally:
                connection.close()

        await asyncio.gather(*(one() for _ in range(clients)))
        return ok

    async def overload(self) -> tuple[Outcome, Outcome]:
        seconds = self.sizes.overload_s
        data = post(f"/v2/models/{MODEL}/infer", ctr_body(self.rng, MAX_INSTANCES))
        calm = Outcome(
            "overload-2-clients",
            f"2 closed-loop clients, {MAX_INSTANCES}-instance v2 JSON requests",
            "200 each (the goodput baseline)",
        )
        started = time.monotonic()
        ok_calm = await self._closed_loop(2, seconds, data, calm)
        calm.seconds = time.monotonic() - started
        calm.extra = {"goodput_per_s": round(ok_calm / calm.seconds, 2)}
        flood = Outcome(
            "overload-32-clients",
            f"32 clients retrying at once, same requests, queue of {QUEUE_SIZE}",
            "200 or 503 with Retry-After; goodput >= 80% of 2 clients",
        )
        started = time.monotonic()
        ok_flood = await self._closed_loop(32, seconds, data, flood)
        flood.seconds = time.monotonic() - started
        flood.extra = {
            "goodput_per_s": round(ok_flood / flood.seconds, 2),
            "goodput_ratio": round((ok_flood / flood.seconds) / max(1e-9, ok_calm / calm.seconds), 3),
        }
        return calm, flood

    async def reload_under_load(self) -> Outcome:
        outcome = Outcome(
            "reload-under-load",
            f"{self.sizes.reload_clients} clients while a good version 2 and a corrupt version 3 appear",
            "every request 200; version 3 refused by name, counted, version 2 keeps serving",
        )
        stop = asyncio.Event()
        versions: Counter[str] = Counter()
        body = ctr_body(self.rng, 1)

        async def load(client: httpx.AsyncClient) -> None:
            while not stop.is_set():
                response = await _httpx_answer(
                    outcome,
                    client,
                    "POST",
                    f"/v2/models/{MODEL}/infer",
                    {200},
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if response is not None and response.status_code == 200:
                    versions[response.json()["model_version"]] += 1

        async with self.client() as client, self.client() as admin:
            tasks = [asyncio.create_task(load(client)) for _ in range(self.sizes.reload_clients)]
            await asyncio.sleep(1.0)
            write_entry(
                self.repository,
                MODEL,
                "2",
                ctr_model(CtrShape(), seed=2),
                "ctr",
                preprocessing={"dense": "log1p_clip0"},
            )
            deadline = time.monotonic() + 30
            while versions["2"] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            staging = Path(tempfile.mkdtemp(prefix="abuse-staging-"))
            corrupt = write_entry(staging, MODEL, "3", ctr_model(CtrShape(), seed=3), "ctr")
            (corrupt / "model.onnx").write_bytes(b"this is not an onnx file")
            manifest = json.loads((corrupt / "model.json").read_text())
            manifest["onnx_sha256"] = "0" * 64
            (corrupt / "model.json").write_text(json.dumps(manifest))
            shutil.move(str(corrupt), self.repository / MODEL / "3")
            await asyncio.sleep(1.5)
            refused = await admin.post(
                f"/v2/repository/models/{MODEL}/load", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            await asyncio.sleep(1.0)
            stop.set()
            await asyncio.gather(*tasks)
            shutil.rmtree(staging, ignore_errors=True)
        failures = metric_sum(
            self.service.metrics(), "robeserve_model_load_failures_total", model=MODEL, version="3"
        )
        error = refused.json().get("error", "")
        outcome.extra = {
            "answers_by_version": dict(versions),
            "load_status": refused.status_code,
            "load_error": error,
            "load_failures_metric_v3": failures,
        }
        if refused.status_code != 400 or "version 3" not in error or "version 2 keeps serving" not in error:
            outcome.unexpected.append(f"load answer {refused.status_code} {error!r}")
        if failures < 1 or versions["2"] == 0:
            outcome.unexpected.append("version 2 never served or the refusal was not counted")
        return outcome

    async def sigterm_drain(self) -> Outcome:
        clients = self.sizes.drain_clients
        outcome = Outcome(
            "sigterm-drain",
            f"SIGTERM while {clients} keep-alive clients send requests; a load balancer (readiness polled "
            "every 100 ms) stops new connections once readiness is 503",
            "every request sent gets its answer (200), draining answers carry Connection: close",
        )
        body = ctr_body(self.rng, 1)
        data = post(f"/v2/models/{MODEL}/infer", body)
        closes = 0
        routed = True  # the load balancer still sends new connections here
        after_sigterm = 0

        async def balancer() -> None:
            nonlocal routed
            async with httpx.AsyncClient(base_url=self.service.url, timeout=2.0) as client:
                while routed:
                    try:
                        routed = (await client.get("/v2/health/ready")).status_code == 200
                    except httpx.TransportError:
                        routed = False
                    await asyncio.sleep(0.1)

        async def one() -> None:
            nonlocal closes, after_sigterm
            connection: Raw | None = None
            while True:
                if connection is None:
                    if not routed:
                        return
                    try:
                        connection = await Raw.open(self.service.port)
                    except OSError:
                        outcome.refused += 1
                        return
                outcome.sent += 1
                after_sigterm += signalled
                try:
                    status, headers, _ = await connection.send(data)
                except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
                    outcome.lost += 1
                    outcome.unexpected.append(f"lost: {type(exc).__name__}")
                    connection.close()
                    connection = None
                    continue
                outcome.answer(status, headers, {200})
                if headers.get("connection") == "close":
                    closes += 1
                    connection.close()
                    connection = None

        signalled = False
        watcher = asyncio.create_task(balancer())
        tasks = [asyncio.create_task(one()) for _ in range(clients)]
        await asyncio.sleep(1.0)
        self.service.process.send_signal(signal.SIGTERM)
        signalled = True
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        code = await asyncio.to_thread(self.service.process.wait, 60)
        await watcher
        outcome.extra = {
            "exit_code": code,
            "requests_after_sigterm": after_sigterm,
            "connection_close_answers": closes,
            "log_drained": "all queues drained" in self.service.log(),
        }
        return outcome


async def run_attacks(service: Service, sizes: Sizes, repository: Path) -> dict[str, Any]:
    prober = Prober(service.port)
    async with httpx.AsyncClient(base_url=service.url, timeout=REQUEST_TIMEOUT_S) as client:  # warm-up
        for rows in (1, 64, MAX_INSTANCES):
            body = ctr_body(np.random.default_rng(rows), rows)
            for _ in range(5):
                response = await client.post(
                    f"/v2/models/{MODEL}/infer", content=body, headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
    warm = {
        "rss_mib": round(service.rss_mib(), 1),
        "main_rss_mib": round(service.main_rss_mib(), 1),
        "series": service.series(),
    }
    progress = tqdm(total=12, desc="abuse", unit="attack", file=sys.stderr)
    suite = Suite(service, sizes, repository, progress)
    steps: list[Callable[[], Awaitable[Outcome | tuple[Outcome, Outcome]]]] = [
        suite.bad_input,
        suite.content_type,
        suite.traversal,
        suite.admin_auth,
        suite.methods_and_malformed,
        suite.unknown_names,
        suite.big_bodies,
        suite.slow_bodies,
        suite.aborted_bodies,
        suite.overload,
        suite.reload_under_load,
    ]
    windows: list[tuple[Outcome, float, float]] = []
    for step in steps:
        started = time.monotonic()
        result = await step()
        ended = time.monotonic()
        for outcome in result if isinstance(result, tuple) else (result,):
            outcome.seconds = outcome.seconds or round(ended - started, 2)
            outcome.rss_mib = round(service.rss_mib(), 1)
            outcome.series = service.series()
            windows.append((outcome, started, ended))
        if isinstance(result, tuple):  # the two overload phases ran one after the other
            half = started + (ended - started) / 2
            windows[-2] = (windows[-2][0], started, half)
            windows[-1] = (windows[-1][0], half, ended)
        progress.update()
    final = {
        "rss_mib": round(service.rss_mib(), 1),
        "main_rss_mib": round(service.main_rss_mib(), 1),
        "series": service.series(),
    }
    samples = prober.stop()
    for outcome, start, end in windows:
        outcome.liveness_ms = latency_summary(samples, start, end)
    drain = await suite.sigterm_drain()
    progress.update()
    progress.close()
    outcomes = [outcome for outcome, _, _ in windows] + [drain]
    return {"warm": warm, "final": final, "outcomes": outcomes, "log": service.log()}


def check_targets(result: dict[str, Any], sizes: Sizes) -> list[dict[str, Any]]:
    by_name = {outcome.name: outcome for outcome in result["outcomes"]}
    summaries = [outcome.summary() for outcome in result["outcomes"]]
    unexpected_5xx = sum(item["unexpected_5xx"] for item in summaries)
    missing = sum(item["missing_retry_after"] for item in summaries)
    lost = by_name["reload-under-load"].lost + by_name["sigterm-drain"].lost
    not_ok_reload = sum(n for code, n in by_name["reload-under-load"].codes.items() if code != 200)
    not_ok_drain = sum(n for code, n in by_name["sigterm-drain"].codes.items() if code != 200)
    series_added = by_name["unknown-names"].extra["series_added"]
    flood = by_name["overload-32-clients"]
    targets = [
        ("0 unexpected 5xx", "0", unexpected_5xx, unexpected_5xx == 0),
        ("every 503 carries Retry-After", "0 without", missing, missing == 0),
        (
            "0 requests lost or failed during reload and drain",
            "0",
            lost + not_ok_reload + not_ok_drain,
            lost + not_ok_reload + not_ok_drain == 0,
        ),
        (
            f"{sizes.unknown_names} unknown-model/version requests add 0 series",
            "0",
            series_added,
            series_added == 0,
        ),
    ]
    for name in ("big-bodies", "overload-32-clients"):
        live = by_name[name].liveness_ms
        targets.append(
            (
                f"liveness p99 during {name}",
                "<= 100 ms",
                live.get("p99_ms"),
                live.get("probes", 0) > 0 and live["p99_ms"] <= 100,
            )
        )
        targets.append(
            (
                f"liveness max during {name}",
                "<= 500 ms",
                live.get("max_ms"),
                live.get("probes", 0) > 0 and live["max_ms"] <= 500,
            )
        )
    ratio = flood.extra["goodput_ratio"]
    targets.append(("goodput 32 clients / 2 clients", ">= 0.80", ratio, ratio >= 0.8))
    growth = result["final"]["rss_mib"] / result["warm"]["rss_mib"] - 1
    targets.append(("RSS after the suite vs after warm-up", "<= +20%", f"{growth:+.1%}", growth <= 0.2))
    return [
        {"target": name, "wanted": wanted, "measured": value, "met": bool(met)}
        for name, wanted, value, met in targets
    ]


def run_suite(short: bool, work: Path) -> dict[str, Any]:
    """Start a service, run every attack, return the results (with targets checked)."""
    sizes = SHORT if short else FULL
    repository = build_repository(work / "models")
    service = Service(repository, work / "service.log")
    load_before = os.getloadavg()
    try:
        service.wait_ready(120)
        result = asyncio.run(run_attacks(service, sizes, repository))
    finally:
        service.stop()
    result["targets"] = check_targets(result, sizes)
    result["sizes"] = asdict(sizes)
    result["load_average_before"] = [round(value, 2) for value in load_before]
    result["load_average_after"] = [round(value, 2) for value in os.getloadavg()]
    return result


def to_document(result: dict[str, Any], command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "load_average_before": result["load_average_before"],
        "load_average_after": result["load_average_after"],
        "sizes": result["sizes"],
        "service": {
            "max_queue_size": QUEUE_SIZE,
            "max_body_bytes": MAX_BODY,
            "max_instances": MAX_INSTANCES,
            "body_timeout_s": BODY_TIMEOUT_S,
            "intra_op_threads": 1,
            "decode_workers": 2,
        },
        "warm": result["warm"],
        "final": result["final"],
        "attacks": [outcome.summary() for outcome in result["outcomes"]],
        "targets": result["targets"],
    }


def to_markdown(document: dict[str, Any]) -> str:
    lines = [
        "# Abuse suite",
        "",
        f"Command: `{document['command']}`. Machine: {document['machine']}; load average before/after "
        f"{document['load_average_before']} / {document['load_average_after']} (a shared 2-core VM).",
        "",
        "## Targets",
        "",
        "| target | wanted | measured | met |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {t['target']} | {t['wanted']} | {t['measured']} | {'yes' if t['met'] else '**no**'} |"
        for t in document["targets"]
    ]
    lines += [
        "",
        "## Attacks",
        "",
        "| attack | expected | sent | 2xx | 4xx | 5xx | timeouts | lost | codes "
        "| liveness p50 / p99 / max ms | RSS MiB | series |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for attack in document["attacks"]:
        live = attack["liveness_ms"]
        liveness = f"{live['p50_ms']} / {live['p99_ms']} / {live['max_ms']}" if live.get("probes") else "-"
        codes = ", ".join(f"{code}: {n}" for code, n in attack["codes"].items())
        cells = [
            f"**{attack['name']}**: {attack['attack']}",
            attack["expected"],
            *(str(attack[key]) for key in ("sent", "2xx", "4xx", "5xx", "timeouts", "lost")),
            codes,
            liveness,
            str(attack["rss_mib"]),
            str(attack["series"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Details per attack (extra figures, anything unexpected) are in `abuse.json`.", ""]
    lines += [
        f"- {a['name']}: {json.dumps(a['extra'])}"
        + (f"; unexpected: {a['unexpected']}" if a["unexpected"] else "")
        for a in document["attacks"]
    ]
    lines += [
        "",
        f"RSS (service + decode workers) after warm-up {document['warm']['rss_mib']} MiB, "
        f"after the suite {document['final']['rss_mib']} MiB; metric series {document['warm']['series']} -> "
        f"{document['final']['series']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.abuse", description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="the short version (what make test runs)")
    parser.add_argument("--out", type=Path, help="write <out>.json and <out>.md (e.g. docs/benchmarks/abuse)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="abuse-") as work:
        result = run_suite(args.short, Path(work))
    command = (
        "python -m loadtest.abuse"
        + (" --short" if args.short else "")
        + (f" --out {args.out}" if args.out else "")
    )
    document = to_document(result, command)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(to_markdown(document))
    for target in document["targets"]:
        logger.info(
            "%-60s %-10s %-12s %s",
            target["target"],
            target["wanted"],
            target["measured"],
            "met" if target["met"] else "NOT MET",
        )
    return 0 if all(target["met"] for target in document["targets"]) else 1


if __name__ == "__main__":
    sys.exit(main())
