"""The fold-design check: distinct settings of the search history, the summary of a setting's CV rows, and
the CLI end to end on a small synthetic UJIIndoorLoc."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from training.noble.data import write_synthetic_uji
from training.noble.fold_check import distinct_settings, main, summarise_rows
from training.noble.results_doc import _fold_check

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"cell_sizes": [4.0, 8.0], "members": 2, "epochs": 1, "batch_size": 64, "lr": 0.001,
        "weight_decay": 0.0, "offset_db": 8.0, "drop_prob": 0.2, "hidden": [16], "dropout": 0.0, "top_k": 4,
        "seed": 0}


def _search(name: str, train: dict[str, Any], decode_label: str, validation: float) -> dict[str, Any]:
    decode = {"kind": "plan", "top_k": 4, "cell_sizes": [8.0], "snap_m": 2.0}
    return {"name": name, "chosen": {"train": train, "decode_label": decode_label, "decode": decode},
            "summary": {"noble": {"mean_error_m": {"mean": validation}}}}


def test_searches_that_chose_the_same_setting_share_one_entry() -> None:
    other = {**TINY, "hidden": [32], "relative_db": 40.0}
    searches = [_search("1: a", TINY, "plan k=4 cells 8 m snap 4 m", 6.8),
                _search("2: b", other, "building k=8 cells 8 m snap 2 m", 7.6),
                _search("3: c", {**other, "seed": 5}, "building k=4 cells 4/8 m snap 2 m", 7.5)]
    settings = distinct_settings(searches)
    assert [s["searches"] for s in settings] == [["1: a"], ["2: b", "3: c"]]
    assert settings[1]["decodes"] == ["building k=8 cells 8 m snap 2 m", "building k=4 cells 4/8 m snap 2 m"]
    assert settings[1]["validation_mean_error_m"] == {"2: b": 7.6, "3: c": 7.5}
    assert all(s["train"].members == 1 for s in settings)  # one network per fold


def _row(kind: str, label: str, covered: float, pooled: float) -> dict[str, Any]:
    return {"decode": label, "decode_config": {"kind": kind}, "cv_covered_mean_error_m": covered,
            "cv_mean_error_m": pooled, "cv_floor_hit": 0.9, "cv_building_hit": 1.0}


def test_summary_picks_the_best_on_plan_decode_per_criterion() -> None:
    rows = [_row("topk", "topk", 1.0, 1.0),  # best of all, but off the plan: not eligible
            _row("plan", "plan a", 5.0, 9.0), _row("building", "building b", 6.0, 8.0)]
    summary = summarise_rows(rows, ("plan", "building"), ["building b"])
    assert summary["covered"]["best_decode"] == "plan a" and summary["covered"]["best_error_m"] == 5.0
    assert summary["pooled"]["best_decode"] == "building b" and summary["pooled"]["best_error_m"] == 8.0
    assert summary["covered"]["own_decodes"] == {"building b": 6.0}
    with pytest.raises(ValueError, match="no decode"):
        summarise_rows(rows[:1], ("plan", "building"), [])
    with pytest.raises(ValueError, match="not in this run's decode grid"):
        summarise_rows(rows, ("plan", "building"), ["plan k=99"])


def test_cli_writes_the_check_and_rejects_bad_input(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    write_synthetic_uji(tmp_path / "uji")
    history = tmp_path / "searches.json"
    history.write_text(json.dumps([_search("1: a", TINY, "plan k=4 cells 8 m snap 4 m", 6.8),
                                   _search("3: c", {**TINY, "offset_db": 0.0, "drop_prob": 0.0},
                                           "plan k=4 cells 8 m snap 4 m", 7.5)]))
    out = tmp_path / "out"
    assert main(["--data", str(tmp_path / "uji"), "--searches", str(history), "--folds", "2",
                 "--out", str(out)]) == 0
    result = json.loads((out / "noble_fold_check.json").read_text())
    assert [d["folds"] for d in result["designs"]] == [2]
    entries = result["designs"][0]["settings"]
    assert len(entries) == 2 and all(e["covered"]["best_error_m"] > 0 for e in entries)
    page = (out / "noble_fold_check.md").read_text()
    assert "| 2 | offset 8 dB, drop 0.2, 1 epochs, 16 |" in page and "6.80 m (search 1)" in page
    (out / "noble_fold_check.md").unlink()
    assert main(["--doc-only", "--out", str(out)]) == 0
    assert (out / "noble_fold_check.md").read_text() == page
    capsys.readouterr()
    assert main(["--doc-only", "--out", str(tmp_path / "nowhere")]) == 2
    assert "noble_fold_check.json" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "uji"), "--searches", str(history), "--folds", "1"]) == 2
    assert "folds" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "missing"), "--searches", str(history), "--folds", "2"]) == 2
    assert "not a directory" in capsys.readouterr().err
    history.write_text(json.dumps([_search("1: a", TINY, "plan k=4 cells 8 m snap 4 m", 6.8),
                                   _search("2: b", {**TINY, "cell_sizes": [8.0]}, "plan", 7.0)]))
    assert main(["--data", str(tmp_path / "uji"), "--searches", str(history), "--folds", "2"]) == 2
    assert "cell sizes differ" in capsys.readouterr().err


def test_results_page_says_whether_each_design_ranks_as_the_validation_file() -> None:
    def entry(searches: list[str], covered: float, pooled: float) -> dict[str, Any]:
        return {"searches": searches, "covered": {"best_error_m": covered},
                "pooled": {"best_error_m": pooled}}

    check = {"command": "python -m training.noble.fold_check", "seconds": 120.0,
             "settings": [{"setting": "a", "searches": ["1: a"], "validation_mean_error_m": {"1: a": 6.8}},
                          {"setting": "b", "searches": ["2: b", "3: c"],
                           "validation_mean_error_m": {"2: b": 7.6, "3: c": 7.5}}],
             "designs": [{"folds": 3, "settings": [entry(["1: a"], 10.0, 12.0),
                                                   entry(["2: b", "3: c"], 9.0, 11.0)]},
                         {"folds": 16, "settings": [entry(["1: a"], 8.0, 9.5),
                                                    entry(["2: b", "3: c"], 8.5, 9.0)]}]}
    lines = _fold_check(check)
    assert "Validation order: search 1 (6.80 m) < searches 2, 3 (7.50 m)." in lines[0]
    assert lines[2] == ("- 3 folds: covered rows: searches 2, 3 (9.00 m) < search 1 (10.00 m), not the "
                        "validation order; all rows: searches 2, 3 (11.00 m) < search 1 (12.00 m), not the "
                        "validation order.")
    assert lines[3].startswith("- 16 folds: covered rows: search 1 (8.00 m) < searches 2, 3 (8.50 m), the "
                               "validation order; all rows: searches 2, 3")
