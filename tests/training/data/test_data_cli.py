"""``python -m training.data``: commands work, and user mistakes end in one ``error:`` line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.data.__main__ import main
from training.data.shards import ShardSet

REPO = Path(__file__).resolve().parents[3]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--log-level", "WARNING", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_missing_file_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "training.data", "stats", str(tmp_path / "nope.tsv")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.tsv'}: no such file"]


@pytest.mark.parametrize(
    "args",
    [
        ["preprocess", "--input", "x"],
        ["synth-criteo", "--rows", "ten", "--out", "x"],
        ["frobnicate"],
        ["preprocess", "--input", "x", "--out", "y", "--split", "0.9,0.2"],
    ],
    ids=["missing-option", "bad-number", "unknown-command", "bad-split"],
)
def test_usage_mistakes(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_bad_values_and_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["synth-criteo", "--rows", "10", "--out", str(tmp_path / "s.tsv"), "--scale", "0"], capsys
    )
    assert code == 1 and err.startswith("error: invalid synthetic config value(s): scale")
    bad = tmp_path / "bad.tsv"
    bad.write_text("0\t1\n")
    code, _, err = run_cli(
        ["preprocess", "--format", "criteo", "--input", str(bad), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 1 and err.strip() == f"error: {bad}: line 1: expected 40 fields, found 2"


def test_synth_stats_preprocess(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "s.tsv.gz"
    code, out, _ = run_cli(["synth-criteo", "--rows", "3000", "--out", str(data), "--seed", "1"], capsys)
    assert code == 0 and "ceiling AUC" in out and data.is_file()
    code, out, _ = run_cli(["stats", str(data), "--json", "--plot", str(tmp_path / "rf.png")], capsys)
    report = json.loads(out)[0]
    assert code == 0 and report["rows"] == 3000 and len(report["features"]) == 26
    assert (tmp_path / "rf.png").stat().st_size > 10_000
    code, out, _ = run_cli(
        ["preprocess", "--input", str(data), "--out", str(tmp_path / "shards"), "--split", "0.6,0.2,0.2"],
        capsys,
    )
    assert code == 0
    assert ShardSet.open(tmp_path / "shards").meta["rows"] == {"train": 1800, "val": 600, "test": 600}
    code, out, _ = run_cli(["prepare", str(data), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0 and ShardSet.open(Path(out.strip())).meta["dataset"] == "synthetic-criteo"
