"""A lean HTTP/1.1 load generator (asyncio streams, keep-alive, pre-encoded bodies).

A general-purpose client (httpx, aiohttp) spends more CPU per request than the server's own parsing; on a
small shared machine it would measure the client. This one only writes prepared bytes and reads
Content-Length bodies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    """Outcome of one load phase: successes, failures and per-request latencies (seconds)."""

    seconds: float
    ok: int = 0
    failed: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def build_request(host: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    """One complete POST request, ready to write."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{key}: {value}" for key, value in (headers or {"Content-Type": "application/json"}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def v2_ctr_body(dense: Any, categorical: Any) -> bytes:
    """A JSON v2 infer body for a CTR model: ``dense`` FP32 and ``categorical`` INT64 arrays (NumPy)."""
    tensors = [("dense", "FP32", dense), ("categorical", "INT64", categorical)]
    inputs = [
        {"name": name, "shape": list(array.shape), "datatype": datatype, "data": array.ravel().tolist()}
        for name, datatype, array in tensors
    ]
    return json.dumps({"inputs": inputs}).encode()


class Connection:
    """One keep-alive connection that sends prepared requests and reads their responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def _record(result: LoadResult, status: int, latency_s: float) -> None:
    result.statuses[status] = result.statuses.get(status, 0) + 1
    if status == 200:
        result.ok += 1
        result.latencies_s.append(latency_s)
    else:
        result.failed += 1


async def closed_loop(
    host: str, port: int, requests: list[bytes], clients: int, seconds: float
) -> LoadResult:
    """``clients`` connections, each sending its next request as soon as the previous one returns."""
    connections = [await Connection.open(host, port) for _ in range(clients)]
    result = LoadResult(seconds)
    deadline = time.perf_counter() + seconds

    async def client(index: int, connection: Connection) -> None:
        for request in itertools.islice(itertools.cycle(requests), index, None):
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            status, _ = await connection.send(request)
            _record(result, status, time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(i, connection) for i, connection in enumerate(connections)))
    result.seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return result


async def open_loop(
    host: str, port: int, requests: list[bytes], rate_per_s: float, seconds: float
) -> LoadResult:
    """Requests issued on a fixed schedule (``rate_per_s``), whatever the latency of earlier ones.

    Latency runs from the scheduled start, so time spent waiting for a free connection counts (no
    coordinated omission).
    """
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    result = LoadResult(seconds)
    total = int(rate_per_s * seconds)
    start = time.perf_counter() + 0.05

    async def one(index: int) -> None:
        scheduled = start + index / rate_per_s
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        connection = idle.get_nowait() if not idle.empty() else await Connection.open(host, port)
        status, _ = await connection.send(requests[index % len(requests)])
        _record(result, status, time.perf_counter() - scheduled)
        idle.put_nowait(connection)

    await asyncio.gather(*(one(index) for index in range(total)))
    while not idle.empty():
        idle.get_nowait().close()
    return result


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in [0, 1])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]
