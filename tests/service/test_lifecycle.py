"""Service life: full queues (503 + Retry-After), failed loads and readiness, SIGTERM drain, admin off."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import ServiceProcess, copy_repository, ctr_batch, ctr_infer_body

from loadtest.synthetic import CtrShape, ctr_model, write_entry
from service.config import Settings
from service.state import AppState


async def _burst(url: str, count: int) -> list[httpx.Response]:
    dense, categorical = ctr_batch(np.random.default_rng(5), count)
    async with httpx.AsyncClient(
        base_url=url, timeout=30.0, limits=httpx.Limits(max_connections=count)
    ) as client:
        return await asyncio.gather(
            *(
                client.post(
                    "/v2/models/ctr/infer", json=ctr_infer_body(dense[i : i + 1], categorical[i : i + 1])
                )
                for i in range(count)
            )
        )


def test_full_queue_answers_503_with_retry_after(
    start_service, model_repository: Path, tmp_path: Path
) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    service = start_service(
        repository,
        ROBESERVE_MAX_QUEUE_DELAY_US="400000",
        ROBESERVE_MAX_QUEUE_SIZE="4",
        ROBESERVE_QUEUE_WAIT_S="0",
        ROBESERVE_RETRY_AFTER_S="2",
        ROBESERVE_LOG_FORMAT="json",
    )
    responses = asyncio.run(_burst(service.url, 20))
    codes = [response.status_code for response in responses]
    assert set(codes) == {200, 503} and codes.count(200) >= 4, codes
    rejected = next(response for response in responses if response.status_code == 503)
    assert rejected.headers["Retry-After"] == "2" and "waiting" in rejected.json()["error"]
    with service.client() as client:  # admin endpoints are off without a token
        response = client.post("/v2/repository/models/ctr/unload", headers={"Authorization": "Bearer x"})
        assert response.status_code == 403 and "ROBESERVE_ADMIN_TOKEN" in response.json()["error"]
    records = [json.loads(line) for line in service.log().splitlines() if line.startswith("{")]
    assert any(record["logger"] == "service.manager" and "serving" in record["message"] for record in records)
    assert any(record["logger"].startswith("uvicorn") for record in records)


def test_corrupt_model_is_refused_and_keeps_readiness_503(
    start_service, model_repository: Path, tmp_path: Path
) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr", "loc"])
    manifest_path = repository / "loc" / "1" / "model.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["onnx_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    service = start_service(repository, wait="/v2/models/ctr/ready")
    with service.client() as client:
        ready = client.get("/v2/health/ready")
        assert ready.status_code == 503 and "loc" in ready.json()["error"]
        assert "models refused" in ready.json()["error"] and "sha256 mismatch" in ready.json()["error"]
        assert client.get("/v2/models/loc/ready").status_code == 503
        infer = client.post("/v1/models/loc/predict", json={"instances": [{"rssi": [100] * 520}]})
        assert infer.status_code == 503 and "sha256 mismatch" in infer.json()["error"]
        status = {model["name"]: model for model in client.get("/v1/status").json()["models"]}
        assert status["loc"]["state"] == "FAILED" and "sha256 mismatch" in status["loc"]["reason"]
        assert status["ctr"]["state"] == "READY"
    assert "model 'loc' version 1 refused: sha256 mismatch" in service.log()


def test_sigterm_drains_in_flight_requests(start_service, model_repository: Path, tmp_path: Path) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    service: ServiceProcess = start_service(
        repository, ROBESERVE_MAX_QUEUE_DELAY_US="600000", ROBESERVE_DRAIN_DELAY_S="1.0"
    )
    with ThreadPoolExecutor(max_workers=1) as pool:
        in_flight = pool.submit(asyncio.run, _burst(service.url, 8))
        time.sleep(0.3)  # the burst now waits in the batching queue (600 ms delay)
        service.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        with service.client() as client:
            ready = client.get("/v2/health/ready")
            assert ready.status_code == 503 and "shutting down" in ready.json()["error"]
            dense, categorical = ctr_batch(np.random.default_rng(1), 1)
            late = client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical))
            assert late.status_code == 200  # still served during the drain delay
            assert late.headers["connection"] == "close"  # clients move to another replica
        assert [response.status_code for response in in_flight.result(timeout=30)] == [200] * 8
    service.process.wait(timeout=30)
    assert service.process.returncode in (0, -signal.SIGTERM)
    assert "all queues drained" in service.log()


def test_readiness_waits_for_the_first_load(model_repository: Path) -> None:
    state = AppState.from_settings(Settings(repository=model_repository, poll_interval_s=0))

    async def load() -> list[bool]:
        seen = [state.ready]
        await state.manager.refresh()
        seen.append(state.ready)
        state.draining = True
        seen.append(state.ready)
        await state.manager.close()
        return seen

    assert asyncio.run(load()) == [False, True, False]
    assert sorted(state.manager.entries) == ["ctr", "ctr-2d", "loc"]


def test_older_version_serves_when_the_newest_is_broken(
    start_service, model_repository: Path, tmp_path: Path
) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    broken = write_entry(repository, "ctr", "2", ctr_model(CtrShape(), seed=9), "ctr")
    (broken / "model.onnx").write_bytes(b"not an onnx file")
    service = start_service(repository)
    with service.client() as client:
        assert client.get("/v2/models/ctr").json()["versions"] == ["1"]
        status = client.get("/v1/status").json()["models"][0]
        assert status["version"] == "1" and "version 2 refused" in status["reason"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--repository", "/nonexistent/models"], "is not a directory"),
        (["--port", "99999"], "port"),
        (["--log-format", "xml"], "invalid choice"),
        (["--max-batch-size", "zero"], "invalid int value"),
        (["--providers", "NoSuchExecutionProvider"], "not available"),
    ],
)
def test_cli_errors_are_one_line(
    args: list[str], message: str, model_repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from service.__main__ import main

    assert main(["--repository", str(model_repository), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
