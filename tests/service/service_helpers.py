"""Helpers of the service tests: a tiny real model repository, service processes, reference answers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort

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


class ServiceProcess:
    """``python -m service`` in a subprocess, talking HTTP on a free port.

    Args:
        repository: model repository root.
        log_path: where its stderr goes (shown when a start fails).
        env: ``ROBESERVE_*`` settings.
        args: further command-line options of ``python -m service``.
    """

    def __init__(
        self, repository: Path, log_path: Path, env: dict[str, str], args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [sys.executable, "-m", "service", "--repository", str(repository), "--host", "127.0.0.1",
                   "--port", str(self.port), *args]
        full_env = {**os.environ, "ROBESERVE_DRAIN_DELAY_S": "0", "ROBESERVE_POLL_INTERVAL_S": "0", **env}
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait(self, path: str = "/v2/health/ready", timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + path, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"service not answering 200 on {path}:\n{self.log()}")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


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
