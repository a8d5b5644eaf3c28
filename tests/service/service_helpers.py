"""Helpers of the service tests: a tiny real model repository, service processes, reference answers."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

from loadtest.service_process import READY_PATH
from loadtest.service_process import ServiceProcess as BaseServiceProcess
from loadtest.synthetic import CtrShape, ctr_model, localization_model, write_entry

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-token"
CTR_EMBEDDING = {"method": "robe", "parameters": {"m": 4000, "block_size": 4}, "bytes": 16000}


def build_repository(root: Path) -> Path:
    """ctr (probability [B]), ctr-2d (probability [B, 1]) and loc, all version 1."""
    write_entry(
        root,
        "ctr",
        "1",
        ctr_model(CtrShape(), seed=1),
        "ctr",
        preprocessing={"dense": "log1p_clip0"},
        metrics={"auc": 0.7312, "logloss": 0.4721},
        embedding=CTR_EMBEDDING,
    )
    write_entry(
        root,
        "ctr-2d",
        "1",
        ctr_model(CtrShape(), seed=2, probability_2d=True),
        "ctr",
        preprocessing={"dense": "log1p_clip0"},
    )
    write_entry(
        root,
        "loc",
        "1",
        localization_model(seed=3),
        "localization",
        metrics={"mean_error_m": 7.5, "floor_hit": 0.91},
    )
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess(BaseServiceProcess):
    """``python -m service`` on a free port with the tests' settings (no drain delay, no repository poll
    interval) and an httpx client; starting, waiting and stopping are ``loadtest.service_process``'s.

    Args:
        repository: model repository root.
        log_path: where its output goes (quoted when a start fails).
        env: ``ROBESERVE_*`` settings.
        args: further command-line options of ``python -m service``.
    """

    def __init__(
        self, repository: Path, log_path: Path, env: dict[str, str], args: Sequence[str] = ()
    ) -> None:
        settings = {"ROBESERVE_DRAIN_DELAY_S": "0", "ROBESERVE_POLL_INTERVAL_S": "0", **env}
        super().__init__(repository, free_port(), log_path, settings, args, cwd=REPO_ROOT)

    def wait(self, path: str = READY_PATH, timeout_s: float = 60.0) -> None:
        """Until ``path`` answers 200 (ServiceNotReady, with the log's tail, otherwise)."""
        self.wait_for(path, timeout_s)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def log(self) -> str:
        return self.log_text()


def copy_repository(source: Path, target: Path, names: list[str]) -> Path:
    for name in names:
        shutil.copytree(source / name, target / name)
    return target


class Reference:
    """The models run directly in onnxruntime, one sample at a time (what batching must reproduce)."""

    def __init__(self, repository: Path) -> None:
        self.repository = repository
        self._sessions: dict[str, ort.InferenceSession] = {}

    def session(self, name: str, version: str = "1") -> ort.InferenceSession:
        key = f"{name}/{version}"
        if key not in self._sessions:
            self._sessions[key] = ort.InferenceSession(str(self.repository / name / version / "model.onnx"))
        return self._sessions[key]

    def ctr(
        self, dense: np.ndarray, categorical: np.ndarray, name: str = "ctr", version: str = "1"
    ) -> np.ndarray:
        feeds = {"dense": np.log1p(np.maximum(dense, 0)).astype(np.float32), "categorical": categorical}
        return np.concatenate(
            [
                self.session(name, version)
                .run(["probability"], {k: v[i : i + 1] for k, v in feeds.items()})[0]
                .reshape(-1)
                for i in range(len(dense))
            ]
        )


def ctr_batch(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw CTR features: dense counts (some negative) and ids across the whole int64 id range."""
    dense = rng.integers(-2, 1000, size=(size, 13)).astype(np.float32)
    categorical = rng.integers(0, 2**62, size=(size, 26), dtype=np.int64)
    return dense, categorical


def ctr_infer_body(
    dense: np.ndarray, categorical: np.ndarray, request_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [
            {"name": "dense", "shape": list(dense.shape), "datatype": "FP32", "data": dense.ravel().tolist()},
            {
                "name": "categorical",
                "shape": list(categorical.shape),
                "datatype": "INT64",
                "data": categorical.tolist(),
            },
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``, from Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        if all(f'{key}="{wanted}"' in head for key, wanted in labels.items()):
            total += float(value)
    return total
