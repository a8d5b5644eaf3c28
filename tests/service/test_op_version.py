"""The service refuses a model of ai.robe operator version 1 (hash version 1) at load, naming the version."""

from __future__ import annotations

from pathlib import Path

import pytest
from onnx import helper

from kernels.op_version import OpVersionError, check_model_op_version, model_op_version
from loadtest.synthetic import CtrShape, ctr_model, write_entry
from service.runtime import CPU, LoadError, OnnxModel, RuntimeConfig

CPU_ONLY = RuntimeConfig((CPU,), intra_op_threads=1)


def _entry(root: Path, robe_version: int | None) -> Path:
    model = ctr_model(CtrShape(), seed=1)  # ~100 KB of weights in the graph: the reader seeks over them
    if robe_version is not None:
        model.opset_import.append(helper.make_opsetid("ai.robe", robe_version))
    return write_entry(root, "ctr", "1", model, "ctr", preprocessing={"dense": "log1p_clip0"})


@pytest.mark.parametrize("version", [None, 2, 1, 3])
def test_model_op_version_reads_the_opset_import(tmp_path: Path, version: int | None) -> None:
    path = _entry(tmp_path, version) / "model.onnx"
    assert model_op_version(path) == version
    if version in (None, 2):
        check_model_op_version(path)
    else:
        message = rf"ai\.robe operators version {version} .*implements version 2"
        with pytest.raises(OpVersionError, match=message):
            check_model_op_version(path)


def test_service_load_refuses_version_1_and_loads_version_2(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"ai\.robe operators version 1 \(hash version 1\)"):
        OnnxModel.load(_entry(tmp_path / "v1", 1), CPU_ONLY)
    assert OnnxModel.load(_entry(tmp_path / "v2", 2), CPU_ONLY).manifest.name == "ctr"


def test_a_file_that_is_not_onnx_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\xff\xff\xff\xff")
    with pytest.raises(OpVersionError):
        check_model_op_version(path)
