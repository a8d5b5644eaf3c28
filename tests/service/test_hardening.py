"""Issue 15 fixes, each on its own: bounded labels, media types, extra fields, counted 405/413/400/499,
body timeout, readiness with nothing serving, failed loads in /metrics, security headers, admission."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import (
    ADMIN_TOKEN,
    ServiceProcess,
    copy_repository,
    ctr_batch,
    ctr_infer_body,
    metric_value,
)

from loadtest.synthetic import CtrShape, ctr_model, write_entry
from service.batching import BatchConfig, BatchQueue
from service.decoding import Decoder, decode_predict_body
from service.errors import PayloadTooLarge, QueueFull
from service.manager import ModelManager
from service.repository import read_manifest
from service.runtime import RuntimeConfig

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _series(client: httpx.Client) -> set[str]:
    return {
        line.rsplit(" ", 1)[0]
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("robeserve_")
    }


def _body(rows: int = 1) -> dict:
    dense, categorical = ctr_batch(np.random.default_rng(rows), rows)
    return ctr_infer_body(dense, categorical)


def test_unknown_models_and_versions_add_no_series(client: httpx.Client) -> None:
    def burst(token: str) -> None:
        assert client.post(f"/v2/models/ctr/versions/{token}/infer", json=_body()).status_code == 404
        assert client.post(f"/v2/models/{token}/infer", json=_body()).status_code == 404
        assert client.post(f"/v1/models/{token}/predict", json={"instances": []}).status_code == 404

    burst("warm")
    _series(client)  # the first scrape creates the /metrics response series
    before = _series(client)
    for index in range(100):
        burst(f"x{index}")
    after = _series(client)
    assert after == before
    assert not any("x1" in name for name in after)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Origin": "http://elsewhere.example"}, 415),
        ({"Content-Type": "application/json; charset=utf-8"}, 200),
        ({}, 200),  # Triton's JSON client sends no Content-Type (and no Origin)
    ],
)
def test_inference_needs_a_json_media_type(
    client: httpx.Client, headers: dict[str, str], status: int
) -> None:
    content = json.dumps(_body()).encode()
    response = client.post("/v2/models/ctr/infer", content=content, headers=headers)
    assert response.status_code == status, response.text
    predict = client.post("/v1/models/ctr/predict", content=b'{"instances": []}', headers=headers)
    assert predict.status_code == (415 if status == 415 else 400)


def test_extra_top_level_fields_are_400(client: httpx.Client) -> None:
    response = client.post("/v2/models/ctr/infer", json={**_body(), "surprise": 1})
    assert response.status_code == 400 and "surprise" in response.json()["error"]
    predict = client.post("/v1/models/loc/predict", json={"instances": [{"rssi": [100] * 520}], "more": 1})
    assert predict.status_code == 400


def test_405_413_and_malformed_http_are_counted(client: httpx.Client, service: ServiceProcess) -> None:
    def count(**labels: str) -> float:
        return metric_value(client.get("/metrics").text, "robeserve_http_responses_total", **labels)

    before_405 = count(route="/v2/models/{model_name}/infer", code="405")
    before_413 = metric_value(
        client.get("/metrics").text, "robeserve_requests_total", model="ctr", code="413"
    )
    before_400 = count(route="malformed", code="400")
    assert client.delete("/v2/models/ctr/infer").status_code == 405
    huge = b"{" + b" " * (1 << 20) + b"}"
    assert client.post("/v2/models/ctr/infer", content=huge).status_code == 413
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    time.sleep(0.1)
    assert count(route="/v2/models/{model_name}/infer", code="405") == before_405 + 1
    after_413 = metric_value(client.get("/metrics").text, "robeserve_requests_total", model="ctr", code="413")
    assert after_413 == before_413 + 1
    assert count(route="malformed", code="400") == before_400 + 1


def test_security_headers(client: httpx.Client) -> None:
    for path in ("/", "/static/status.js"):
        headers = client.get(path).headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    api = client.get("/v2").headers
    assert api["x-content-type-options"] == "nosniff" and "content-security-policy" not in api


def test_unloaded_model_503_has_retry_after_and_readiness_needs_a_serving_model(
    start_service, model_repository: Path, tmp_path: Path
) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    service = start_service(repository, ROBESERVE_ADMIN_TOKEN=ADMIN_TOKEN, ROBESERVE_RETRY_AFTER_S="3")
    with service.client() as client:
        assert client.post("/v2/repository/models/ctr/unload", headers=AUTH).status_code == 200
        infer = client.post("/v2/models/ctr/infer", json=_body())
        assert infer.status_code == 503 and infer.headers["retry-after"] == "3"
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "no model is serving" in ready.json()["error"]
        assert ready.headers["retry-after"] == "3"


def test_empty_repository_is_not_ready(start_service, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    service = start_service(tmp_path / "empty", wait="/v2/health/live")
    with service.client() as client:
        for _ in range(50):
            ready = client.get("/v2/health/ready")
            if "empty" in ready.text:
                break
            time.sleep(0.1)
        assert ready.status_code == 503 and "is empty" in ready.json()["error"]


def test_body_timeout_is_408_and_closes(start_service, model_repository: Path, tmp_path: Path) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    service = start_service(repository, ROBESERVE_BODY_TIMEOUT_S="0.5")
    body = json.dumps(_body()).encode()
    head = (
        f"POST /v2/models/ctr/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(head + body[:10])
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()


def test_client_abort_is_499_logged_once(start_service, model_repository: Path, tmp_path: Path) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    service = start_service(repository)
    body = json.dumps(_body()).encode()
    head = (
        f"POST /v2/models/ctr/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", service.port)) as sock:
            sock.sendall(head + body[:10])
            time.sleep(0.2)
    time.sleep(0.5)
    with service.client() as client:
        text = client.get("/metrics").text
    assert metric_value(text, "robeserve_requests_total", model="ctr", code="499") == 3
    assert metric_value(text, "robeserve_requests_total", model="ctr", code="500") == 0
    log = service.log()
    assert log.count("client closed the connection") == 3 and "Traceback" not in log


def test_failed_load_is_counted_and_the_error_names_the_newest_version(
    model_repository: Path, tmp_path: Path
) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    for version in ("3", "4", "5"):
        broken = write_entry(repository, "ctr", version, ctr_model(CtrShape(), seed=9), "ctr")
        (broken / "model.onnx").write_bytes(b"not an onnx file")
    (repository / "ctr" / "1" / "model.onnx").write_bytes(b"broken too")
    manager = ModelManager(repository, RuntimeConfig(("CPUExecutionProvider",)), BatchConfig(8, 100, 8))

    async def load() -> str:
        await manager.refresh()
        return manager.entries["ctr"].reason

    reason = asyncio.run(load())
    assert reason.startswith("version 5 refused"), reason
    from prometheus_client import generate_latest

    text = generate_latest().decode()
    for version in ("1", "3", "4", "5"):
        assert metric_value(text, "robeserve_model_load_failures_total", model="ctr", version=version) >= 1


def test_reservations_count_against_the_queue() -> None:
    async def scenario() -> None:
        queue = BatchQueue(lambda inputs: inputs, BatchConfig(8, 1000, 2), "q")
        queue.reserve()
        queue.reserve()
        with pytest.raises(QueueFull):
            queue.check_room()
        queue.release()
        future = queue.submit({"x": np.zeros((1, 1))})  # the free place
        with pytest.raises(QueueFull):
            queue.submit({"x": np.zeros((1, 1))})
        done = queue.submit({"x": np.zeros((1, 1))}, reserved=True)  # the held place
        queue.start()
        await asyncio.gather(future, done)
        assert queue.reserved == 0
        await queue.close()

    asyncio.run(scenario())


def test_large_bodies_decode_in_a_worker_process(model_repository: Path) -> None:
    manifest = read_manifest(model_repository / "ctr" / "1")
    instances = [{"dense": [1.0] * 13, "categorical": [1] * 26} for _ in range(600)]
    body = json.dumps({"instances": instances}).encode()
    decoder = Decoder(workers=1, inline_max_bytes=1024)

    async def run() -> None:
        decoder.start()
        tensors = await decoder.run(decode_predict_body, body, manifest, 1024)
        assert tensors["categorical"].shape == (600, 26)
        with pytest.raises(PayloadTooLarge, match="600 instances exceed the limit of 10"):
            await decoder.run(decode_predict_body, body, manifest, 10)

    try:
        asyncio.run(run())
    finally:
        decoder.close()
