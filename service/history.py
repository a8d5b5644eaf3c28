"""The status page's live view: per-model samples/s over the last minutes, latency percentiles, batch sizes
and hybrid stage times, all read back from the Prometheus metrics the service already keeps.

``LiveMeter`` is the service's ``RateMeter`` plus a history: every ``tick()`` (about once a second) keeps a
snapshot of the counters and histograms it needs; ``view()`` turns the snapshots into rates and percentiles.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Histogram

from service.metrics import (
    BATCH_SIZE,
    INFERENCES,
    REQUEST_DURATION,
    STAGE_DURATION,
    RateMeter,
    totals_by_model,
)

HISTORY_S = 300.0  # the chart spans the last five minutes
POINT_S = 5.0  # one chart point per five seconds


@dataclass(frozen=True)
class _Snapshot:
    at: float
    samples: dict[str, float]
    latency_buckets: dict[str, dict[float, float]]  # model -> upper bound -> cumulative count
    batch: dict[str, tuple[float, float]]  # model -> (sum, count)
    stages: dict[tuple[str, str], tuple[float, float]]  # (model, stage) -> (sum, count)


@dataclass(frozen=True)
class ModelView:
    """What the status page shows of one model beside its rates."""

    history: list[tuple[float, float]] = field(default_factory=list)  # (seconds ago, samples/s)
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_batch_size: float | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)


def _histogram_sums(
    histogram: Histogram, keys: tuple[str, ...]
) -> dict[tuple[str, ...], tuple[float, float]]:
    sums: dict[tuple[str, ...], list[float]] = {}
    for family in histogram.collect():
        for sample in family.samples:
            key = tuple(sample.labels[name] for name in keys)
            entry = sums.setdefault(key, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                entry[0] += sample.value
            elif sample.name.endswith("_count"):
                entry[1] += sample.value
    return {key: (value[0], value[1]) for key, value in sums.items()}


def _buckets_by_model(histogram: Histogram) -> dict[str, dict[float, float]]:
    buckets: dict[str, dict[float, float]] = {}
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                per_model = buckets.setdefault(sample.labels["model"], {})
                per_model[bound] = per_model.get(bound, 0.0) + sample.value
    return buckets


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative counts (upper bound -> count); None if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            share = (rank - previous_count) / (count - previous_count)
            return previous_bound + (bound - previous_bound) * share
        previous_bound, previous_count = bound, count
    return previous_bound


class LiveMeter(RateMeter):
    """``RateMeter`` that also keeps five minutes of snapshots for the status page.

    Args:
        window_s: rates, percentiles and batch sizes are over (about) this many seconds.
        history_s: how far back the samples/s chart goes.
    """

    def __init__(self, window_s: float = 10.0, history_s: float = HISTORY_S) -> None:
        super().__init__(window_s)
        self.history_s = history_s
        self._history: deque[_Snapshot] = deque()

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(
            time.monotonic(),
            totals_by_model(INFERENCES),
            _buckets_by_model(REQUEST_DURATION),
            {key[0]: value for key, value in _histogram_sums(BATCH_SIZE, ("model",)).items()},
            {(k[0], k[1]): v for k, v in _histogram_sums(STAGE_DURATION, ("model", "stage")).items()},
        )

    def tick(self) -> None:
        super().tick()
        snapshot = self._snapshot()
        self._history.append(snapshot)
        while self._history and snapshot.at - self._history[0].at > self.history_s:
            self._history.popleft()

    def view(self) -> dict[str, ModelView]:
        """Per model: the samples/s series (oldest first) and the window's percentiles, batch and stages."""
        now = self._snapshot()
        snapshots = [*self._history, now]
        base = next((s for s in snapshots if now.at - s.at <= self.window_s), snapshots[0])
        points: list[_Snapshot] = []
        for snapshot in snapshots:  # one point per POINT_S, the newest always kept
            if not points or snapshot.at - points[-1].at >= POINT_S:
                points.append(snapshot)
        if points[-1] is not now:
            points.append(now)
        models = set(now.samples) | set(now.latency_buckets) | set(now.batch)
        views = {}
        for model in models:
            history = []
            for older, newer in itertools.pairwise(points):
                elapsed = newer.at - older.at
                if elapsed > 0.5:
                    rate = (newer.samples.get(model, 0.0) - older.samples.get(model, 0.0)) / elapsed
                    history.append((round(now.at - newer.at, 1), max(0.0, rate)))
            now_buckets = now.latency_buckets.get(model, {})
            old_buckets = base.latency_buckets.get(model, {})
            delta = {bound: count - old_buckets.get(bound, 0.0) for bound, count in now_buckets.items()}
            p50, p99 = quantile(0.5, delta), quantile(0.99, delta)
            batch_sum, batch_count = now.batch.get(model, (0.0, 0.0))
            old_sum, old_count = base.batch.get(model, (0.0, 0.0))
            stages = {}
            for (name, stage), (stage_sum, stage_count) in now.stages.items():
                if name != model:
                    continue
                old_stage = base.stages.get((name, stage), (0.0, 0.0))
                if stage_count - old_stage[1] > 0:
                    stages[stage] = 1e3 * (stage_sum - old_stage[0]) / (stage_count - old_stage[1])
            views[model] = ModelView(
                history=history,
                p50_ms=None if p50 is None else 1e3 * p50,
                p99_ms=None if p99 is None else 1e3 * p99,
                mean_batch_size=(
                    (batch_sum - old_sum) / (batch_count - old_count) if batch_count > old_count else None
                ),
                stage_ms=stages,
            )
        return views
