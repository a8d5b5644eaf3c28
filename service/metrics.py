"""Prometheus metrics (DESIGN.md section 6), declared once, and live rates read back from them.

Names carry the ``robeserve_`` prefix; latency histograms span 100 us to 10 s.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
MODEL_LABELS = ("model", "version")

REQUESTS = Counter(
    "robeserve_requests",
    "Inference requests by model, version, endpoint and HTTP status code.",
    (*MODEL_LABELS, "endpoint", "code"),
)
INFERENCES = Counter("robeserve_inferences", "Samples scored.", MODEL_LABELS)
REQUEST_DURATION = Histogram(
    "robeserve_request_duration_seconds",
    "Time from request arrival to response, by endpoint.",
    (*MODEL_LABELS, "endpoint"),
    buckets=LATENCY_BUCKETS,
)
QUEUE_DURATION = Histogram(
    "robeserve_queue_duration_seconds",
    "Time a request waited before its batch started.",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS,
)
COMPUTE_DURATION = Histogram(
    "robeserve_compute_duration_seconds",
    "Time of one merged session.run.",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "robeserve_batch_size", "Samples per merged session.run.", MODEL_LABELS, buckets=BATCH_SIZE_BUCKETS
)
QUEUE_DEPTH = Gauge("robeserve_queue_depth", "Requests accepted and not yet running.", MODEL_LABELS)
PARAMETER_BYTES = Gauge(
    "robeserve_model_parameter_bytes", "Bytes the model needs at serving time.", MODEL_LABELS
)
MODEL_READY = Gauge("robeserve_model_ready", "1 while this version serves, else 0.", MODEL_LABELS)
# Every HTTP answer, inference or not, by route template (never the raw path) and status code: the label
# values are bounded by the routes the app declares. 499 = the client closed the connection first.
HTTP_RESPONSES = Counter(
    "robeserve_http_responses",
    "HTTP responses by route template ('unmatched' for no route, 'malformed' for unparsable HTTP) and code.",
    ("route", "code"),
)
LOAD_FAILURES = Counter(
    "robeserve_model_load_failures",
    "Model versions refused at load (bad manifest, checksum, ONNX or custom-op failure).",
    MODEL_LABELS,
)


class ModelMetrics:
    """The metrics of one model version (implements ``batching.BatchObserver``).

    Args:
        model: model name label.
        version: version label.
    """

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._queue_duration = QUEUE_DURATION.labels(model, version)
        self._compute_duration = COMPUTE_DURATION.labels(model, version)
        self._batch_size = BATCH_SIZE.labels(model, version)
        self._queue_depth = QUEUE_DEPTH.labels(model, version)
        self._inferences = INFERENCES.labels(model, version)

    def queue_depth(self, depth: int) -> None:
        self._queue_depth.set(depth)

    def batch_started(self, size: int, waits_s: list[float]) -> None:
        self._batch_size.observe(size)
        for wait in waits_s:
            self._queue_duration.observe(wait)

    def batch_finished(self, size: int, compute_s: float) -> None:
        self._compute_duration.observe(compute_s)

    def samples_scored(self, count: int) -> None:
        self._inferences.inc(count)

    def set_loaded(self, parameter_bytes: int) -> None:
        PARAMETER_BYTES.labels(self.model, self.version).set(parameter_bytes)
        MODEL_READY.labels(self.model, self.version).set(1)

    def set_unloaded(self) -> None:
        MODEL_READY.labels(self.model, self.version).set(0)
        self._queue_depth.set(0)


def observe_request(model: str, version: str, endpoint: str, code: int, seconds: float) -> None:
    """Count one inference request and its duration."""
    REQUESTS.labels(model, version, endpoint, str(code)).inc()
    REQUEST_DURATION.labels(model, version, endpoint).observe(seconds)


def observe_response(route: str, code: int) -> None:
    """Count one HTTP response (``route`` must be a route template or a fixed word, never a raw path)."""
    HTTP_RESPONSES.labels(route, str(code)).inc()


def record_load_failure(model: str, version: str) -> None:
    """Count a refused version (``version`` is a directory name from the repository: bounded)."""
    LOAD_FAILURES.labels(model, version).inc()


def totals_by_model(counter: Counter) -> dict[str, float]:
    """A counter's samples summed per ``model`` label (over versions and other labels)."""
    totals: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                model = sample.labels["model"]
                totals[model] = totals.get(model, 0.0) + sample.value
    return totals


@dataclass(frozen=True)
class ModelRates:
    """Cumulative counts and per-second rates of one model over the meter's window."""

    requests_total: float
    inferences_total: float
    requests_per_s: float
    samples_per_s: float


class RateMeter:
    """Live requests/s and samples/s per model, from the Prometheus counters above.

    Args:
        window_s: rates are averaged over (about) this many seconds.

    ``tick()`` is called about once a second; ``rates()`` compares now with the oldest kept snapshot.
    """

    def __init__(self, window_s: float = 10.0) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._snapshots: deque[tuple[float, dict[str, float], dict[str, float]]] = deque()

    def _read(self) -> tuple[float, dict[str, float], dict[str, float]]:
        return time.monotonic(), totals_by_model(REQUESTS), totals_by_model(INFERENCES)

    def tick(self) -> None:
        """Keep a snapshot; drop those older than the window."""
        snapshot = self._read()
        self._snapshots.append(snapshot)
        while self._snapshots and snapshot[0] - self._snapshots[0][0] > self.window_s:
            self._snapshots.popleft()

    def rates(self) -> dict[str, ModelRates]:
        """Per model: totals now and rates since the oldest snapshot in the window."""
        now, requests, samples = self._read()
        oldest = self._snapshots[0] if self._snapshots else (now, {}, {})
        elapsed = now - oldest[0]
        result = {}
        for model in set(requests) | set(samples):
            request_delta = requests.get(model, 0.0) - oldest[1].get(model, 0.0)
            sample_delta = samples.get(model, 0.0) - oldest[2].get(model, 0.0)
            result[model] = ModelRates(
                requests_total=requests.get(model, 0.0),
                inferences_total=samples.get(model, 0.0),
                requests_per_s=request_delta / elapsed if elapsed > 0.5 else 0.0,
                samples_per_s=sample_delta / elapsed if elapsed > 0.5 else 0.0,
            )
        return result


# Placement (DESIGN.md section 6): appended for the hybrid placement.
MODEL_PLACEMENT = Gauge(
    "robeserve_model_placement",
    "1 for the placement a serving version runs with (device: whole graph on the device; hybrid: lookups on "
    "the CPU with host tables, the rest on the device), else 0.",
    (*MODEL_LABELS, "placement"),
)
STAGE_DURATION = Histogram(
    "robeserve_stage_duration_seconds",
    "Time of one stage of a hybrid batch: lookup (CPU, host tables), transfer (host to device), dense.",
    ("model", "stage"),
    buckets=LATENCY_BUCKETS,
)
PLACEMENTS = ("device", "hybrid")
STAGES = ("lookup", "transfer", "dense")


class PlacementMetrics:
    """Placement gauge and stage histograms of one model version (implements ``placement.StageObserver``)."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self._stages: dict[str, Histogram] = {}  # created on first use: device models have no stages

    def set_placement(self, placement: str | None) -> None:
        """Mark ``placement`` as the one serving (None: not serving)."""
        for name in PLACEMENTS:
            MODEL_PLACEMENT.labels(self.model, self.version, name).set(1 if name == placement else 0)

    def stage(self, stage: str, seconds: float) -> None:
        histogram = self._stages.get(stage)
        if histogram is None:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}")
            histogram = self._stages[stage] = STAGE_DURATION.labels(self.model, stage)
        histogram.observe(seconds)
