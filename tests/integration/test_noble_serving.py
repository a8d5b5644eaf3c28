"""NObLe end to end: train the configuration the results page reports as served (``docs/results/
noble.json``, chosen by cross-validation) on the real UJIIndoorLoc file, export it as ``noble-wifi``,
serve it, and check that every validation row scored over HTTP (``/v1/.../predict`` and
``/v2/.../infer``) has the errors of the offline evaluation of the same checkpoint (onnxruntime directly,
and torch in float64), and that the served mean error is the page's within 0.1 m."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from service_helpers import ServiceProcess

from export.noble import OUTPUTS, run_onnx
from training.data.uji import load_uji
from training.noble.data import UjiNotFound, UjiSplit, find_file
from training.noble.metrics import Predictions, errors_2d, evaluate
from training.noble.train import load_noble, predict

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UJI = Path(os.environ.get("ROBESERVE_SHARED_DATA", REPO.parent / "shared" / "data")) / "ujiindoorloc"
MODEL = "noble-wifi"
RESULTS = REPO / "docs" / "results" / "noble.json"
# What `make demo-models` trains (training.noble.cli --demo): the page's served configuration, seed 0.
TRAIN_ARGS = ["--from-results", str(RESULTS), "--seed", "0", "--threads", "1"]
PAGE_TOL_M = 0.1  # served mean 2D error vs the page's figure for the same configuration and seed
CHUNK = 300  # validation rows per HTTP request: 1111 rows -> 4 requests per endpoint
# Served vs onnxruntime run here: the same graph in the same onnxruntime build on the CPU provider with
# one intra-op thread and the same batches (each request runs alone: one request larger than the
# service's max_batch_size is never merged or split), and JSON carries float32 values exactly. The
# outputs are bit-identical (this test passed with a 0 m tolerance when written); 1e-3 m is a margin: one
# float32 ulp of a UTM northing (0.5 m near 4.86e6), i.e. any real difference, still fails it.
SAME_GRAPH_TOL_M = 1e-3
# Served vs torch in float64 (``predict``, which wrote metrics.json): the position is computed in float32
# metres around the origin in both (they agree to ~1e-4 m, see export.noble.compare), then the served
# one is rounded to float32 UTM metres: <= half an ulp, 0.25 m in latitude and 0.00025 m in longitude.
# A 2D error moves by at most the position's move, so by <= hypot(0.25, 0.00025) + 1e-4 < 0.26 m.
FLOAT32_UTM_TOL_M = 0.26
SERVICE_FLAGS = ["--providers", "CPUExecutionProvider", "--intra-op-threads", "1",
                 "--poll-interval-s", "0", "--log-level", "INFO"]


def _run(args: list[str], timeout_s: float) -> str:
    """Run ``python ARGS`` in the repository; its stdout, or a failure showing its stderr."""
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    assert done.returncode == 0, f"python {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def validation() -> UjiSplit:
    try:
        find_file(UJI, "train")
        return UjiSplit.from_uji(load_uji(find_file(UJI, "validation")))
    except UjiNotFound as exc:
        pytest.skip(f"real UJIIndoorLoc files needed ({exc}; set ROBESERVE_SHARED_DATA)")


@pytest.fixture(scope="module")
def run_dir(validation: UjiSplit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real NObLe run trained by ``python -m training noble`` on the whole training file."""
    run = tmp_path_factory.mktemp("noble") / "run"
    _run(["-m", "training", "noble", "--data", str(UJI), "--out", str(run), *TRAIN_ARGS], timeout_s=1800)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["mean_error_m"] < 15.0 and metrics["building_hit"] > 0.95, metrics  # it learned
    return run


@pytest.fixture(scope="module")
def repository(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run published by ``python -m export`` as ``noble-wifi`` version 1."""
    root = tmp_path_factory.mktemp("models")
    printed = _run(["-m", "export", str(run_dir), "--repository", str(root), "--name", MODEL], timeout_s=240)
    assert Path(printed.strip().splitlines()[-1]) == root / MODEL / "1"
    return root


@pytest.fixture(scope="module")
def service(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    # ROBESERVE_DRAIN_DELAY_S=0 (set by ServiceProcess): stop at once on SIGTERM
    started = ServiceProcess(repository, tmp_path_factory.mktemp("logs") / "service.log", {}, SERVICE_FLAGS)
    try:
        started.wait()
        yield started
    finally:
        started.stop()


def _predict_v1(client: httpx.Client, rows: np.ndarray) -> dict[str, list[Any]]:
    # "not seen" goes as null here (the raw 100 in v2): the domain endpoint maps both to 100 dBm
    instances = [{"rssi": [None if v == 100 else v for v in row.tolist()]} for row in rows]
    response = client.post(f"/v1/models/{MODEL}/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"]) == (MODEL, "1")
    return {name: [p[name] for p in body["predictions"]] for name in OUTPUTS}


def _infer_v2(client: httpx.Client, rows: np.ndarray) -> dict[str, list[Any]]:
    tensor = {"name": "rssi", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}
    response = client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert {n: (o["datatype"], o["shape"]) for n, o in outputs.items()} == {
        "longitude": ("FP32", [len(rows)]), "latitude": ("FP32", [len(rows)]),
        "floor": ("INT64", [len(rows)]), "building": ("INT64", [len(rows)])}
    return {name: outputs[name]["data"] for name in OUTPUTS}


def _served(send: Callable[[np.ndarray], dict[str, list[Any]]], rssi: np.ndarray) -> Predictions:
    """Predictions of every row of ``rssi``, sent ``CHUNK`` rows per request."""
    parts = [send(rssi[i:i + CHUNK]) for i in range(0, len(rssi), CHUNK)]
    columns = {name: np.concatenate([np.asarray(p[name]) for p in parts]) for name in OUTPUTS}
    return Predictions(columns["longitude"].astype(np.float64), columns["latitude"].astype(np.float64),
                       columns["floor"].astype(np.int64), columns["building"].astype(np.int64))


def _assert_same_errors(served: Predictions, offline: Predictions, truth: Predictions,
                        tol_m: float) -> None:
    """Per row: 2D errors within ``tol_m``, floor and building hits identical."""
    gap = np.abs(errors_2d(served, truth) - errors_2d(offline, truth))
    assert gap.max() <= tol_m, f"2D errors differ by up to {gap.max():.6f} m (row {int(gap.argmax())})"
    np.testing.assert_array_equal(served.floor == truth.floor, offline.floor == truth.floor)
    np.testing.assert_array_equal(served.building == truth.building, offline.building == truth.building)


def test_served_errors_equal_offline_evaluation(validation: UjiSplit, run_dir: Path, repository: Path,
                                                service: ServiceProcess) -> None:
    truth = validation.truth()
    onnx_out = run_onnx(repository / MODEL / "1" / "model.onnx", validation.rssi, batch_size=CHUNK)
    as_float64 = {name: onnx_out[name].astype(np.float64) for name in ("longitude", "latitude")}
    onnxruntime = Predictions(as_float64["longitude"], as_float64["latitude"], onnx_out["floor"],
                              onnx_out["building"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, _ = load_noble(run_dir)
        in_torch = predict(model, validation.rssi, model.decode)
    finally:
        torch.set_num_threads(threads)
    with httpx.Client(base_url=service.url, timeout=60.0) as client:
        v1 = _served(lambda rows: _predict_v1(client, rows), validation.rssi)
        v2 = _served(lambda rows: _infer_v2(client, rows), validation.rssi)
    for served in (v1, v2):
        _assert_same_errors(served, onnxruntime, truth, SAME_GRAPH_TOL_M)
        _assert_same_errors(served, in_torch, truth, FLOAT32_UTM_TOL_M)
    # the whole validation file's figures: those of the model card (onnxruntime at export) and of
    # metrics.json (torch in float64 at training)
    metrics = evaluate(v2, truth).to_dict()
    card = json.loads((repository / MODEL / "1" / "model.json").read_text())["metrics"]
    assert card["rows"] == len(validation)
    assert metrics == pytest.approx({k: card[k] for k in metrics}, abs=SAME_GRAPH_TOL_M)
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == pytest.approx({k: trained[k] for k in metrics}, abs=FLOAT32_UTM_TOL_M)
    assert (metrics["building_hit"], metrics["floor_hit"]) == (trained["building_hit"], trained["floor_hit"])
    # the results page: the same configuration and seed, its validation figures
    page = json.loads(RESULTS.read_text())["served"]
    model_json = json.loads((repository / MODEL / "1" / "model.json").read_text())
    assert page["seed"] == 0 and model_json["decode"] == page["decode"]
    assert abs(metrics["mean_error_m"] - page["validation"]["mean_error_m"]) <= PAGE_TOL_M, (
        metrics["mean_error_m"], page["validation"]["mean_error_m"])
    # SIGTERM: queues drained and a clean exit (uvicorn re-raises the signal it handled once it is done,
    # so the status is -SIGTERM rather than 0, as in tests/service/test_lifecycle.py)
    assert service.stop() in (0, -signal.SIGTERM), service.log()
    log = service.log()
    assert "all queues drained" in log and "Application shutdown complete" in log, log
