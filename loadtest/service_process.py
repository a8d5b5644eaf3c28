"""``python -m service`` in a subprocess for the benchmarks: start it, wait until it is ready, stop it.

Used by ``loadtest.service_bench`` (HTTP vs a raw session) and ``loadtest.gpu_serve`` (the served GPU path).
Standard library only (the GPU script's environment need not have httpx).

Example:
    >>> service = ServiceProcess(Path("models"), 8123, Path("service.log"), {"ROBESERVE_DRAIN_DELAY_S": "0"})
    >>> service.wait_ready(120)  # ServiceNotReady (a RuntimeError): it exited, refused a model or timed out
    >>> ...                      # drive http://127.0.0.1:8123
    >>> service.stop()
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
# Runs ``python -m service`` after loading the CUDA libraries of the onnxruntime-gpu wheel (when it has them)
CUDA_LAUNCHER = (
    "import onnxruntime as ort, runpy, sys\n"
    "if hasattr(ort, 'preload_dlls') and 'CUDAExecutionProvider' in ort.get_available_providers():\n"
    "    ort.preload_dlls()\n"
    "sys.argv = ['service'] + sys.argv[1:]\n"
    "runpy.run_module('service', run_name='__main__')\n"
)


class ServiceNotReady(RuntimeError):
    """The service exited, refused a model or did not become ready in time (the message says which)."""


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """Status and body of a GET (HTTP errors included); OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class ServiceProcess:
    """One ``python -m service`` process on ``HOST:port``, its output in ``log``.

    Args:
        repository: model repository root.
        port: TCP port.
        log: file that receives the service's stdout and stderr.
        env: ``ROBESERVE_*`` settings added to this process's environment.
        args: further command-line flags of ``python -m service``.
        preload_cuda: start through ``CUDA_LAUNCHER`` (onnxruntime-gpu's CUDA libraries preloaded).
    """

    def __init__(
        self,
        repository: Path,
        port: int,
        log: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        preload_cuda: bool = False,
    ) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log = log
        entry = ["-c", CUDA_LAUNCHER] if preload_cuda else ["-m", "service"]
        command = [sys.executable, *entry, "--repository", str(repository), "--host", HOST,
                   "--port", str(port), *args]  # fmt: skip
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float, interval_s: float = 0.2) -> None:
        """Return once ``/v2/health/ready`` answers 200; else ServiceNotReady (and the process is stopped)
        when the service exits, refuses a model (it would never become ready) or is not ready in time."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise ServiceNotReady(f"the service exited with {self.process.returncode}: see {self.log}")
            try:
                status, body = http_get(f"{self.url}/v2/health/ready", 2.0)
            except OSError:
                status, body = 0, b""
            if status == 200:
                return
            if b"models refused" in body:
                self.stop()
                raise ServiceNotReady(f"{body.decode(errors='replace')}: see {self.log}")
            time.sleep(interval_s)
        self.stop()
        raise ServiceNotReady(f"the service was not ready within {timeout_s:.0f} s: see {self.log}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (queued requests drain), SIGKILL after ``timeout_s``; closes the log."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
