"""Verification refuses broken models; the CLIs fail with one readable line and a non-zero status."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from export import graph
from export.__main__ import main as export_main
from export.repository import sha256_file
from export.verify import VerificationError, verify_model_dir
from export.verify import main as verify_main

REPO_ROOT = Path(__file__).resolve().parents[2]


def _copy(model_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy" / "1"
    shutil.copytree(model_dir, target)
    return target


def _rewrite_sha(model_dir: Path) -> None:
    card_path = model_dir / "model.json"
    card = json.loads(card_path.read_text())
    card["onnx_sha256"] = sha256_file(model_dir / "model.onnx")
    card_path.write_text(json.dumps(card))


def test_good_model_passes(exported: dict[str, Path]) -> None:
    report = verify_model_dir(exported["lma"])
    assert report.max_abs_diff <= 1e-5 and report.lookup_ids > 0 and report.rows > 0


def test_refuses_a_corrupted_file(exported: dict[str, Path], tmp_path: Path) -> None:
    model_dir = _copy(exported["robe"], tmp_path)
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (model_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(VerificationError, match="sha256"):
        verify_model_dir(model_dir)


@pytest.mark.parametrize("method", ["robe", "lma"])
def test_refuses_a_version_1_model_naming_the_version(exported: dict[str, Path], tmp_path: Path,
                                                      method: str) -> None:
    model_dir = _copy(exported[method], tmp_path)
    model = onnx.load(str(model_dir / "model.onnx"))
    next(o for o in model.opset_import if o.domain == "ai.robe").version = 1
    onnx.save(model, str(model_dir / "model.onnx"))
    _rewrite_sha(model_dir)
    with pytest.raises(VerificationError, match=r"ai\.robe operators version 1 .*implements version 2"):
        verify_model_dir(model_dir)


def test_refuses_model_json_hash_parameters_of_version_1(exported: dict[str, Path], tmp_path: Path) -> None:
    model_dir = _copy(exported["robe"], tmp_path)
    card_path = model_dir / "model.json"
    card = json.loads(card_path.read_text())
    del card["embedding"]["parameters"]["hash"]["version"]  # version 1 cards had none
    card_path.write_text(json.dumps(card))
    with pytest.raises(VerificationError, match=r"model\.json.s embedding: hash version 1 is not"):
        verify_model_dir(model_dir)


def test_refuses_a_hash_that_disagrees_with_model_json(exported: dict[str, Path], tmp_path: Path) -> None:
    """A consistent-looking file (sha256 updated) whose lookup no longer follows the spec."""
    model_dir = _copy(exported["robe"], tmp_path)
    model = onnx.load(str(model_dir / "model.onnx"))
    node = graph.lookup_nodes(model)[0]
    attr = next(a for a in node.attribute if a.name == "a1")
    attr.ints[0] += 1
    onnx.save(model, str(model_dir / "model.onnx"))
    _rewrite_sha(model_dir)
    with pytest.raises(VerificationError, match="differs"):
        verify_model_dir(model_dir)


def test_refuses_wrong_rows_in_a_standard_op_graph(exported: dict[str, Path], tmp_path: Path) -> None:
    """Hash models have no ai.robe node: the rows themselves are compared with kernels/reference."""
    model_dir = _copy(exported["hash"], tmp_path)
    card_path = model_dir / "model.json"
    card = json.loads(card_path.read_text())
    card["embedding"]["parameters"]["hash"]["c"][0] += 1  # model.json now describes another hash
    card_path.write_text(json.dumps(card))
    with pytest.raises(VerificationError, match="kernels/reference"):
        verify_model_dir(model_dir)


def test_refuses_outputs_that_differ_from_torch(exported: dict[str, Path], tmp_path: Path) -> None:
    model_dir = _copy(exported["full"], tmp_path)
    with np.load(model_dir / "verify.npz") as bundle:
        arrays = {k: bundle[k] for k in bundle.files}
    arrays["output/probability"] = arrays["output/probability"] + 1e-3
    np.savez(model_dir / "verify.npz", **arrays)
    with pytest.raises(VerificationError, match="differs from torch"):
        verify_model_dir(model_dir)


def test_verify_cli(exported: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify_main([str(exported["full"])]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["max_abs_diff"] <= 1e-5
    assert verify_main([str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "model.json" in err[-1]


@pytest.mark.parametrize("argv, message", [
    (["{missing}", "--repository", "{repo}", "--name", "x"], "does not exist"),
    (["{run}", "--repository", "{repo}", "--name", "bad name!"], "invalid model name"),
    (["{run}", "--repository", "{repo}", "--name", "dlrm-hash", "--version", "1"], "already exists"),
    (["{run}", "--repository", "{repo}", "--name", "x", "--version", "0"], "positive"),
    (["{empty}", "--repository", "{repo}", "--name", "x"], "not found"),
])
def test_export_cli_errors(argv: list[str], message: str, runs: dict[str, Path], exported: dict[str, Path],
                           repository: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = {"missing": tmp_path / "nope", "repo": repository, "run": runs["hash"], "empty": tmp_path}
    assert export_main([a.format(**{k: str(v) for k, v in paths.items()}) for a in argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]


def test_usage_error_is_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "export", "--name", "x"], capture_output=True, text=True,
                            cwd=REPO_ROOT, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: ")
