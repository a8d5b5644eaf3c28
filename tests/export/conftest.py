"""Tiny DLRM run directories (one per embedding method) and their exports, built once per session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from export.exporter import ExportOptions, export_run
from training.dlrm.checkpoint import save_checkpoint
from training.dlrm.embeddings import Method
from training.dlrm.factory import EmbeddingSpec, build_embedding
from training.dlrm.model import DLRM, DLRMConfig

METHODS = ("full", "hash", "robe", "lma")
NUM_FEATURES = 5
BUDGET_BYTES = 16_000


def tiny_categorical(rows: int = 1500, seed: int = 0) -> np.ndarray:
    """Ids with repeats (a vocabulary to learn) spread over [0, 2^62): many above 2^24 and 2^53."""
    rng = np.random.default_rng(seed)
    scale = rng.integers(1, 1 << 40, size=NUM_FEATURES)
    ids = rng.integers(0, 40, size=(rows, NUM_FEATURES)) * scale
    ids[:, 0] = rng.integers(0, 1 << 62, size=rows)  # a feature with no repeats
    return ids.astype(np.int64)


def make_run(run_dir: Path, method: str, num_dense: int = 13) -> Path:
    """A run directory holding an (untrained, randomly initialised) tiny DLRM checkpoint."""
    categorical = tiny_categorical()
    budget = None if method == "full" else BUDGET_BYTES
    spec = EmbeddingSpec(Method(method), block_size=4, signature_rows=2000)
    embedding = build_embedding(spec, 16, categorical, budget)
    model = DLRM(DLRMConfig.preset("tiny", num_dense, NUM_FEATURES), embedding).eval()
    data = {"dataset": "synthetic-tiny", "path": None, "num_dense": num_dense}
    save_checkpoint(run_dir, model, data, {"auc": 0.5, "logloss": 0.69}, {})
    return run_dir


@pytest.fixture(scope="session")
def run_factory() -> Callable[..., Path]:
    """``make_run(run_dir, method, num_dense=13)`` for tests that need their own run."""
    return make_run


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {method: make_run(root / method, method) for method in METHODS}


@pytest.fixture(scope="session")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def exported(runs: dict[str, Path], repository: Path) -> dict[str, Path]:
    """Each method exported (and verified) once: method -> published version directory."""
    return {method: export_run(run, ExportOptions(repository, f"dlrm-{method}"))
            for method, run in runs.items()}
