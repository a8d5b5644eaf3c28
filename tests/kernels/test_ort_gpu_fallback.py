"""The library loads into onnxruntime-gpu and its ops run bit-exact on that build's CPU fallback.

onnxruntime-gpu cannot share a venv with the CPU wheel, so this runs ``ort_gpu_fallback.py`` with the
interpreter named by ``ROBESERVE_ORT_GPU_PYTHON`` (.ci/run makes that venv); skipped when it is unset.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("ort_gpu_fallback.py")


def test_ops_run_on_the_cpu_fallback_of_onnxruntime_gpu(robe_library: Path) -> None:
    python = os.environ.get("ROBESERVE_ORT_GPU_PYTHON")
    if not python:
        pytest.skip("ROBESERVE_ORT_GPU_PYTHON is unset (a venv with onnxruntime-gpu; .ci/run makes one)")
    done = subprocess.run([python, str(SCRIPT), str(robe_library)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "CUDAExecutionProvider" in report["available_providers"], report  # it really is the GPU build
    assert report["session_providers"][-1] == "CPUExecutionProvider"
    assert len(report["checked"]) == 4
