"""Hot reload under load: new versions swap in without a failed request; corrupt ones are refused."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from service_helpers import ADMIN_TOKEN, Reference, ServiceProcess, copy_repository, ctr_batch, ctr_infer_body

from loadtest.synthetic import CtrShape, ctr_model, write_entry

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CLIENTS = 4


class Load:
    """Clients posting the same request in a loop; records status codes and serving versions."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        self.url, self.body = url, body
        self.codes: Counter[int] = Counter()
        self.answers: dict[str, float] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(CLIENTS)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self.stop.is_set():
                response = client.post("/v2/models/ctr/infer", json=self.body)
                with self.lock:
                    self.codes[response.status_code] += 1
                    if response.status_code == 200:
                        body = response.json()
                        self.answers[body["model_version"]] = body["outputs"][0]["data"][0]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for_version(self, version: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while version not in self.answers and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version in self.answers, (version, self.codes)


def _status(client: httpx.Client) -> dict[str, Any]:
    return next(model for model in client.get("/v1/status").json()["models"] if model["name"] == "ctr")


def test_reload_under_load_drops_no_request(start_service, model_repository: Path, tmp_path: Path) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr"])
    service: ServiceProcess = start_service(
        repository, ROBESERVE_ADMIN_TOKEN=ADMIN_TOKEN, ROBESERVE_POLL_INTERVAL_S="0.2"
    )
    dense, categorical = ctr_batch(np.random.default_rng(3), 1)
    with Load(service.url, ctr_infer_body(dense, categorical)) as load, service.client() as client:
        load.wait_for_version("1")
        write_entry(
            repository,
            "ctr",
            "2",
            ctr_model(CtrShape(), seed=22),
            "ctr",
            preprocessing={"dense": "log1p_clip0"},
        )
        load.wait_for_version("2")  # picked up by the poller

        corrupt = write_entry(tmp_path / "staging", "ctr", "3", ctr_model(CtrShape(), seed=33), "ctr")
        manifest = json.loads((corrupt / "model.json").read_text())
        manifest["onnx_sha256"] = "f" * 64
        (corrupt / "model.json").write_text(json.dumps(manifest))
        corrupt.rename(repository / "ctr" / "3")  # appears complete, as a writer should publish it
        refused = client.post("/v2/repository/models/ctr/load", headers=AUTH)
        assert refused.status_code == 400, refused.text
        assert (
            "sha256 mismatch" in refused.json()["error"]
            and "version 2 keeps serving" in refused.json()["error"]
        )
        status = _status(client)
        assert (
            status["version"] == "2" and status["state"] == "READY" and "sha256 mismatch" in status["reason"]
        )
        refusals = service.log().count("model 'ctr' version 3 refused")
        time.sleep(0.6)  # three more polls: none may retry the same broken files
        assert service.log().count("model 'ctr' version 3 refused") == refusals
    assert set(load.codes) == {200}, load.codes
    assert sum(load.codes.values()) > 20
    assert load.answers["2"] == Reference(repository).ctr(dense, categorical, version="2")[0]
    assert load.answers["1"] != load.answers["2"]


def test_unload_and_load_endpoints(start_service, model_repository: Path, tmp_path: Path) -> None:
    repository = copy_repository(model_repository, tmp_path / "models", ["ctr", "loc"])
    service = start_service(repository, ROBESERVE_ADMIN_TOKEN=ADMIN_TOKEN)
    dense, categorical = ctr_batch(np.random.default_rng(4), 1)
    with service.client() as client:
        unloaded = client.post("/v2/repository/models/ctr/unload", headers=AUTH)
        assert unloaded.json() == {"name": "ctr", "state": "UNAVAILABLE"}
        assert client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).status_code == 503
        assert client.get("/v2/models/ctr/ready").status_code == 503
        assert client.get("/v2/health/ready").status_code == 200  # an unloaded model is not awaited
        index = {
            entry["name"]: entry["state"]
            for entry in client.post("/v2/repository/index", headers=AUTH).json()
        }
        assert index == {"ctr": "UNAVAILABLE", "loc": "READY"}
        loaded = client.post("/v2/repository/models/ctr/load", headers=AUTH)
        assert loaded.json() == {"name": "ctr", "version": "1", "state": "READY"}
        assert client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).status_code == 200
        assert client.post("/v2/repository/models/nope/load", headers=AUTH).status_code == 404
        assert client.post("/v2/repository/models/nope/unload", headers=AUTH).status_code == 404
        metrics = client.get("/metrics").text
        assert 'robeserve_model_ready{model="ctr",version="1"} 1.0' in metrics
