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
    # 1 + 1 is timed beside the unsized 2 + 2
    assert hybrid.main([*args, "--threads", "2", "--split-threads", "1,1"]) == 0
    assert hybrid.main([*args, "--threads", "2"]) == 0  # the service's rule on the CPU: 2 + 2; appended
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert len(runs) == 2
    assert runs[0]["threads"] == {"whole": 2, "lookup": 1, "dense": 1}
    assert runs[1]["threads"] == {"whole": 2, "lookup": 2, "dense": 2}
    row = runs[0]["rows"][0]
    assert row["batch"] == 32 and row["max_abs_difference"] <= 1e-5
    unsized = {"split-unsized", "split-pipelined-unsized"}
    assert set(row["variants"]) == {"whole", "split", "split-pipelined", *unsized}
    assert all(len(v["samples_s_per_batch"]) >= 3 for v in row["variants"].values())
    assert row["ratio_split_vs_whole"] > 0 and {"lookup", "dense"} <= set(row["stage_median_s"])
    assert row["ratio_unsized_vs_whole"] > 0 and row["ratio_pipelined_unsized_vs_whole"] > 0
    assert set(runs[1]["rows"][0]["variants"]) == {"whole", "split", "split-pipelined"}
    page = out.with_suffix(".md").read_text()
    assert "split/whole median" in page and "python -m loadtest.hybrid --shape tiny" in page
    assert "threads 2 / 1+1, batch 32, 1 runs" in page and "unsized pipelined/whole median" in page
    assert "| 2 / 2+2 | tiny (1) | 32 |" in page
    conditions = runs[0]["machine"]
    assert len(conditions["load_average_at_start"]) == len(conditions["load_average_at_end"]) == 3


def test_hybrid_page_reads_runs_from_before_the_thread_rule(tmp_path: Path) -> None:
    """Runs recorded before the split was sized gave every session ``--threads``: shown as N / N+N."""
    row = {"batch": 256, "ratio_split_vs_whole": 0.9, "ratio_pipelined_vs_whole": 1.1,
           "stage_median_s": {"lookup": 0.001, "dense": 0.003},
           "variants": {name: {"samples_per_s": 1000.0} for name in ("whole", "split", "split-pipelined")}}
    run = {"machine": {"cpu": "x", "cores": 2, "load_average_at_start": [0.5]}, "config": {"threads": 2},
           "shape": "kaggle", "rows_scale": 0.05, "rows": [row], "command": "python -m loadtest.hybrid"}
    page = hybrid.render_markdown([run], "hybrid_cpu.json")
    assert "| 2 / 2+2 | kaggle (0.05) | 256 |" in page and "| 0.900 | 1,000 | 1.100 | - | - |" in page
    assert "| x, 2 cores | - / 0.5 |" in page  # recorded after the timing only


def test_hybrid_benchmark_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert hybrid.main(["--rows-scale", "2"]) == 2
    assert "rows-scale" in capsys.readouterr().err
    assert hybrid.main(["--split-threads", "1"]) == 2
    assert "expected LOOKUP,DENSE" in capsys.readouterr().err
