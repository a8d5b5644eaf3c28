"""model.json parsing, repository scanning and verified loading (sha256, signature, warm-up)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from loadtest.synthetic import CtrShape, ctr_model, write_entry
from service.repository import (
    ManifestError,
    Preprocessing,
    Task,
    read_manifest,
    scan_repository,
    version_sort_key,
)
from service.runtime import CPU, LoadError, OnnxModel, RuntimeConfig, resolve_providers

CPU_ONLY = RuntimeConfig((CPU,), intra_op_threads=1)


@pytest.fixture
def entry(model_repository: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ctr" / "1"
    shutil.copytree(model_repository / "ctr" / "1", target)
    return target


def edit(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "model.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def test_manifest_fields(entry: Path) -> None:
    manifest = read_manifest(entry)
    assert (manifest.name, manifest.version, manifest.task) == ("ctr", "1", Task.CTR)
    assert [spec.shape for spec in manifest.inputs] == [(-1, 13), (-1, 26)]
    assert manifest.preprocessing == {"dense": Preprocessing.LOG1P_CLIP0}
    assert manifest.method == "robe" and manifest.parameter_bytes > 0 and not manifest.custom_ops


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(version="7"), "lives in ctr/1/"),
        (lambda d: d.update(task="ranking"), "bad model.json field"),
        (lambda d: d.update(onnx_sha256="abc"), "64 hex digits"),
        (lambda d: d.pop("onnx_sha256"), "bad model.json field"),
        (lambda d: d.update(preprocessing={"dense": "zscore"}), "bad model.json field"),
        (lambda d: d.update(preprocessing={"rssi": "log1p_clip0"}), "unknown inputs"),
        (lambda d: d["inputs"][0].update(shape=[13]), "must start with -1"),
        (lambda d: d["inputs"][1].update(datatype="FP32"), "needs input 'categorical' of INT64"),
        (lambda d: d["outputs"][0].update(name="score"), "needs output 'probability'"),
        (lambda d: d.update(outputs=[]), "non-empty list"),
        (lambda d: d["inputs"][0].update(datatype="complex"), "bad entry in 'inputs'"),
    ],
)
def test_bad_manifests_are_refused(
    entry: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    edit(entry, change)
    with pytest.raises(ManifestError, match=message):
        read_manifest(entry)


def test_preprocessing_forms(entry: Path) -> None:
    edit(entry, lambda d: d.update(preprocessing={"dense": "none", "categorical": "none"}))
    assert read_manifest(entry).preprocessing == {
        "dense": Preprocessing.NONE,
        "categorical": Preprocessing.NONE,
    }
    edit(entry, lambda d: d.update(preprocessing="log1p inside the graph"))  # a description only
    assert read_manifest(entry).preprocessing == {}
    edit(entry, lambda d: d.update(preprocessing=["dense"]))
    with pytest.raises(ManifestError, match="must map input names"):
        read_manifest(entry)


def test_unreadable_manifest(entry: Path) -> None:
    (entry / "model.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(entry)


def test_load_runs_and_checks_sha(entry: Path) -> None:
    model = OnnxModel.load(entry, CPU_ONLY)
    outputs = model.run({"dense": np.zeros((3, 13), np.float32), "categorical": np.zeros((3, 26), np.int64)})
    assert outputs["probability"].shape == (3,) and model.providers == [CPU]
    (entry / "model.onnx").write_bytes((entry / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(LoadError, match="sha256 mismatch"):
        OnnxModel.load(entry, CPU_ONLY)


def test_load_refuses_a_manifest_that_disagrees_with_the_graph(tmp_path: Path) -> None:
    directory = write_entry(tmp_path, "ctr", "1", ctr_model(CtrShape(num_dense=5)), "ctr")
    edit(directory, lambda d: d["inputs"][0].update(shape=[-1, 13]))
    with pytest.raises(LoadError, match="shape"):
        OnnxModel.load(directory, CPU_ONLY)
    edit(directory, lambda d: d["inputs"].append({"name": "extra", "datatype": "FP32", "shape": [-1]}))
    with pytest.raises(LoadError, match=r"differ from model\.json"):
        OnnxModel.load(directory, CPU_ONLY)


def test_scan_ignores_incomplete_and_hidden_versions(model_repository: Path, tmp_path: Path) -> None:
    shutil.copytree(model_repository / "ctr", tmp_path / "ctr")
    (tmp_path / "ctr" / "2").mkdir()  # no files yet
    (tmp_path / "ctr" / "10").mkdir()
    shutil.copy(model_repository / "ctr" / "1" / "model.onnx", tmp_path / "ctr" / "10")  # no model.json yet
    shutil.copytree(model_repository / "ctr" / "1", tmp_path / "ctr" / ".staging")
    shutil.copytree(model_repository / "loc", tmp_path / "_old")
    assert scan_repository(tmp_path) == {"ctr": ["1"]}
    assert scan_repository(tmp_path / "missing") == {}
    assert sorted(["10", "9", "b", "a"], key=version_sort_key) == ["a", "b", "9", "10"]


def test_providers() -> None:
    assert resolve_providers(["auto"])[-1] == CPU
    assert ("CUDAExecutionProvider" in resolve_providers(["auto"])) == (
        "CUDAExecutionProvider" in ort.get_available_providers()
    )
    with pytest.raises(ValueError, match="not available"):
        resolve_providers(["NoSuchExecutionProvider"])
