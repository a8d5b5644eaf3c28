"""``python -m training.noble.results`` end to end on a small synthetic UJIIndoorLoc-format set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.noble.data import write_synthetic_uji
from training.noble.results import ResultsConfig, main, run
from training.noble.selection import CvConfig
from training.noble.train import NobleTrainConfig

KEYS = {"method", "mean_error_m", "median_error_m", "p75_error_m", "p95_error_m", "building_hit", "floor_hit",
        "evaal_error_m"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(data: Path, out: Path, part: str = "all", **extra: object) -> ResultsConfig:
    cv = CvConfig(base=NobleTrainConfig(members=1, epochs=2, hidden=(32,), cell_sizes=(4.0, 8.0)),
                  folds=3, augmentations=((0.0, 0.0), (8.0, 0.2)), epochs=(2, 3), members=(1, 2),
                  networks=(((32,), 0.0), ((32,), 30.0)))
    return ResultsConfig(data=data, out=out, cv=cv, seeds=2, imu_train_walks=6, imu_test_walks=4, part=part,
                         imu_val_walks=4, imu_seeds=2, imu_select_walks=4, imu_select_epochs=1,
                         **extra)  # type: ignore[arg-type]


def test_results_pages_json_and_plots(tmp_path: Path) -> None:
    data = write_synthetic_uji(tmp_path / "data", train_rows=300, validation_rows=60, seed=2)
    result = run(_config(data, tmp_path / "docs", run_dir=tmp_path / "run"))
    written = json.loads((tmp_path / "docs" / "noble.json").read_text())
    assert written["partial"] is False and result["partial"] is False
    assert all(set(row) >= KEYS for row in written["results"])
    assert {r["method"] for r in written["results"]} >= {"knn-k3", "mlp-regression", "noble",
                                                         "noble, old topk decode", "noble, old centre decode"}
    final = written["final"]
    assert final["seeds_done"] == 2 and set(final["summary"]["noble"]["seeds"]) == {0, 100}
    assert written["cv"]["complete"]
    assert written["cv"]["chosen"]["decode_label"] == written["served"]["decode_label"]
    served = next(r for r in written["final"]["rows"]
                  if r["method"] == written["served"]["method"] and r["seed"] == 0)
    assert written["served"]["validation"] == served
    assert {r["stage"] for r in written["cv"]["rows"]} == {"1 augmentation", "2 epochs", "3 network",
                                                          "4 ensemble size"}
    imu = written["imu"]
    assert set(imu["errors"]) == {"PDR, no calibration", "PDR", "map-matching particle filter",
                                  "NObLe tracker", "particle filter x NObLe cell likelihood",
                                  "NObLe cells on the map-matched track"}
    floors = imu["walks"]
    assert set(floors["test_floors"]).isdisjoint(floors["train_floors"])
    assert set(floors["validation_floors"]).isdisjoint(floors["train_floors"] + floors["test_floors"])
    hybrid = imu["selection"]["hybrid"]
    assert hybrid["chosen_weight"] in {r["weight"] for r in hybrid["rows"]}
    assert len(imu["anchored_seeds"]["errors"]) == 2
    assert imu["target_tracker"] in imu["reductions_vs_map_aware_at_100m"]
    page = (tmp_path / "docs" / "noble.md").read_text()
    for section in ("## Selection: leave-users-out cross-validation", "scored once", "## References",
                    "## IMU tracking (simulated)", "Ordering after 100 m"):
        assert section in page
    assert "PARTIAL" not in page
    for name in ("noble_error_cdf.png", "noble_positions.png", "noble_trajectories.png",
                 "noble_imu_error.png"):
        assert (tmp_path / "docs" / name).stat().st_size > 0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    # the search history: a finished search's digest is archived and the page lists it
    docs = tmp_path / "docs"
    assert main(["--archive-search", str(docs / "noble.json"), "--search-name", "s1", "--search-commit",
                 "abc123", "--out", str(docs)]) == 0
    history = json.loads((docs / "noble_searches.json").read_text())
    assert [h["name"] for h in history] == ["s1"] and history[0]["criterion"] == "covered"
    assert history[0]["summary"]["noble"] == written["final"]["summary"]["noble"]
    page = (docs / "noble.md").read_text()
    assert "## Search history" in page and "| s1 | abc123 | covered |" in page


def test_parts_merge_and_resume_reuses_cv(tmp_path: Path) -> None:
    data = write_synthetic_uji(tmp_path / "data", train_rows=300, validation_rows=60, seed=5)
    out = tmp_path / "docs"
    wifi = run(_config(data, out, part="wifi"))
    assert wifi["partial"] is True and "imu" not in wifi and not (out / "noble.md").exists()
    unfinished = out / "unfinished.json"
    unfinished.write_text(json.dumps({**wifi, "final": {**wifi["final"], "seeds_done": 0}}))
    assert main(["--archive-search", str(unfinished), "--search-name", "x", "--out", str(out)]) == 2
    chosen = wifi["cv"]["chosen"]["setting"], wifi["cv"]["chosen"]["decode_label"]
    resumed = run(_config(data, out, part="wifi", resume=True))
    assert all(r.get("reused") for r in resumed["cv"]["rows"])
    assert (resumed["cv"]["chosen"]["setting"], resumed["cv"]["chosen"]["decode_label"]) == chosen
    done = run(_config(data, out, part="imu"))
    assert done["partial"] is False and "imu" in done
    assert (done["cv"]["chosen"]["setting"], done["cv"]["chosen"]["decode_label"]) == chosen
    assert (out / "noble.md").stat().st_size > 0
    (out / "noble.md").unlink()
    assert main(["--doc-only", "--out", str(out)]) == 0 and (out / "noble.md").exists()


def test_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert main(["--threads", "0"]) == 2
    assert main(["--cv-members", "2,3", "--out", str(tmp_path)]) == 2
