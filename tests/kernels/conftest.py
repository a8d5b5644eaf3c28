"""Fixtures of the kernel tests: the custom-op library, built once per session when missing or stale."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

# pytest runs with --import-mode=importlib (no test directory on sys.path); the tests here import their
# model builders from kernel_models.py beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "hash_golden.json"


@pytest.fixture(scope="session")
def robe_library() -> Path:
    """build/kernels/librobe_ops.so, (re)built incrementally by kernels.build (as `make kernels`)."""
    from kernels.build import build

    return build()


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    if not GOLDEN.is_file():
        pytest.skip(f"{GOLDEN} is absent (python tests/golden/make_golden.py writes it)")
    data: dict[str, Any] = json.loads(GOLDEN.read_text())
    return data
