"""Per-feature statistics of a click log: cardinality seen, frequency skew, missing rates, positive rate.

Skew is reported two ways for each categorical feature:

- ``top1_share``: share of the rows with a value that hold one of the top 1% most frequent values
  (at least one value);
- ``zipf_exponent``: minus the least-squares slope of log(count) on log(rank) over the ranks whose
  count is at least ``MIN_FIT_COUNT`` (the flat tail of values seen once or twice says nothing about the
  law); absent when fewer than ``MIN_FIT_POINTS`` ranks qualify.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from training.data.readers import SCHEMAS, DataFormat, read_batches, sniff_format

logger = logging.getLogger(__name__)

MIN_FIT_COUNT = 5
MIN_FIT_POINTS = 10
MERGE_EVERY = 16  # chunks of (value, count) pairs kept per feature before they are merged

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FeatureStats:
    """Statistics of one categorical feature.

    Args:
        name: column name.
        distinct: distinct non-missing values seen.
        missing_rate: share of rows where it is missing.
        top1_share: share of present rows covered by the top 1% of values.
        zipf_exponent: fitted rank-frequency exponent, or None (module docstring).
    """

    name: str
    distinct: int
    missing_rate: float
    top1_share: float
    zipf_exponent: float | None


@dataclass(frozen=True)
class DatasetStats:
    """Statistics of a whole file.

    Args:
        path: the file.
        rows: data rows.
        positive_rate: share of label 1.
        dense_missing: name -> share of rows where the dense feature is missing.
        features: per categorical feature.
        counts: per categorical feature, the value counts sorted in decreasing order (for plots).
    """

    path: Path
    rows: int
    positive_rate: float
    dense_missing: dict[str, float]
    features: list[FeatureStats]
    counts: list[IntArray] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.rows,
            "positive_rate": self.positive_rate,
            "total_distinct": sum(f.distinct for f in self.features),
            "dense_missing": self.dense_missing,
            "features": [vars(f) for f in self.features],
        }


class _ValueCounter:
    """Counts of int64 values, merged in batches so memory follows the distinct values, not the rows."""

    def __init__(self) -> None:
        self.parts: list[tuple[IntArray, IntArray]] = []

    def add(self, values: IntArray) -> None:
        self.parts.append(np.unique(values, return_counts=True))
        if len(self.parts) >= MERGE_EVERY:
            self.parts = [self._merged()]

    def _merged(self) -> tuple[IntArray, IntArray]:
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        values = np.concatenate([part[0] for part in self.parts])
        counts = np.concatenate([part[1] for part in self.parts])
        unique, inverse = np.unique(values, return_inverse=True)
        return unique, np.bincount(inverse, weights=counts, minlength=unique.size).astype(np.int64)

    def sorted_counts(self) -> IntArray:
        return np.sort(self._merged()[1])[::-1]


def zipf_exponent(counts: IntArray) -> float | None:
    """Fitted exponent of decreasing ``counts`` (module docstring)."""
    usable = counts[counts >= MIN_FIT_COUNT]
    if usable.size < MIN_FIT_POINTS:
        return None
    ranks = np.arange(1, usable.size + 1)
    slope = np.polyfit(np.log(ranks), np.log(usable), 1)[0]
    return float(-slope)


def top_share(counts: IntArray, fraction: float = 0.01) -> float:
    """Share of the total count held by the top ``fraction`` of values (at least one)."""
    if counts.size == 0:
        return float("nan")
    top = max(1, math.ceil(fraction * counts.size))
    return float(counts[:top].sum() / counts.sum())


def collect_stats(path: Path, data_format: DataFormat | None = None) -> DatasetStats:
    """Read ``path`` once and compute its statistics."""
    data_format = sniff_format(path) if data_format is None else DataFormat(data_format)
    schema = SCHEMAS[data_format]
    counters = [_ValueCounter() for _ in schema.categorical]
    rows = positives = 0
    dense_missing = np.zeros(len(schema.dense), dtype=np.int64)
    categorical_missing = np.zeros(len(schema.categorical), dtype=np.int64)
    for batch in read_batches(path, data_format):
        rows += len(batch)
        positives += int(batch.labels.sum())
        dense_missing += np.isnan(batch.dense).sum(axis=0)
        categorical_missing += (batch.categorical == 0).sum(axis=0)
        for column, counter in enumerate(counters):
            values = batch.categorical[:, column]
            counter.add(values[values != 0])
    rows_or_one = max(rows, 1)
    counts = [counter.sorted_counts() for counter in counters]
    features = [
        FeatureStats(
            name,
            int(count.size),
            round(float(missing) / rows_or_one, 4),
            round(top_share(count), 4),
            _rounded(zipf_exponent(count)),
        )
        for name, count, missing in zip(schema.categorical, counts, categorical_missing, strict=True)
    ]
    return DatasetStats(
        path,
        rows,
        round(positives / rows_or_one, 4),
        {name: round(float(m) / rows_or_one, 4) for name, m in zip(schema.dense, dense_missing, strict=True)},
        features,
        counts,
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def format_stats(stats: DatasetStats) -> str:
    """A plain-text report: one line per categorical feature, then the dense missing rates."""
    lines = [
        f"{stats.path}: {stats.rows} rows, positive rate {stats.positive_rate:.4f}, "
        f"{sum(f.distinct for f in stats.features)} distinct categorical values",
        f"{'feature':<18}{'distinct':>10}{'missing':>9}{'top1%':>8}{'zipf':>7}",
    ]
    for feature in stats.features:
        exponent = "-" if feature.zipf_exponent is None else f"{feature.zipf_exponent:.2f}"
        lines.append(
            f"{feature.name:<18}{feature.distinct:>10}{feature.missing_rate:>9.4f}"
            f"{feature.top1_share:>8.3f}{exponent:>7}"
        )
    if stats.dense_missing:
        lines.append("dense missing: " + " ".join(f"{k}={v:.4f}" for k, v in stats.dense_missing.items()))
    return "\n".join(lines)


def plot_rank_frequency(
    all_stats: list[DatasetStats], labels: list[str], features: list[str], out: Path
) -> None:
    """Log-log rank-frequency curves (share of rows per value) of ``features``, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(features), figsize=(4 * len(features), 3.6), squeeze=False)
    for axis, name in zip(axes[0], features, strict=True):
        for stats, label in zip(all_stats, labels, strict=True):
            index = [f.name for f in stats.features].index(name)
            counts = stats.counts[index]
            if counts.size:
                axis.loglog(np.arange(1, counts.size + 1), counts / max(stats.rows, 1), label=label)
        axis.set_title(name)
        axis.set_xlabel("rank")
        axis.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("share of rows")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
