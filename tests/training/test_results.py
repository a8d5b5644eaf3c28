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


def test_the_grid_of_issue_11(monkeypatch: pytest.MonkeyPatch) -> None:
    profile = results.PROFILES["cpu"]
    monkeypatch.setattr(results, "LMA_TUNED", None)
    grid = results.variants(profile)
    candidates = set(results.LMA_CANDIDATES)
    main = [v for v in grid if v.label != results.LMA_EQUAL_ARRAY and v.label not in candidates]
    assert main[0].label == "full" and len(main) == 1 + 4 * 5
    assert {(v.label, v.compression) for v in main[1:]} == {
        (label, x) for label in ("hash", "robe Z=1", "robe Z=16", "lma") for x in (4, 16, 64, 256, 1000)}
    # LMA at equal array bytes (the paper's accounting) at the key budgets; the candidates at 16x only
    assert {(v.compression, v.extra) for v in grid if v.label == results.LMA_EQUAL_ARRAY} == {
        (16, ("--lma-budget", "array")), (64, ("--lma-budget", "array"))}
    assert {(v.label, v.compression) for v in grid if v.label in candidates} == {(c, 16) for c in candidates}
    seeds = {(v.label, v.compression): results.seeds_of(profile, v) for v in grid}
    assert seeds[("full", None)] == seeds[("lma", 16)] == seeds[("hash", 64)] == (0, 1, 2)
    assert seeds[(results.LMA_EQUAL_ARRAY, 64)] == (0, 1, 2)
    assert seeds[("robe Z=1", 4)] == seeds[("lma", 1000)] == seeds[("lma k=4", 16)] == (0,)
    jobs = results.grid(results.datasets(Path("d"), profile), profile, Path("r"))
    selection = [j for j in jobs if j[1].label in candidates]
    assert len(selection) == len(candidates) and {j[0].name for j in selection} == {"synthetic-v2"}
    assert len(jobs) == 2 * (21 + 2 * 9) + 2 * 2 * 3 + len(candidates)
    # the tuned candidate then runs like a key point: every seed, 16x and 64x, both data sets
    monkeypatch.setattr(results, "LMA_TUNED", "lma k=4")
    tuned = [j for j in results.grid(results.datasets(Path("d"), profile), profile, Path("r"))
             if j[1].label == "lma k=4"]
    assert sorted((j[0].name, j[1].compression, j[2]) for j in tuned) == sorted(
        (d, x, s) for d in ("synthetic-v2", "synthetic-null") for x in (16, 64) for s in (0, 1, 2))
    argv = results.run_argv(tuned[0][0], profile, tuned[0][1], 0, Path("r"), Path("c"), "cpu")
    assert argv[-2:] == ["--lma-k", "4"]
    dataset, variant, seed, run_dir = jobs[0]
    argv = results.run_argv(dataset, profile, variant, seed, run_dir, Path("c"), "cpu")
    given = dict(zip(argv, [*argv[1:], ""], strict=True))
    # validation AUC twice per epoch of the 240K training rows; stop after one epoch without progress
    assert given["--eval-every"] == str(240_000 // 1024 // 2)
    assert (given["--patience"], given["--epochs"]) == ("2", "8")
    key = [j for j in jobs if j[1].compression in (None, 16, 64)]
    assert jobs[:len(key)] == key  # an interrupted study has the key points first
    assert [j[2] != 0 for j in key] == sorted(j[2] != 0 for j in key)  # their first seed first


def test_an_unknown_label_is_one_readable_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for dataset in results.datasets(data, results.PROFILES["smoke"]):
        dataset.path.parent.mkdir(parents=True, exist_ok=True)
        dataset.path.write_text("")
    argv = ["--smoke", "--runs", str(tmp_path / "runs"), "--data-dir", str(data), "--label", "lma k=99"]
    assert results.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown --label lma k=99; known: ") and err.count("\n") == 1


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
    serving = " [lma: equal serving bytes (array + signature tables = ROBE's budget)]"
    lma_vs_robe = targets["generator v2: LMA - ROBE >= +0.002 AUC at 16x with the 95% interval above 0"
                          + serving]
    assert lma_vs_robe["met"] in (True, False) and "lma - robe Z=16" in lma_vs_robe["measured"]
    null_target = targets["null control: LMA - ROBE within its interval of 0 at 64x" + serving]
    assert null_target["met"] in (True, False)
    # the smoke profile has no key budgets: no equal-array row or candidates, so their targets say so
    array = [t for t in body["targets"] if "[lma equal-array: equal array bytes" in t["target"]]
    assert len(array) == 5 and all(t["met"] is None and "runs missing" in t["measured"] for t in array)
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


def test_the_lma_selection_is_ranked_on_validation_and_flags_a_tuned_row_it_did_not_pick() -> None:
    from training.dlrm import results_report as report

    def run(label: str, val: float, test: float) -> dict[str, Any]:
        return {"dataset": "synthetic-v2", "label": label, "seed": 0, "nominal_compression": 16.0,
                "run_dir": "-", "metrics": {"auc": val, "test_auc": test, "array_bytes": 1000,
                                            "embedding_bytes": 1300}}

    runs = [run("lma", 0.710, 0.720), run("lma k=4", 0.715, 0.700), run("lma k=6", 0.712, 0.730)]
    find = report._lookup(report.points(runs))
    facts = {"seeds": [0, 1, 2], "lma_selection_compression": 16.0, "lma_tuned": "lma k=6",
             "lma_candidates": {"lma k=4": ["--lma-k", "4"], "lma k=6": ["--lma-k", "6"],
                                "lma sig 5%": ["--signature-fraction", "0.05"]}}
    selection = report.lma_selection(find, facts)
    assert selection is not None
    assert selection["chosen_on_validation"] == "lma k=4"  # the best validation AUC, not the best test AUC
    assert selection["complete"] is False  # "lma sig 5%" has not run
    text = "\n".join(report.selection_lines(selection))
    assert "| lma k=4 (best on validation) | `--lma-k 4` | 0.7150 | 0.7000 |" in text
    assert "the tuned row `lma k=6` is NOT the best on validation (`lma k=4`) (not every candidate" in text
    facts["lma_tuned"] = "lma k=4"
    assert "`lma k=4` (the tuned row) is the best on validation" in "\n".join(
        report.selection_lines(report.lma_selection(find, facts)))
    assert [label for label, _ in report.lma_rows(facts)] == ["lma", "lma k=4"]
