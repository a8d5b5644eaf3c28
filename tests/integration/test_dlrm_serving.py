"""DLRM end to end: train small ROBE and LMA models (``python -m training dlrm``), publish them
(``python -m export``), serve them (``python -m service``) with the ai.robe op library and without it (the
models' standard-op ONNX functions), and check that the probabilities answered over HTTP on held-out rows,
through ``/v2/models/{m}/infer`` and ``/v1/models/{m}/predict``, are the trained torch model's."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from service_helpers import ServiceProcess

from training.data.readers import read_batches
from training.data.shards import SplitFractions, transform_dense
from training.data.synth_file import write_synth_criteo
from training.dlrm import checkpoint as ckpt
from training.dlrm import cli as dlrm_cli
from training.dlrm.metrics import roc_auc

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ROWS = 6000  # 4800 train / 600 validation / 600 held-out test rows
MODELS = {
    "dlrm-robe": ["--embedding", "robe", "--compression", "16", "--block-size", "4"],
    "dlrm-lma": ["--embedding", "lma", "--compression", "16", "--block-size", "4"],
}
TRAIN_ARGS = ["--config", "tiny", "--steps", "40", "--batch-size", "256", "--eval-every", "20",
              "--threads", "1", "--log-level", "WARNING"]
CHUNK = 200  # test rows per HTTP request: 600 rows -> 3 requests per endpoint and model
SERVICE_FLAGS = ["--providers", "CPUExecutionProvider", "--intra-op-threads", "1", "--poll-interval-s", "0"]
NO_LIBRARY = "/nonexistent/librobe_ops.so"  # $ROBESERVE_KERNELS_LIBRARY here: the ops are not registered
# Served vs torch, on probabilities in [0, 1]. The embedding rows are the same float32 values (both the
# custom op and the standard-op function read the trained array with the same hash, bit-exact against the
# golden vectors), so what differs is float32 arithmetic: the graph applies log1p(max(x, 0)) to the raw
# dense counts in float32 where torch gets them transformed in float64 then rounded (<= 1 ulp each), and
# onnxruntime's MLAS GEMMs sum the tiny MLPs (widths <= 64) in another order than torch. Each costs a few
# float32 ulps relative (~1e-7) per layer; through 4 layers and a logit of magnitude < 10 that is < 1e-5 on
# the probability (export.verify holds every export to the same 1e-5). JSON carries float32 values exactly.
# Measured when written: max difference 8.9e-8 (ROBE) and 1.0e-7 (LMA), the same with and without the
# library and on both APIs.
PROBABILITY_ATOL = 1e-5


def _python(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str], timeout_s: float = 240) -> str:
    out, err = process.communicate(timeout=timeout_s)
    command = " ".join(map(str, process.args))
    assert process.returncode == 0, f"{command} exited {process.returncode}:\n{err[-3000:]}"
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "synthetic.tsv"
    write_synth_criteo(path, ROWS, seed=3)
    return path


@pytest.fixture(scope="module")
def runs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both models trained by the CLI of ``python -m training dlrm`` (in this process: torch is loaded)."""
    root = tmp_path_factory.mktemp("runs")
    threads = torch.get_num_threads()
    try:
        for name, flags in MODELS.items():
            argv = ["--data", str(data), "--cache-dir", str(root / "cache"), "--out", str(root / name),
                    *flags, *TRAIN_ARGS]
            assert dlrm_cli.main(argv) == 0, f"python -m training dlrm {' '.join(argv)} failed"
    finally:
        torch.set_num_threads(threads)
    return {name: root / name for name in MODELS}


@pytest.fixture(scope="module")
def repository(runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    processes = {name: _python(["-m", "export", str(run), "--repository", str(root), "--name", name])
                 for name, run in runs.items()}
    for name, process in processes.items():
        assert Path(_finish(process).strip().splitlines()[-1]) == root / name / "1"
        card = json.loads((root / name / "1" / "model.json").read_text())
        assert card["custom_ops"] is True and card["embedding"]["method"] == name.removeprefix("dlrm-")
    return root


@pytest.fixture(scope="module")
def services(repository: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServiceProcess]]:
    """The same repository served twice: with the op library, and without it (standard-op functions)."""
    logs = tmp_path_factory.mktemp("logs")
    started = {"library": ServiceProcess(repository, logs / "library.log", {}, SERVICE_FLAGS),
               "fallback": ServiceProcess(repository, logs / "fallback.log",
                                          {"ROBESERVE_KERNELS_LIBRARY": NO_LIBRARY}, SERVICE_FLAGS)}
    try:
        for service in started.values():
            service.wait()
        yield started
    finally:
        for service in started.values():
            service.stop()


@pytest.fixture(scope="module")
def held_out(data: Path) -> dict[str, np.ndarray]:
    """The test split's raw rows (what a client sends): dense counts with NaN = missing, raw ids, labels."""
    batches = list(read_batches(data))
    dense = np.concatenate([b.dense for b in batches])
    categorical = np.concatenate([b.categorical for b in batches])
    labels = np.concatenate([b.labels for b in batches])
    sizes = SplitFractions().sizes(ROWS)
    first = ROWS - sizes[next(s for s in sizes if s.value == "test")]
    return {"dense": dense[first:], "categorical": categorical[first:], "labels": labels[first:]}


def _torch_probabilities(run: Path, rows: dict[str, np.ndarray]) -> np.ndarray:
    model = ckpt.model_from_checkpoint(ckpt.load_checkpoint(run))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            dense = torch.from_numpy(transform_dense(rows["dense"]))
            logits = model(dense, torch.from_numpy(rows["categorical"]))
    finally:
        torch.set_num_threads(threads)
    return torch.sigmoid(logits).numpy()


def _infer_v2(client: httpx.Client, name: str, dense: np.ndarray, categorical: np.ndarray) -> list[float]:
    raw = np.nan_to_num(dense, nan=0.0).astype(np.float32)  # a missing count is sent as 0 (log1p(0) = 0)
    body = {"inputs": [
        {"name": "dense", "shape": list(raw.shape), "datatype": "FP32", "data": raw.ravel().tolist()},
        {"name": "categorical", "shape": list(categorical.shape), "datatype": "INT64",
         "data": categorical.ravel().tolist()}]}
    response = client.post(f"/v2/models/{name}/infer", json=body)
    assert response.status_code == 200, response.text
    (output,) = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("probability", "FP32", [len(raw)])
    return list(output["data"])


def _predict_v1(client: httpx.Client, name: str, dense: np.ndarray, categorical: np.ndarray) -> list[float]:
    """Records as a client writes them: null for a missing count or id, ids as Criteo's hex strings."""
    instances: list[dict[str, Any]] = [
        {"dense": [None if np.isnan(v) else float(v) for v in d],
         "categorical": [None if c == 0 else f"{int(c):08x}" for c in cats]}
        for d, cats in zip(dense, categorical, strict=True)]
    response = client.post(f"/v1/models/{name}/predict", json={"instances": instances})
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


@pytest.mark.parametrize("name", list(MODELS))
def test_served_probabilities_equal_the_torch_model(name: str, runs: dict[str, Path],
                                                    services: dict[str, ServiceProcess],
                                                    held_out: dict[str, np.ndarray]) -> None:
    expected = _torch_probabilities(runs[name], held_out)
    metrics = json.loads((runs[name] / "metrics.json").read_text())
    # these are the held-out rows the run was scored on, and the model learned something
    assert roc_auc(held_out["labels"], expected) == pytest.approx(metrics["test_auc"], abs=1e-6)
    assert metrics["test_rows"] == len(expected) and metrics["test_auc"] > 0.55
    n = len(expected)
    for where, service in services.items():
        with service.client() as client:
            for send in (_infer_v2, _predict_v1):
                served = np.concatenate([
                    send(client, name, held_out["dense"][i:i + CHUNK], held_out["categorical"][i:i + CHUNK])
                    for i in range(0, n, CHUNK)])
                gap = np.abs(served - expected)
                assert gap.max() <= PROBABILITY_ATOL, (f"{name} via {send.__name__} ({where}): up to "
                                                       f"{gap.max():.2e} from torch (row {gap.argmax()})")


def test_the_fallback_service_ran_without_the_library(services: dict[str, ServiceProcess]) -> None:
    """The second service really ran the standard-op functions: it found no library and said so."""
    fallback, library = services["fallback"].log(), services["library"].log()
    assert NO_LIBRARY in fallback and "custom-op library is not built" in fallback, fallback
    assert "custom-op library is not built" not in library, library
