"""Fixtures of the data tests: the real samples in ../shared/data and a small synthetic file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (or ``$ROBESERVE_SHARED_DATA``); skips when absent."""
    root = Path(os.environ.get("ROBESERVE_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (root / "criteo" / "criteo_15k.tsv.gz").is_file():
        pytest.skip(f"real data samples not found under {root}")
    return root


@pytest.fixture
def write_text(tmp_path: Path):
    """Write ``text`` to a file under tmp_path and return its path."""

    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_bytes(text.encode())
        return path

    return write
