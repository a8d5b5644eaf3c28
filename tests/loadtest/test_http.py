"""HTTP load test: payloads, and a short locust run against the real service that fails on any failure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from loadtest import compare
from loadtest.payloads import (
    Source,
    criteo_records,
    ctr_records,
    ctr_tensors,
    data_dir,
    predict_bodies,
    synthetic_records,
    wifi_records,
)
from service.dataplane import parse_categorical


def test_synthetic_records_look_like_criteo_and_parse_like_the_service() -> None:
    records = synthetic_records(200, seed=3)
    assert all(len(r["dense"]) == 13 and len(r["categorical"]) == 26 for r in records)
    tensors = ctr_tensors(records)
    assert tensors["dense"].shape == (200, 13) and tensors["categorical"].dtype == np.int64
    want = [[parse_categorical(v) for v in r["categorical"]] for r in records]
    np.testing.assert_array_equal(tensors["categorical"], want)
    assert 0.05 < np.mean([v is None for r in records for v in r["categorical"]]) < 0.15


def test_real_samples_are_used_when_present() -> None:
    path = data_dir() / "criteo" / "criteo_15k.tsv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not on this machine")
    records = criteo_records(path, limit=50)
    assert len(records) == 50 and ctr_records(Source.CRITEO, 50) == records
    assert all(v is None or len(v) == 8 for r in records for v in r["categorical"])
    rssi = wifi_records(limit=5)
    assert len(rssi) == 5 and all(len(r["rssi"]) == 520 for r in rssi)


def test_request_bodies_hold_the_asked_instances() -> None:
    bodies = predict_bodies(synthetic_records(10), instances=4, count=5)
    assert len(bodies) == 5 and all(len(json.loads(b)["instances"]) == 4 for b in bodies)
    with pytest.raises(ValueError):
        predict_bodies([], instances=4)


@pytest.mark.integration
def test_short_load_test_has_no_failed_request(tiny_repository: Path, tmp_path: Path) -> None:
    config = compare.CompareConfig(repository=tiny_repository, users=4, seconds=7, warmup_s=2, rounds=1,
                                   instances=8, csv_dir=tmp_path / "csv", ready_timeout_s=120)
    result = compare.run(config, tmp_path / "out", command="pytest")
    assert result["failures"] == 0, (tmp_path / "csv" / "service.log").read_text()[-2000:]
    for name in ("dlrm-full", "dlrm-robe"):
        model = result["models"][name]
        assert model["requests"] > 0 and model["samples_per_s"] > 0 and model["p99_ms"] >= model["p50_ms"]
        assert model["mean_batch"] >= 8
    written = json.loads((tmp_path / "out" / "http.json").read_text())
    assert written["failures"] == 0 and written["ratio_robe_vs_full"] > 0
    assert written["engine_at_formed_batch"]["ratio"] > 0
    assert {"http.md", "http.png"} <= {p.name for p in (tmp_path / "out").iterdir()}


def test_missing_models_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(compare.BenchmarkError, match=r"python -m loadtest\.engine"):
        compare.latest_version(tmp_path, "dlrm-full")
    assert compare.main(["--models", "only-one"]) == 2
