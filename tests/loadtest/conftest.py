"""Tiny benchmark models, exported once per test session through the real export path."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.engine_models import ExportedModel, Method, export_model, to_repository
from loadtest.shapes import get_shape


@pytest.fixture(scope="session")
def kernels_built() -> None:
    import kernels

    try:
        kernels.library_path()
    except kernels.LibraryNotBuilt as exc:
        pytest.fail(f"the ai.robe library is not built (make kernels builds it): {exc}")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory, kernels_built: None) -> dict[Method, ExportedModel]:
    root = tmp_path_factory.mktemp("engine-models")
    return {method: export_model(method, get_shape("tiny"), root / method.value) for method in Method}


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory,
                    tiny_models: dict[Method, ExportedModel]) -> Path:
    """A model repository with ``dlrm-full`` and ``dlrm-robe`` (tiny shape, random weights)."""
    repository = tmp_path_factory.mktemp("repository")
    for method, name in ((Method.FULL, "dlrm-full"), (Method.ROBE, "dlrm-robe")):
        to_repository(tiny_models[method], get_shape("tiny"), repository, name)
    return repository
