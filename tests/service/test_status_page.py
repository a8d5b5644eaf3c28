"""The status page in headless Chromium: models with readable metric columns, live rates, latency, batch
sizes, the samples/s chart, placement, and the compressed-vs-full ratios; a screenshot."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import ServiceProcess, ctr_batch, ctr_infer_body
from test_hybrid import export_tiny

from loadtest.synthetic import localization_model, write_entry

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="headless chromium is not installed (.ci/run installs it)"
)


class RowParser(HTMLParser):
    """Collects ``<tr data-model=...>`` rows: their data attributes and cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, object]] = {}
        self._current: dict[str, object] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and values.get("data-model"):
            self._current = {"attrs": values, "cells": []}
            self.rows[str(values["data-model"])] = self._current
        elif tag == "td" and self._current is not None:
            cells = self._current["cells"]
            assert isinstance(cells, list)
            cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._current is not None and self._current["cells"]:
            cells = self._current["cells"]
            assert isinstance(cells, list)
            cells[-1] += data


def _traffic(client: httpx.Client) -> None:
    dense, categorical = ctr_batch(np.random.default_rng(8), 4)
    for _ in range(10):
        assert client.post("/v2/models/ctr/infer", json=ctr_infer_body(dense, categorical)).status_code == 200
        response = client.post("/v1/models/loc/predict", json={"instances": [{"rssi": [100] * 520}] * 2})
        assert response.status_code == 200


def _chromium(url: str, profile: Path, *extra: str) -> str:
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=3000",
        *extra,
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=True).stdout


def _columns(dom: str) -> list[str]:
    """Header labels of the models table."""
    head = dom.split('id="models"', 1)[1].split("</thead>", 1)[0]
    return re.findall(r"<th[^>]*>([^<]*)</th>", head)


def _by_column(columns: list[str], row: dict[str, object]) -> dict[str, str]:
    cells = row["cells"]
    assert isinstance(cells, list) and len(cells) == len(columns), (columns, cells)
    return dict(zip(columns, [str(cell) for cell in cells], strict=True))


def test_status_page_shows_models_and_live_rates(
    service: ServiceProcess, client: httpx.Client, tmp_path: Path
) -> None:
    stop = threading.Event()

    def keep_busy() -> None:  # traffic goes on while Chromium starts (rates are over the last 10 s)
        with service.client() as busy:
            while not stop.is_set():
                _traffic(busy)

    _traffic(client)
    worker = threading.Thread(target=keep_busy, daemon=True)
    worker.start()
    try:
        dom = _chromium(service.url + "/", tmp_path / "profile", "--dump-dom")
    finally:
        stop.set()
        worker.join(timeout=30)
    parser = RowParser()
    parser.feed(dom)
    assert set(parser.rows) == {"ctr", "ctr-2d", "loc"}, dom
    columns = _columns(dom)
    cells = parser.rows["ctr"]["cells"]
    assert isinstance(cells, list) and len(cells) == len(columns), (columns, cells)
    by_column = dict(zip(columns, cells, strict=True))
    assert [by_column[c] for c in ("model", "version", "state", "task")] == ["ctr", "1", "READY", "ctr"]
    assert by_column["method"].startswith("robe") and by_column["placement"] == "device"
    assert int(by_column["parameter bytes"].replace(",", "")) > 0
    # one column per validation metric (not one text cell), a model without the metric leaves it empty
    assert by_column["AUC"] == "0.7312" and by_column["log loss"] == "0.4721"
    loc = _by_column(columns, parser.rows["loc"])
    assert loc["AUC"] == "" and loc["mean error (m)"] == "7.5" and loc["floor hit"] == "0.91"
    assert float(by_column["p50 ms"]) > 0 and float(by_column["p99 ms"]) >= float(by_column["p50 ms"])
    assert float(by_column["mean batch"]) >= 1
    for name in ("ctr", "loc"):
        attrs = parser.rows[name]["attrs"]
        assert isinstance(attrs, dict)
        assert float(attrs["data-requests-per-s"]) > 0 and float(attrs["data-samples-per-s"]) > 0, attrs
    assert 'data-ready="true"' in dom
    assert re.search(r'<polyline[^>]*data-model="ctr"', dom), "no samples/s line for ctr in the chart"
    assert "http://" not in dom.replace(service.url, "").replace("http://www.w3.org/2000/svg", "")


def test_status_page_compares_methods_and_shows_placement(
    start_service: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    """Full (hybrid), hash and ROBE tiny DLRMs and a NObLe-style model under load: ratios against full,
    placement, NObLe's method; a screenshot (copied to $ROBESERVE_STATUS_SCREENSHOT when set)."""
    exported = export_tiny(tmp_path / "export")
    repository = tmp_path / "models"
    for version_dir in exported.values():
        shutil.copytree(version_dir.parent, repository / version_dir.parent.name)
    write_entry(
        repository, "noble-wifi", "1", localization_model(seed=3), "localization",
        embedding={"method": "none"}, decode="weighted_top_k",
        noble={"members": 3, "cell_sizes": [1.0, 2.0, 4.0], "num_cells": [9000, 2400, 640]},
        metrics={"mean_error_m": 6.2, "median_error_m": 4.1, "building_hit": 0.998, "floor_hit": 0.93},
    )  # fmt: skip
    # 142 kB: dlrm-full's dense part (24.7 kB; whole it is 144.5 kB), dlrm-hash and dlrm-robe (40.5 kB each)
    # and noble-wifi (34.0 kB) fit together
    service = start_service(repository, ROBESERVE_GPU_MEMORY_LIMIT="142kB", ROBESERVE_INTRA_OP_THREADS="1")
    stop = threading.Event()

    def load() -> None:  # every model busy, until the screenshot is taken
        rng = np.random.default_rng(0)
        with service.client() as client:
            while not stop.is_set():
                for method in exported:
                    body = {"inputs": [
                        {"name": "dense", "shape": [8, 13], "datatype": "FP32",
                         "data": rng.random(8 * 13).tolist()},
                        {"name": "categorical", "shape": [8, 5], "datatype": "INT64",
                         "data": rng.integers(0, 1 << 40, 40).tolist()},
                    ]}  # fmt: skip
                    assert client.post(f"/v2/models/dlrm-{method}/infer", json=body).status_code == 200
                rssi = {"instances": [{"rssi": [100] * 520}]}
                assert client.post("/v1/models/noble-wifi/predict", json=rssi).status_code == 200

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        time.sleep(7.0)  # two chart points are 5 s apart
        dom = _chromium(service.url + "/", tmp_path / "profile", "--dump-dom")
        screenshot = tmp_path / "status.png"
        shot = [f"--screenshot={screenshot}", "--window-size=1700,1200", "--hide-scrollbars"]
        _chromium(service.url + "/", tmp_path / "shot", *shot)
    finally:
        stop.set()
        worker.join(timeout=30)
    parser = RowParser()
    parser.feed(dom)
    columns = _columns(dom)
    rows = {name: _by_column(columns, row) for name, row in parser.rows.items()}
    assert rows["dlrm-full"]["placement"] == "hybrid" and rows["dlrm-robe"]["placement"] == "device"
    held = 24_652 + 40_460 + 40_468 + 34_040  # dlrm-full's dense part, the others whole
    assert f"device memory {held:,} of 142,000 bytes held" in dom
    assert "lookup" in rows["dlrm-full"]["stages (ms)"] and "dense" in rows["dlrm-full"]["stages (ms)"]
    assert rows["noble-wifi"]["method"].startswith("noble") and "none" not in rows["noble-wifi"]["method"]
    compare = dict(re.findall(r'data-compare="([^"]+)"[^>]*data-memory-ratio="([^"]*)"', dom))
    assert set(compare) == {"dlrm-full", "dlrm-hash", "dlrm-robe"}, dom
    assert float(compare["dlrm-full"]) == 1.0 and float(compare["dlrm-robe"]) > 1.0
    throughput = dict(re.findall(r'data-compare="([^"]+)"[^>]*data-throughput-ratio="([^"]*)"', dom))
    assert float(throughput["dlrm-robe"]) > 0
    assert len(re.findall(r"<polyline", dom)) >= 4
    assert screenshot.stat().st_size > 10_000
    target = os.environ.get("ROBESERVE_STATUS_SCREENSHOT")
    if target:
        shutil.copyfile(screenshot, target)
