"""Locust load test of robeserve: ``locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000``.

User classes (pick with their names on the command line, default all):

- ``CtrUser``: ``POST /v1/models/$LOADTEST_MODEL/predict`` with ``$LOADTEST_INSTANCES`` Criteo records per
  request (``LOADTEST_SOURCE``: ``criteo`` real rows from ``criteo_15k.tsv.gz``, ``synthetic``, or
  ``kaggle`` ids known to the engine benchmark's kaggle-shape models; see ``loadtest.payloads``).
- ``CtrTensorUser``: the same samples as Open Inference Protocol v2 tensors (``/v2/models/{m}/infer``).
- ``WifiUser``: ``POST /v1/models/$LOADTEST_WIFI_MODEL/predict`` with UJIIndoorLoc fingerprints.

Users send back to back (no think time), so the load saturates the service. A response counts as a failure
unless it is 200 and carries one prediction per instance. Bodies are encoded once, before the test.
"""

from __future__ import annotations

import functools
import json
import os
from itertools import cycle

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

from loadtest.payloads import Source, ctr_records, ctr_tensors, predict_bodies, wifi_records

MODEL = os.environ.get("LOADTEST_MODEL", "dlrm-robe")
WIFI_MODEL = os.environ.get("LOADTEST_WIFI_MODEL", "noble-wifi")
INSTANCES = int(os.environ.get("LOADTEST_INSTANCES", "32"))
SOURCE = Source(os.environ.get("LOADTEST_SOURCE", Source.CRITEO.value))
JSON_HEADERS = {"Content-Type": "application/json"}


@functools.cache
def _ctr_bodies() -> list[str]:
    return predict_bodies(ctr_records(SOURCE), INSTANCES)


@functools.cache
def _v2_bodies(instances: int = INSTANCES, count: int = 64) -> list[str]:
    records = ctr_records(SOURCE, instances * count)
    bodies = []
    for start in range(0, len(records) - instances + 1, instances):
        tensors = ctr_tensors(records[start : start + instances])
        inputs = [{"name": name, "datatype": "FP32" if name == "dense" else "INT64",
                   "shape": list(array.shape), "data": array.reshape(-1).tolist()}
                  for name, array in tensors.items()]
        bodies.append(json.dumps({"inputs": inputs}, separators=(",", ":")))
    return bodies


class _PredictUser(FastHttpUser):
    """Posts pre-encoded bodies to one URL and checks the number of predictions."""

    abstract = True
    wait_time = constant(0)
    url = ""
    name = ""
    bodies: cycle[str]

    def _post(self, expected: int, key: str) -> None:
        with self.client.post(self.url, data=next(self.bodies), headers=JSON_HEADERS, name=self.name,
                              catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                answer = response.json()[key]
                got = len(answer[0]["data"]) if key == "outputs" else len(answer)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                response.failure(f"malformed response: {exc}")
                return
            if got != expected:
                response.failure(f"{got} predictions for {expected} instances")


class CtrUser(_PredictUser):
    """Click-through-rate requests on the v1 predict endpoint."""

    url = f"/v1/models/{MODEL}/predict"
    name = f"predict {MODEL}"

    def on_start(self) -> None:
        self.bodies = cycle(_ctr_bodies())

    @task
    def predict(self) -> None:
        self._post(INSTANCES, "predictions")


class CtrTensorUser(_PredictUser):
    """The same CTR samples as v2 inference tensors."""

    url = f"/v2/models/{MODEL}/infer"
    name = f"infer {MODEL}"

    def on_start(self) -> None:
        self.bodies = cycle(_v2_bodies())

    @task
    def infer(self) -> None:
        self._post(INSTANCES, "outputs")


class WifiUser(_PredictUser):
    """Indoor localization from WiFi fingerprints (skipped when UJIIndoorLoc is not on this machine)."""

    url = f"/v1/models/{WIFI_MODEL}/predict"
    name = f"predict {WIFI_MODEL}"

    def on_start(self) -> None:
        records = wifi_records()
        if not records:
            raise RuntimeError("UJIIndoorLoc validation data not found (set ROBESERVE_DATA)")
        self.bodies = cycle(predict_bodies(records, INSTANCES))

    @task
    def predict(self) -> None:
        self._post(INSTANCES, "predictions")
