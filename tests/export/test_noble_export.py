"""export/noble.py: ONNX graph of a NObLe ensemble == torch, dynamic batch, model.json fields, full export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.noble import compare, export_noble, run_onnx, run_torch
from training.noble.cli import main as noble_main
from training.noble.data import load_splits, write_synthetic_uji
from training.noble.metrics import Predictions, evaluate
from training.noble.train import load_noble

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("noble")
    data = write_synthetic_uji(root / "data", train_rows=600, validation_rows=100, seed=1)
    run = root / "run"
    assert noble_main(["--data", str(data), "--out", str(run), "--members", "2", "--epochs", "4",
                       "--hidden", "32", "--cell-sizes", "4,8", "--lr", "0.01"]) == 0
    return run


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("export")
    return out, export_noble(run_dir, out)


def test_graph_contract(exported: tuple[Path, dict]) -> None:
    out, _ = exported
    model = onnx.load(str(out / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    (rssi,) = model.graph.input
    assert rssi.name == "rssi" and rssi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = rssi.type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 520
    types = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert types == {"longitude": onnx.TensorProto.FLOAT, "latitude": onnx.TensorProto.FLOAT,
                     "floor": onnx.TensorProto.INT64, "building": onnx.TensorProto.INT64}
    assert not [n for n in model.graph.node if n.domain not in ("", "ai.onnx")]


@pytest.mark.parametrize("batch", [1, 7])
def test_onnxruntime_matches_torch_for_any_batch(run_dir: Path, exported: tuple[Path, dict],
                                                 batch: int) -> None:
    out, _ = exported
    model, state = load_noble(run_dir)
    rssi = np.asarray(state["data"]["verify_rssi"][:batch], dtype=np.float32)
    rssi[0, :5] = [100, -104, -30, 0, -120]  # not seen, floor, strong, saturated, below the floor
    onnx_out, torch_out = run_onnx(out / "model.onnx", rssi), run_torch(model, rssi)
    diffs = compare(torch_out, onnx_out)
    assert diffs["floor"] == 0 and diffs["building"] == 0
    assert all(onnx_out[k].shape == (batch,) for k in onnx_out)


def test_card_fields_and_metrics_equal_offline_evaluation(run_dir: Path,
                                                          exported: tuple[Path, dict]) -> None:
    out, fields = exported
    _, state = load_noble(run_dir)
    assert fields["task"] == "localization" and fields["embedding"] == {"method": "none"}
    assert fields["custom_ops"] is False and fields["dataset"].startswith("UJIIndoorLoc")
    assert [i["name"] for i in fields["inputs"]] == ["rssi"] and fields["inputs"][0]["shape"] == [-1, 520]
    assert [o["name"] for o in fields["outputs"]] == ["longitude", "latitude", "floor", "building"]
    weights = state["state_dict"].values()
    assert fields["parameter_bytes"] == sum(v.numel() * v.element_size() for v in weights)
    _, validation = load_splits(Path(state["data"]["path"]))
    served = run_onnx(out / "model.onnx", validation.rssi)
    offline = evaluate(Predictions(*(served[k] for k in ("longitude", "latitude", "floor", "building"))),
                       validation.truth()).to_dict()
    assert {k: fields["metrics"][k] for k in offline} == offline
    assert fields["metrics"]["mean_error_m"] == pytest.approx(state["metrics"]["mean_error_m"], abs=0.05)
    with np.load(out / "verify.npz") as bundle:
        assert set(bundle.files) == {"input/rssi", "output/longitude", "output/latitude", "output/floor",
                                     "output/building"}


def test_export_without_the_data_uses_saved_rows(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    state = torch.load(copy / "checkpoint.pt", weights_only=False)
    state["data"]["path"] = str(tmp_path / "moved-away")
    torch.save(state, copy / "checkpoint.pt")
    fields = export_noble(copy, tmp_path / "out")
    assert fields["metrics"]["mean_error_m"] == state["metrics"]["mean_error_m"]
    assert "checkpoint" in fields["metrics"]["source"]


def test_compare_rejects_a_wrong_graph() -> None:
    good = {"longitude": np.array([1.0], np.float32), "latitude": np.array([4.8e6], np.float32),
            "floor": np.array([1]), "building": np.array([0])}
    compare(good, dict(good))
    with pytest.raises(RuntimeError, match="floor"):
        compare(good, {**good, "floor": np.array([2])})
    with pytest.raises(RuntimeError, match="longitude"):
        compare(good, {**good, "longitude": np.array([1.1], np.float32)})


def test_full_export_through_the_repository(run_dir: Path, tmp_path: Path) -> None:
    import export.exporter as exporter
    final = exporter.export_run(run_dir, exporter.ExportOptions(tmp_path / "models", "noble-wifi"))
    card = json.loads((final / "model.json").read_text())
    assert card["task"] == "localization" and card["name"] == "noble-wifi"
    assert card["verification"]["rows"] > 0 and card["custom_ops"] is False
