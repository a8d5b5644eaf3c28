"""loadtest.ops (the CPU ops benchmark) end to end on a tiny configuration, and its ratio arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loadtest import ops


def test_tiny_benchmark_writes_json_markdown_and_plot(robe_library: Path, tmp_path: Path) -> None:
    argv = ["--batch", "16", "--rounds", "2", "--dims", "16", "--no-full-table", "--out", str(tmp_path)]
    assert ops.main(argv) == 0
    result = json.loads((tmp_path / "ops.json").read_text())
    assert {r["variant"] for r in result["runs"]} == {"robe_op", "standard_ops"}
    assert result["robe_vs_standard_ops"] > 0 and result["robe_vs_full_gather"] is None
    assert (
        "robe_vs_standard_ops" in (tmp_path / "ops.md").read_text() and (tmp_path / "ops.png").stat().st_size
    )


def test_ratios_take_the_smallest_standard_ratio_and_the_d16_gather() -> None:
    runs = [
        {"variant": "robe_op", "embedding_dim": 16, "block_size": 16, "median_ms": 1.0},
        {"variant": "standard_ops", "embedding_dim": 16, "block_size": 16, "median_ms": 30.0},
        {"variant": "robe_op", "embedding_dim": 128, "block_size": 4, "median_ms": 10.0},
        {"variant": "standard_ops", "embedding_dim": 128, "block_size": 4, "median_ms": 120.0},
        {"variant": "full_gather", "embedding_dim": 16, "block_size": 16, "median_ms": 5.0},
    ]
    assert ops.ratios(runs) == {"robe_vs_standard_ops": 12.0, "robe_vs_full_gather": 5.0}


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        ops.OpsBenchConfig(dims=(6,))
