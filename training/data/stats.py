"""Per-feature statistics of a click log: cardinality seen, frequency skew, missing rates, positive rate.

Skew is reported two ways for each categorical feature:

- ``top1_share``: share of the rows with a value that hold one of the top 1% most frequent values
  (at least one value);
- ``zipf_exponent``: minus the least-squares slope of log(count) on log(rank) over the ranks whose
  count is at least ``MIN_FIT_COUNT`` (the flat tail of values seen once or twice says nothing about the
  law); absent when fewer than ``MIN_FIT_POINTS`` ranks qualify.

``top_value_share`` is the share of the rows with a value that hold the single most frequent value.

Dependency rates (``dependency_rates``, ``stats --dependencies``): for features A and B, over the rows
where both are present and A's value occurs at least twice (in the first ``DEPENDENCY_ROWS`` rows, the
real sample's size, so files of any length compare at equal size), the share of rows whose B value is the
most common B value among the rows with that A value. 1 means A's value determines B's; a feature B
whose own most frequent value is common scores high anyway, so read it beside B's ``top_value_share``.
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
DEPENDENCY_ROWS = 15_764  # rows of ../shared/data/criteo/criteo_15k.tsv.gz
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
        top_value_share: share of present rows holding the most frequent value.
    """

    name: str
    distinct: int
    missing_rate: float
    top1_share: float
    zipf_exponent: float | None
    top_value_share: float = float("nan")


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
        dependencies: [A][B] dependency rate (module docstring) on the first rows, when asked for.
        dependency_rows: rows the dependency rates were measured on.
    """

    path: Path
    rows: int
    positive_rate: float
    dense_missing: dict[str, float]
    features: list[FeatureStats]
    counts: list[IntArray] = field(repr=False)
    dependencies: npt.NDArray[np.float64] | None = field(default=None, repr=False)
    dependency_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.dependencies is not None:
            extra = {
                "dependency_rows": self.dependency_rows,
                "dependencies": [
                    [None if np.isnan(x) else round(float(x), 4) for x in row] for row in self.dependencies
                ],
            }
        return extra | {
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


def dependency_rates(categorical: IntArray, min_count: int = 2) -> npt.NDArray[np.float64]:
    """[A, B] dependency rates between the columns of ``categorical`` (0 = missing; module docstring).

    NaN where no value of A occurs ``min_count`` times among the rows where both are present.
    """
    columns = categorical.shape[1]
    rates = np.full((columns, columns), np.nan)
    for a in range(columns):
        for b in range(columns):
            if a == b:
                continue
            both = (categorical[:, a] != 0) & (categorical[:, b] != 0)
            x, y = categorical[both, a], categorical[both, b]
            _, index, counts = np.unique(x, return_inverse=True, return_counts=True)
            repeated = counts[index] >= min_count
            if not repeated.any():
                continue
            _, y_index = np.unique(y[repeated], return_inverse=True)
            keys = index[repeated] * (int(y_index.max()) + 1) + y_index  # one int64 per (A, B) pair
            pairs, pair_counts = np.unique(keys, return_counts=True)
            best = np.zeros(counts.size, dtype=np.int64)
            np.maximum.at(best, pairs // (int(y_index.max()) + 1), pair_counts)
            rates[a, b] = best.sum() / repeated.sum()
    return rates


def collect_stats(
    path: Path, data_format: DataFormat | None = None, dependency_rows: int = 0
) -> DatasetStats:
    """Read ``path`` once and compute its statistics (dependency rates on the first rows if > 0)."""
    data_format = sniff_format(path) if data_format is None else DataFormat(data_format)
    schema = SCHEMAS[data_format]
    counters = [_ValueCounter() for _ in schema.categorical]
    rows = positives = 0
    dense_missing = np.zeros(len(schema.dense), dtype=np.int64)
    categorical_missing = np.zeros(len(schema.categorical), dtype=np.int64)
    head: list[IntArray] = []
    for batch in read_batches(path, data_format):
        kept = sum(len(part) for part in head)
        if kept < dependency_rows:
            head.append(batch.categorical[: dependency_rows - kept].copy())
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
            round(float(count[0] / count.sum()), 4) if count.size else float("nan"),
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
        dependency_rates(np.concatenate(head)) if head else None,
        sum(len(part) for part in head),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def format_stats(stats: DatasetStats) -> str:
    """A plain-text report: one line per categorical feature, then the dense missing rates."""
    lines = [
        f"{stats.path}: {stats.rows} rows, positive rate {stats.positive_rate:.4f}, "
        f"{sum(f.distinct for f in stats.features)} distinct categorical values",
        f"{'feature':<18}{'distinct':>10}{'missing':>9}{'top1%':>8}{'zipf':>7}{'top1':>7}",
    ]
    for feature in stats.features:
        exponent = "-" if feature.zipf_exponent is None else f"{feature.zipf_exponent:.2f}"
        lines.append(
            f"{feature.name:<18}{feature.distinct:>10}{feature.missing_rate:>9.4f}"
            f"{feature.top1_share:>8.3f}{exponent:>7}{feature.top_value_share:>7.3f}"
        )
    if stats.dense_missing:
        lines.append("dense missing: " + " ".join(f"{k}={v:.4f}" for k, v in stats.dense_missing.items()))
    if stats.dependencies is not None:
        names = [f.name for f in stats.features]
        lines.append(f"dependency rates on the first {stats.dependency_rows} rows (row A, column B):")
        lines.append(" " * 6 + "".join(f"{name:>6}" for name in names))
        for name, row in zip(names, stats.dependencies, strict=True):
            lines.append(f"{name:<6}" + "".join("     -" if np.isnan(x) else f"{x:6.2f}" for x in row))
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


def plot_comparison(all_stats: list[DatasetStats], labels: list[str], out: Path) -> None:
    """Two panels: each feature's top-value share per file, and the dependency rates of every ordered
    feature pair of each file against those of the LAST file (the reference, e.g. the real sample)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, scatter) = plt.subplots(1, 2, figsize=(15, 4.6), gridspec_kw={"width_ratios": [2.2, 1]})
    names = [f.name for f in all_stats[0].features]
    width = 0.8 / len(all_stats)
    for index, (stats, label) in enumerate(zip(all_stats, labels, strict=True)):
        shares = [f.top_value_share for f in stats.features]
        offset = (index - (len(all_stats) - 1) / 2) * width
        bars.bar(np.arange(len(names)) + offset, shares, width, label=label)
    bars.set_xticks(np.arange(len(names)), names, rotation=90)
    bars.set_ylabel("share of rows holding the top value")
    bars.set_title("top-value share per feature")
    bars.legend()
    bars.grid(True, axis="y", alpha=0.3)
    reference = all_stats[-1].dependencies
    if reference is not None:
        for stats, label in zip(all_stats[:-1], labels[:-1], strict=True):
            if stats.dependencies is not None:
                scatter.scatter(reference.ravel(), stats.dependencies.ravel(), s=6, alpha=0.5, label=label)
        scatter.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
        scatter.set_xlabel(f"dependency rate A -> B, {labels[-1]}")
        scatter.set_ylabel("dependency rate A -> B")
        scatter.set_title(f"all 650 feature pairs, first {all_stats[-1].dependency_rows} rows")
        scatter.legend()
        scatter.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
