"""Engine benchmark on the tiny shape: exported graphs, the stage model, results pages, archived GPU rows."""

from __future__ import annotations

import json
import mmap
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from kernels import reference as ref
from loadtest import engine, engine_report
from loadtest.engine_models import Method, vocabulary
from loadtest.sessions import make_session, model_files, page_in
from loadtest.shapes import get_shape

TINY = get_shape("tiny")


def initializer(path: Path, suffix: str) -> np.ndarray:
    model = onnx.load(str(path))
    (tensor,) = [t for t in model.graph.initializer if t.name.endswith(suffix)]
    return numpy_helper.to_array(tensor)


def robe_params(path: Path) -> ref.HashParams:
    nodes = onnx.load(str(path), load_external_data=False).graph.node
    node = next(n for n in nodes if n.op_type == "RobeEmbedding")
    attrs = {a.name: list(a.ints) for a in node.attribute if a.ints}
    return ref.HashParams(0, *(np.asarray(attrs[k], dtype=np.int64) for k in ("a1", "a2", "c", "g1", "g2")))


def test_embedding_stage_of_robe_equals_the_reference(tiny_models) -> None:
    model = tiny_models[Method.ROBE]
    ids = np.random.default_rng(0).integers(0, 1 << 62, size=(5, TINY.num_features), dtype=np.int64)
    (got,) = make_session(model.stage).run(None, {"categorical": ids})
    memory = initializer(model.model, "memory")
    want = ref.robe_lookup(ids, memory, robe_params(model.model), TINY.embedding_dim, TINY.block_size)
    np.testing.assert_array_equal(got, want)


def test_embedding_stage_of_full_reads_the_vocabulary_rows(tiny_models) -> None:
    model = tiny_models[Method.FULL]
    keys, offsets = vocabulary(TINY)
    ids = np.array([[1] * TINY.num_features, [min(3, r) for r in TINY.rows]], dtype=np.int64)
    (got,) = make_session(model.stage).run(None, {"categorical": ids})
    table = initializer(model.model, "embedding.weight")
    np.testing.assert_array_equal(got, table[ref.vocab_lookup(ids, keys, offsets)])


def test_int8_model_stays_close_to_fp32(tiny_models) -> None:
    model = tiny_models[Method.LMA]
    rng = np.random.default_rng(1)
    feeds = {"dense": rng.integers(0, 100, size=(16, 13)).astype(np.float32),
             "categorical": rng.integers(1, 50, size=(16, TINY.num_features)).astype(np.int64)}
    (fp32,) = make_session(model.model).run(None, feeds)
    (int8,) = make_session(model.int8).run(None, feeds)
    np.testing.assert_allclose(int8, fp32, atol=0.02)


def test_page_in_touches_every_mapped_page_of_the_named_files(tmp_path: Path) -> None:
    weights, other = tmp_path / "model.onnx.data", tmp_path / "other.bin"
    for path in (weights, other):
        path.write_bytes(b"\1" * (3 << 20))
    with weights.open("rb") as a, other.open("rb") as b:
        mapped = [mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) for f in (a, b)]
        assert page_in([weights]) == 3 << 20  # the other mapping is left alone
        for region in mapped:
            region.close()
    assert model_files(tmp_path / "model.onnx") == [weights]  # model.onnx itself was never written


def test_engine_cli_writes_the_contract(tiny_models, tmp_path: Path) -> None:
    work = next(iter(tiny_models.values())).directory.parent.parent
    args = ["--shape", "tiny", "--batch", "1,16", "--rounds", "3", "--cold-starts", "1",
            "--work-dir", str(work), "--out", str(tmp_path)]
    assert engine.main(args) == 0
    data = json.loads((tmp_path / "engine.json").read_text())
    keys = {"provider", "device", "shape", "batch", "method", "samples_per_s", "ratio_robe_vs_full"}
    assert all(keys <= set(run) for run in data["runs"])
    groups = {(r["precision"], r["stage"]) for r in data["runs"]}
    assert groups == {("fp32", "end_to_end"), ("int8", "end_to_end"), ("fp32", "embedding")}
    assert {r["method"] for r in data["runs"]} == {"full", "hash", "robe", "lma"}
    assert all(r["ratio_robe_vs_full"] == 1.0 for r in data["runs"] if r["method"] == "full")
    memory = {(m["method"], m["precision"]): m for m in data["memory"]}
    assert len(memory) == 8 and all(m["rss_bytes"] > 0 and m["cold_start_s"] > 0 for m in memory.values())
    page = (tmp_path / "engine.md").read_text()
    assert "ROBE end to end (fp32 MLPs)" in page and "Not measured yet" in page
    assert (tmp_path / "engine.png").stat().st_size > 0


DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks"


def test_published_page_is_what_the_json_renders() -> None:
    """docs/benchmarks/engine.md is rendered from engine.json (its GPU section from gpu_bench v1's rows)."""
    data = engine_report.load(DOCS)
    page = engine_report.markdown(data)
    assert page == (DOCS / "engine.md").read_text()
    assert "## pytorch-cuda: PyTorch DLRM on the GPU" in page and "gpu_bench v1" in page
    assert "|   kaggle |    zipf |   512 |  1,656,726 |" in page


def test_archived_gpu_rows_stay_beside_new_cpu_runs(tmp_path: Path) -> None:
    shutil.copy(DOCS / "engine.json", tmp_path / "engine.json")
    before = engine_report.load(tmp_path)
    gpu_runs = [r for r in before["runs"] if r["provider"] == "pytorch-cuda"]
    cpu_run = {"provider": "onnxruntime-cpu", "shape": "tiny", "batch": 4, "method": "full",
               "precision": "fp32", "stage": "end_to_end", "samples_per_s": 10.0, "ratio_robe_vs_full": 1.0,
               "median_s": 0.4}  # fmt: skip
    result = {"provider": "onnxruntime-cpu", "runs": [cpu_run], "memory": [], "command": "python -m x",
              "conditions": {"cpu": "test cpu"}, "shape": {"name": "tiny"}}  # fmt: skip
    engine_report.publish(result, tmp_path)
    after = engine_report.load(tmp_path)
    assert [r for r in after["runs"] if r["provider"] == "pytorch-cuda"] == gpu_runs
    assert [r["device"] for r in after["runs"] if r["provider"] == "onnxruntime-cpu"] == ["test cpu"]
    assert after["sources"]["pytorch-cuda"] == before["sources"]["pytorch-cuda"]
    page = (tmp_path / "engine.md").read_text()
    assert "## pytorch-cuda: PyTorch DLRM on the GPU" in page and "commit 6c3d4b3" in page


def test_bad_arguments_exit_with_one_line(capsys) -> None:
    assert engine.main(["--shape", "kaggle", "--rows-scale", "2"]) == 2
    assert capsys.readouterr().err.strip() == "error: --rows-scale must be in (0, 1], got 2.0"
    with pytest.raises(SystemExit):
        engine.main(["--provider", "tpu"])
