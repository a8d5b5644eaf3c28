"""``python -m loadtest.hybrid`` end to end on the tiny shape: variants timed, page and JSON written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import hybrid


def test_hybrid_benchmark_writes_runs_and_page(tmp_path: Path) -> None:
    out = tmp_path / "hybrid_cpu"
    args = ["--shape", "tiny", "--rows-scale", "1", "--batches", "32", "--rounds", "3", "--max-seconds", "5",
            "--work-dir", str(tmp_path / "work"), "--out", str(out)]  # fmt: skip
    assert hybrid.main(args) == 0
    assert hybrid.main(args) == 0  # a second run is appended, not overwritten
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert len(runs) == 2
    row = runs[0]["rows"][0]
    assert row["batch"] == 32 and row["max_abs_difference"] <= 1e-5
    assert set(row["variants"]) == {"whole", "split", "split-pipelined"}
    assert all(len(v["samples_s_per_batch"]) >= 3 for v in row["variants"].values())
    assert row["ratio_split_vs_whole"] > 0 and {"lookup", "dense"} <= set(row["stage_median_s"])
    page = out.with_suffix(".md").read_text()
    assert "split/whole median" in page and "python -m loadtest.hybrid --shape tiny" in page


def test_hybrid_benchmark_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert hybrid.main(["--rows-scale", "2"]) == 2
    assert "rows-scale" in capsys.readouterr().err
