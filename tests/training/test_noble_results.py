"""``python -m training.noble.results`` end to end on a small synthetic UJIIndoorLoc-format set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from training.noble.data import write_synthetic_uji
from training.noble.results import ResultsConfig, main, run
from training.noble.train import NobleTrainConfig

KEYS = {"method", "mean_error_m", "median_error_m", "p75_error_m", "p95_error_m", "building_hit", "floor_hit",
        "evaal_error_m"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_results_pages_json_and_plots(tmp_path: Path) -> None:
    data = write_synthetic_uji(tmp_path / "data", train_rows=400, validation_rows=60, seed=2)
    config = ResultsConfig(data=data, out=tmp_path / "docs",
                           noble=NobleTrainConfig(members=2, epochs=2, hidden=(32,), cell_sizes=(4.0, 8.0)),
                           holdout_users=(3,), imu_train_walks=6, imu_test_walks=4, run_dir=tmp_path / "run")
    result = run(config)
    written = json.loads((tmp_path / "docs" / "noble.json").read_text())
    assert written["results"]
    assert all(set(row) >= KEYS for row in written["results"])
    assert {r["method"] for r in written["results"]} >= {"knn-k3", "mlp-regression", "noble-x2-topk",
                                                         "noble-x2-centre"}
    assert len(written["selection"]) == 8
    assert sorted(written["imu"]["errors"]) == ["NObLe tracker", "PDR", "regression tracker"]
    assert result["imu"]["errors"]["PDR"]["at_10m"] > 0
    for name in ("noble.md", "noble_error_cdf.png", "noble_positions.png", "noble_trajectories.png",
                 "noble_imu_error.png"):
        assert (tmp_path / "docs" / name).stat().st_size > 0
    assert "| weighted kNN, k = 3" in (tmp_path / "docs" / "noble.md").read_text()
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_cli_rejects_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    assert main(["--threads", "0"]) == 2
