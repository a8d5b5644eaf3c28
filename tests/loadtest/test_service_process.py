"""The benchmarks' service start-up (``loadtest.service_process``), and the two benchmarks that use it run
end to end on the CPU: ``loadtest.service_bench`` here, ``loadtest.gpu_serve`` in test_gpu_bench.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from loadtest.service_bench.run import BenchConfig, run_bench
from loadtest.service_process import ServiceNotReady, ServiceProcess, http_get
from loadtest.synthetic import CtrShape, ctr_model, write_entry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    model = ctr_model(CtrShape(), seed=1)
    write_entry(root, "ctr", "1", model, "ctr", preprocessing={"dense": "log1p_clip0"})
    return root


def test_starts_waits_and_stops(repository: Path, tmp_path: Path) -> None:
    env = {"ROBESERVE_POLL_INTERVAL_S": "0"}
    with ServiceProcess(repository, _free_port(), tmp_path / "service.log", env) as service:
        service.wait_ready(120)
        status, body = http_get(f"{service.url}/v2/models/ctr")
        assert status == 200 and json.loads(body)["name"] == "ctr"
    assert service.process.returncode is not None
    assert "Uvicorn running" in (tmp_path / "service.log").read_text()


def test_a_refused_model_stops_the_wait_at_once(repository: Path, tmp_path: Path) -> None:
    card = repository / "ctr" / "1" / "model.json"
    document = json.loads(card.read_text())
    document["onnx_sha256"] = "0" * 64
    card.write_text(json.dumps(document))
    service = ServiceProcess(repository, _free_port(), tmp_path / "service.log")
    with pytest.raises(ServiceNotReady, match=r"models refused.*sha256 mismatch"):
        service.wait_ready(120)
    assert service.process.returncode is not None  # stopped, not left running


def test_a_service_that_exits_is_reported_with_its_code(repository: Path, tmp_path: Path) -> None:
    service = ServiceProcess(repository, _free_port(), tmp_path / "service.log", args=["--placement", "gpu"])
    with pytest.raises(ServiceNotReady, match="exited with 2"):
        service.wait_ready(120)
    assert "unknown placement" in (tmp_path / "service.log").read_text()


def test_service_bench_runs_end_to_end(tmp_path: Path) -> None:
    config = BenchConfig(
        clients=2, samples_per_request=8, seconds=0.5, rounds=1, warmup_s=0.2, port=_free_port()
    )
    result = run_bench(config, tmp_path)
    assert result["http_samples_per_s"] > 0 and result["raw_samples_per_s"] > 0
    assert result["half_saturation"]["failed"] == 0
    log = (tmp_path / "service.log").read_text()
    assert "Shutting down" in log or "all queues drained" in log  # stopped through SIGTERM
