"""Export of every embedding method: repository layout, model.json, one lookup node, parity, portability."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export import graph
from export.dlrm import ctr_model
from export.exporter import ExportOptions, export_run
from export.functions import DOMAIN
from export.portability import run as portability_run
from export.verify import EDGE_IDS, kernel_library_built, session, verify_model_dir
from training.dlrm.checkpoint import load_checkpoint, model_from_checkpoint

CARD_KEYS = ("name", "version", "task", "inputs", "outputs", "embedding", "parameter_bytes", "metrics",
             "dataset", "created", "onnx_sha256", "custom_ops")
METHODS = ("full", "hash", "robe", "lma")  # as tests/export/conftest.py builds them
NUM_FEATURES = 5
LOOKUP_OP = {"full": "VocabLookup", "robe": "RobeEmbedding", "lma": "LmaEmbedding"}


@pytest.mark.parametrize("method", METHODS)
def test_repository_entry_and_model_card(exported: dict[str, Path], method: str) -> None:
    model_dir = exported[method]
    assert model_dir.name == "1" and model_dir.parent.name == f"dlrm-{method}"
    assert sorted(p.name for p in model_dir.iterdir()) == ["model.json", "model.onnx", "verify.npz"]
    card = json.loads((model_dir / "model.json").read_text())
    assert all(key in card for key in CARD_KEYS)
    assert card["task"] == "ctr" and card["embedding"]["method"] == method
    assert card["inputs"] == [{"name": "dense", "datatype": "FP32", "shape": [-1, 13]},
                              {"name": "categorical", "datatype": "INT64", "shape": [-1, NUM_FEATURES]}]
    assert card["outputs"] == [{"name": "probability", "datatype": "FP32", "shape": [-1]}]
    assert card["custom_ops"] is (method != "hash")
    assert card["preprocessing"] == {"dense": "none", "categorical": "none"}  # raw values go in
    assert card["in_graph_preprocessing"] == {"dense": "log1p_clip0"}
    assert card["verification"]["max_abs_diff"] <= 1e-5
    assert card["parameter_bytes"] > card["embedding"]["bytes"] > 0


@pytest.mark.parametrize("method", METHODS)
def test_each_lookup_is_one_node(exported: dict[str, Path], method: str) -> None:
    model = onnx.load(str(exported[method] / "model.onnx"))
    custom = [n for n in model.graph.node if n.domain]
    assert model.opset_import[0].version >= 18
    if method == "hash":  # standard ops only, no function left
        assert custom == [] and len(model.functions) == 0
        assert {o.domain for o in model.opset_import} == {""}
        return
    assert [(n.domain, n.op_type) for n in custom] == [(DOMAIN, LOOKUP_OP[method])]
    assert [(f.domain, f.name) for f in model.functions] == [(DOMAIN, LOOKUP_OP[method])]


@pytest.mark.parametrize("method", METHODS)
def test_dynamic_batch_and_large_ids_match_torch(exported: dict[str, Path], runs: dict[str, Path],
                                                 method: str) -> None:
    reference = ctr_model(model_from_checkpoint(load_checkpoint(runs[method])), exportable=False)
    paths = ["kernel", "function"] if kernel_library_built() and method != "hash" else ["function"]
    rng = np.random.default_rng(1)
    for batch in (1, 7, 300):
        ids = rng.integers(0, 1 << 62, size=(batch, NUM_FEATURES), dtype=np.int64)
        ids[0] = EDGE_IDS[-NUM_FEATURES:]  # above 2^24, 2^31 and 2^53, up to 2^62 - 1
        dense = rng.integers(-5, 10**6, size=(batch, 13)).astype(np.float32)
        with torch.no_grad():
            want = reference(torch.from_numpy(dense), torch.from_numpy(ids)).numpy()
        for path in paths:
            sess = session(str(exported[method] / "model.onnx"), path == "kernel")
            got = sess.run(None, {"dense": dense, "categorical": ids})[0]
            assert got.shape == (batch,)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_portable_export_has_standard_ops_only(runs: dict[str, Path], tmp_path: Path) -> None:
    final = export_run(runs["lma"], ExportOptions(tmp_path, "dlrm-lma", portable=True))
    model = onnx.load(str(final / "model.onnx"))
    assert {n.domain for n in model.graph.node} == {""} and len(model.functions) == 0
    card = json.loads((final / "model.json").read_text())
    assert card["custom_ops"] is False and card["graph"]["portable"] is True


def test_external_data_above_the_threshold(runs: dict[str, Path], tmp_path: Path) -> None:
    final = export_run(runs["robe"], ExportOptions(tmp_path, "dlrm-robe", version=3, external_data_bytes=0))
    assert (final / "model.onnx.data").is_file()
    card = json.loads((final / "model.json").read_text())
    assert card["version"] == 3 and len(card["onnx_data_sha256"]) == 64
    assert verify_model_dir(final).max_abs_diff <= 1e-5


def test_categorical_only_model(tmp_path: Path, run_factory: Callable[..., Path]) -> None:
    """Avazu-like data (no dense features): the model has one input."""
    run = run_factory(tmp_path / "run", "robe", num_dense=0)
    final = export_run(run, ExportOptions(tmp_path / "models", "avazu-robe"))
    card = json.loads((final / "model.json").read_text())
    assert [i["name"] for i in card["inputs"]] == ["categorical"]
    assert card["preprocessing"] == {"categorical": "none"} and card["in_graph_preprocessing"] == {}


def test_next_version_is_picked(runs: dict[str, Path], tmp_path: Path) -> None:
    first = export_run(runs["hash"], ExportOptions(tmp_path, "m"))
    second = export_run(runs["hash"], ExportOptions(tmp_path, "m"))
    assert (first.name, second.name) == ("1", "2")
    assert not list((tmp_path / "m").glob(".*"))  # no staging directory left behind


@pytest.mark.skipif(not kernel_library_built(), reason="ai.robe library not built (make kernels)")
def test_function_fallback_runs_plain_and_kernel_takes_precedence() -> None:
    """DESIGN.md section 4: the executed graph keeps the ai.robe node only when the library is loaded."""
    verdicts = portability_run()["verdicts"]
    assert isinstance(verdicts, dict)
    for op, verdict in verdicts.items():
        assert all(verdict.values()), (op, verdict)


def test_node_counts(exported: dict[str, Path]) -> None:
    counts = {m: graph.node_counts(onnx.load(str(exported[m] / "model.onnx"))) for m in METHODS}
    for method in ("robe", "lma", "full"):
        assert counts[method]["nodes_inlined"] > counts[method]["nodes"]
    assert counts["hash"]["nodes_inlined"] == counts["hash"]["nodes"]


@pytest.mark.parametrize("method", METHODS)
def test_service_accepts_the_model_card(exported: dict[str, Path], method: str) -> None:
    """The contract with the service: its own manifest parser reads what the exporter writes."""
    repository = pytest.importorskip("service.repository")
    manifest = repository.read_manifest(exported[method])
    assert manifest.onnx_sha256 == json.loads((exported[method] / "model.json").read_text())["onnx_sha256"]
    assert {name: p.value for name, p in manifest.preprocessing.items()} == {"dense": "none",
                                                                             "categorical": "none"}
