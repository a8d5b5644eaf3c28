"""Fixtures of the service tests (helpers in ``service_helpers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from service_helpers import ADMIN_TOKEN, Reference, ServiceProcess, build_repository

ServiceFactory = Callable[..., ServiceProcess]


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ctr, ctr-2d and loc, version 1 each, built once per session."""
    return build_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def reference(model_repository: Path) -> Reference:
    return Reference(model_repository)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[ServiceFactory]:
    """Start services for one test (stopped at its end): ``start_service(repo, wait=path, **env)``."""
    started: list[ServiceProcess] = []

    def start(repository: Path, wait: str | None = "/v2/health/ready", **env: str) -> ServiceProcess:
        process = ServiceProcess(repository, tmp_path / f"service-{len(started)}.log", env)
        started.append(process)
        if wait is not None:
            process.wait(wait)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture(scope="session")
def service(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The shared service: admin on, 1 MiB body limit, 256 instances per request."""
    env = {
        "ROBESERVE_ADMIN_TOKEN": ADMIN_TOKEN,
        "ROBESERVE_MAX_BODY_BYTES": str(1 << 20),
        "ROBESERVE_MAX_INSTANCES": "256",
        "ROBESERVE_MAX_QUEUE_DELAY_US": "2000",
        "ROBESERVE_INTRA_OP_THREADS": "1",
    }
    process = ServiceProcess(model_repository, tmp_path_factory.mktemp("logs") / "service.log", env)
    process.wait()
    yield process
    process.stop()


@pytest.fixture
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http
