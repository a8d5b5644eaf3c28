"""``python -m service`` in a subprocess for the benchmarks: start it, wait until it is ready, stop it.

Used by ``loadtest.service_bench`` (HTTP vs a raw session) and ``loadtest.gpu_serve`` (the served GPU path).
Standard library only (the GPU script's environment need not have httpx).

Example:
    >>> service = ServiceProcess(Path("models"), 8123, Path("service.log"), {"ROBESERVE_DRAIN_DELAY_S": "0"})
    >>> service.wait_ready(120)  # ServiceNotReady (a RuntimeError): it exited, refused a model or timed out
    >>> ...                      # drive http://127.0.0.1:8123
    >>> service.stop()

The service tests subclass it (``tests/service/service_helpers.py``: a free port, test settings, an httpx
client).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
READY_PATH = "/v2/health/ready"
LOG_TAIL_CHARS = 4000  # of the service's output quoted in a ServiceNotReady message
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
    """One ``python -m service`` process on ``HOST:port``, its output in ``log_path``.

    Args:
        repository: model repository root.
        port: TCP port.
        log_path: file that receives the service's stdout and stderr.
        env: ``ROBESERVE_*`` settings added to this process's environment.
        args: further command-line flags of ``python -m service``.
        preload_cuda: start through ``CUDA_LAUNCHER`` (onnxruntime-gpu's CUDA libraries preloaded).
        cwd: working directory of the process (None: this process's).
    """

    def __init__(
        self,
        repository: Path,
        port: int,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        preload_cuda: bool = False,
        cwd: Path | None = None,
    ) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        entry = ["-c", CUDA_LAUNCHER] if preload_cuda else ["-m", "service"]
        command = [sys.executable, *entry, "--repository", str(repository), "--host", HOST,
                   "--port", str(port), *args]  # fmt: skip
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_text(self) -> str:
        """What the service has written so far."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def _not_ready(self, reason: str) -> ServiceNotReady:
        return ServiceNotReady(f"{reason}: see {self.log_path}; its last lines:\n"
                               f"{self.log_text()[-LOG_TAIL_CHARS:]}")

    def wait_for(self, path: str = READY_PATH, timeout_s: float = 60.0, interval_s: float = 0.1) -> None:
        """Return once ``GET path`` answers 200; else ServiceNotReady when the service exits, refuses a
        model (the readiness body says so: it would never become ready) or does not answer 200 in time.
        The process is left running (``stop`` it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self._not_ready(f"the service exited with {self.process.returncode}")
            try:
                status, body = http_get(f"{self.url}{path}", 2.0)
            except OSError:
                status, body = 0, b""
            if status == 200:
                return
            if b"models refused" in body:
                raise self._not_ready(body.decode(errors="replace"))
            time.sleep(interval_s)
        raise self._not_ready(f"the service did not answer 200 on {path} within {timeout_s:.0f} s")

    def wait_ready(self, timeout_s: float, interval_s: float = 0.2) -> None:
        """``wait_for`` the readiness path; the process is stopped when it does not become ready."""
        try:
            self.wait_for(READY_PATH, timeout_s, interval_s)
        except ServiceNotReady:
            self.stop()
            raise

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send ``sig`` (SIGTERM: queued requests drain), SIGKILL after ``timeout_s``; closes the log and
        returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
