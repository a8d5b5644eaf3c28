"""The status page in headless Chromium: models, their metadata and non-zero live rates after traffic."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import httpx
import numpy as np
import pytest
from service_helpers import ServiceProcess, ctr_batch, ctr_infer_body

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


def test_status_page_shows_models_and_live_rates(
    service: ServiceProcess, client: httpx.Client, tmp_path: Path
) -> None:
    _traffic(client)
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
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=3000",
        "--dump-dom",
        service.url + "/",
    ]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    parser = RowParser()
    parser.feed(dom)
    assert set(parser.rows) == {"ctr", "ctr-2d", "loc"}, dom
    ctr = parser.rows["ctr"]
    cells = ctr["cells"]
    assert isinstance(cells, list)
    assert cells[:5] == ["ctr", "1", "READY", "ctr", "robe"]
    assert "auc=0.7312" in cells[6] and int(cells[5].replace(",", "")) > 0
    for name in ("ctr", "loc"):
        attrs = parser.rows[name]["attrs"]
        assert isinstance(attrs, dict)
        assert float(attrs["data-requests-per-s"]) > 0 and float(attrs["data-samples-per-s"]) > 0, attrs
    assert 'data-ready="true"' in dom
