"""``python -m training.dlrm.results``: the study's grid, and the whole pipeline end to end in ``--smoke``
mode (tiny generated data, 3 methods, 2 budgets, 2 epochs) with a stand-in for the oracle."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.data.synth_file import write_synth_criteo
from training.dlrm import results
from training.dlrm.results_report import DESIGN_FIELDS


def test_the_null_control_is_the_generator_flag_and_v2_is_the_default(tmp_path: Path) -> None:
    profile = results.PROFILES["cpu"]
    v2, null = results.datasets(tmp_path, profile)
    assert (v2.name, null.name) == ("synthetic-v2", "synthetic-null")
    assert results.NULL_CONTROL_FLAG not in results.synth_command(v2, 10)
    command = results.synth_command(null, 10)
    assert command[1:4] == ["-m", "training.data", "synth-criteo"]
    assert command[-1] == results.NULL_CONTROL_FLAG


def test_the_grid_of_issue_11() -> None:
    profile = results.PROFILES["cpu"]
    grid = results.variants(profile)
    assert grid[0].label == "full" and len(grid) == 1 + 4 * 5
    assert {(v.label, v.compression) for v in grid[1:]} == {
        (label, x) for label in ("hash", "robe Z=1", "robe Z=16", "lma") for x in (4, 16, 64, 256, 1000)}
    seeds = {(v.label, v.compression): results.seeds_of(profile, v) for v in grid}
    assert seeds[("full", None)] == seeds[("lma", 16)] == seeds[("hash", 64)] == (0, 1, 2)
    assert seeds[("robe Z=1", 4)] == seeds[("lma", 1000)] == (0,)
    jobs = results.grid(results.datasets(Path("d"), profile), profile, Path("r"))
    assert len(jobs) == 2 * (21 + 2 * 9)
    dataset, variant, seed, run_dir = jobs[0]
    argv = results.run_argv(dataset, profile, variant, seed, run_dir, Path("c"), "cpu")
    given = dict(zip(argv, [*argv[1:], ""], strict=True))
    # validation AUC twice per epoch of the 240K training rows; stop after one epoch without progress
    assert given["--eval-every"] == str(240_000 // 1024 // 2)
    assert (given["--patience"], given["--epochs"]) == ("2", "8")
    first_seed_key = [j for j in jobs if j[2] == 0 and j[1].compression in (None, 16, 64)]
    assert jobs[:len(first_seed_key)] == first_seed_key  # an interrupted study has the key points first


def test_a_missing_null_control_flag_is_one_readable_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(results, "NULL_CONTROL_FLAG", "--no-such-flag-anywhere")
    monkeypatch.setattr(results, "datasets", lambda data_dir, profile, only=None: [
        results.Dataset("synthetic-null", tmp_path / "null.tsv", ("--no-such-flag-anywhere",))])
    assert results.main(["--smoke", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "has no --no-such-flag-anywhere flag" in err and err.count("\n") == 1


def _fake_oracle(calls: list[dict[str, Any]]) -> types.ModuleType:
    """A stand-in for ``training.data.oracle`` (its real rows come from the generator's true logits)."""
    module = types.ModuleType("training.data.oracle")

    def oracle_table(data: Path, budgets_bytes: list[int], dim: int, split: str = "test") -> dict[str, Any]:
        calls.append({"data": data, "budgets_bytes": budgets_bytes, "dim": dim, "split": split})
        return {"ceiling_auc": 0.8, "no_per_value_auc": 0.7,
                "rows": [{"budget_bytes": b, "values_kept": b // 64, "auc": 0.75}
                         for b in sorted(budgets_bytes)]}

    module.oracle_table = oracle_table  # type: ignore[attr-defined]
    return module


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = results.PROFILES["smoke"]
    for dataset in results.datasets(tmp_path / "data", profile):
        # generator v2 and its null control come from another branch: today's generator stands in for both
        write_synth_criteo(dataset.path, profile.rows, seed=0)
    calls: list[dict[str, Any]] = []
    monkeypatch.setitem(sys.modules, "training.data.oracle", _fake_oracle(calls))
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    argv = ["--smoke", "--runs", str(runs), "--docs", str(docs), "--data-dir", str(tmp_path / "data"),
            "--device", "cpu", "--jobs", "1"]
    assert results.main(argv) == 0

    body = json.loads((docs / "dlrm.json").read_text())
    rows = body["results"]
    assert len(rows) == 2 * (2 + 2 + 2)  # full: 2 seeds; robe and lma at 16x and 64x: 1 seed
    for row in rows:
        assert tuple(row) == DESIGN_FIELDS
        assert 0.5 < row["auc"] < 1 and 0 < row["logloss"] < 1, row
        assert row["ran_on"].startswith("cpu: ") and row["config"] == "tiny" and 0 < row["epochs"] <= 2
        assert row["array_bytes"] <= row["parameter_bytes"]
    full = next(r for r in rows if r["method"] == "full")
    robe = next(r for r in rows if r["method"] == "robe" and r["block_size"] == 16)
    assert full["compression"] == 1.0 and robe["compression"] == pytest.approx(16, rel=0.01)
    details = body["details"]
    assert [(d["dataset"], d["seed"]) for d in details] == [(r["dataset"], r["seed"]) for r in rows]
    assert all(d["slots_per_frequent_value"] > 0 and d["val_auc"] > 0.5 for d in details)
    # the test AUC in dlrm.json is the one of the saved test logits
    first = details[0]
    saved = np.load(Path(first["command"].split("--out ")[1].split()[0]) / "test_predictions.npz")
    from training.dlrm.metrics import roc_auc

    assert rows[0]["auc"] == pytest.approx(roc_auc(saved["labels"], saved["logits"]), abs=1e-9)

    summary = {(e["dataset"], e["label"], e["nominal_compression"]): e for e in body["summary"]}
    lma16 = summary[("synthetic-v2", "lma", 16.0)]
    assert summary[("synthetic-v2", "full", 1.0)]["seeds"] == 2
    assert lma16["seeds"] == 1 and lma16["vs_full"]["low"] <= lma16["vs_full"]["difference"] <= \
        lma16["vs_full"]["high"]
    targets = {t["target"]: t for t in body["targets"]}
    assert targets["generator v2: ROBE (best Z) at 16x >= full - 0.001"]["met"] in (True, False)
    lma_vs_robe = targets["generator v2: LMA - ROBE >= +0.002 AUC at 16x with the 95% interval above 0"]
    assert lma_vs_robe["met"] in (True, False) and "lma - robe Z=16" in lma_vs_robe["measured"]
    assert targets["null control: LMA - ROBE within its interval of 0 at 64x"]["met"] in (True, False)
    assert targets["generator v2: ROBE beats the hashing trick by >= 0.01 AUC at 64x"]["met"] is None
    # the oracle stand-in got the study's budgets: fractions of the full tables' bytes
    full_bytes = details[0]["full_embedding_bytes"]
    assert calls[0]["budgets_bytes"] == [int(full_bytes / 16), int(full_bytes / 64)] and calls[0]["dim"] == 16
    page = (docs / "dlrm.md").read_text()
    assert "### Targets (issue 11)" in page and "| lma | 16x / 16x |" in page
    from training.dlrm.budget import format_size

    b16 = int(full_bytes / 16)  # rows come back in increasing budget order: matched by budget, not position
    assert f"| 16x | {format_size(b16)} | {b16 // 64:,} | 0.7500 |" in page
    assert "ceiling AUC 0.8000" in page and (docs / "dlrm_auc_vs_memory.png").stat().st_size > 10_000

    # a finished run is skipped: nothing retrains, the report is rebuilt from the same runs
    stamps = {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")}
    assert results.main(argv) == 0
    assert {p: p.stat().st_mtime_ns for p in runs.rglob("checkpoint.pt")} == stamps
    assert json.loads((docs / "dlrm.json").read_text())["results"] == rows

    # without the oracle module the report says so instead of failing
    monkeypatch.setitem(sys.modules, "training.data.oracle", None)
    for cached in (runs / "cache").glob("oracle-*.json"):
        cached.unlink()
    assert results.main([*argv, "--report-only"]) == 0
    assert "not available (training.data.oracle is not installed" in (docs / "dlrm.md").read_text()
