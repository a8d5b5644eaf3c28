"""Binary classification metrics in NumPy: ROC AUC (rank-based, ties averaged), log loss, the paired
bootstrap of an AUC difference, and the count of frequent values (the unit of the memory axis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

EPSILON = 1e-7
FREQUENT_COUNT = 10  # "values seen >= 10 times": memory is also reported as slots per such value


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative.

    Mann-Whitney U with average ranks for tied scores (a tie counts one half), exact for any ties.

    Args:
        labels: 0/1 labels [N].
        scores: any real scores [N] (logits or probabilities: only the order matters).

    Returns:
        AUC in [0, 1], or NaN when the labels hold a single class.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    # average rank (1-based) of each run of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(s)]
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(s), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def log_loss(labels: npt.ArrayLike, probabilities: npt.ArrayLike) -> float:
    """Mean binary cross-entropy of probabilities clipped to [1e-7, 1 - 1e-7]."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), EPSILON, 1 - EPSILON)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} differ in shape")
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def count_frequent_values(categorical: npt.ArrayLike, min_count: int = FREQUENT_COUNT) -> int:
    """(feature, value) pairs that occur at least ``min_count`` times in ``categorical`` [N, F].

    The missing value (id 0) counts like any other value: models embed it too.

    Example:
        >>> count_frequent_values([[1, 5], [1, 5], [2, 5]], min_count=2)
        2
    """
    ids = np.asarray(categorical)
    if ids.ndim != 2:
        raise ValueError(f"categorical ids must be [N, F], got shape {ids.shape}")
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    total = 0
    for f in range(ids.shape[1]):
        _, counts = np.unique(ids[:, f], return_counts=True)
        total += int(np.count_nonzero(counts >= min_count))
    return total


@dataclass(frozen=True)
class _Ranked:
    """One model's scores sorted once: the sorted order, each sorted row's group of tied scores, labels."""

    order: np.ndarray
    groups: np.ndarray
    labels: np.ndarray
    num_groups: int

    @classmethod
    def of(cls, labels: np.ndarray, scores: np.ndarray) -> _Ranked:
        order = np.argsort(scores, kind="mergesort")
        ranked = scores[order]
        starts = np.r_[True, ranked[1:] != ranked[:-1]]
        groups = np.cumsum(starts) - 1
        return cls(order, groups, labels[order].astype(np.float64), int(groups[-1]) + 1 if len(groups) else 0)

    def auc(self, weights: np.ndarray) -> float:
        """AUC of the rows repeated ``weights`` times (ties count one half)."""
        w = weights[self.order]
        positives = np.bincount(self.groups, weights=w * self.labels, minlength=self.num_groups)
        negatives = np.bincount(self.groups, weights=w * (1.0 - self.labels), minlength=self.num_groups)
        below = np.cumsum(negatives) - negatives
        pairs = positives.sum() * negatives.sum()
        if pairs == 0:
            return float("nan")
        return float(np.sum(positives * (below + 0.5 * negatives)) / pairs)


def weighted_auc(labels: npt.ArrayLike, scores: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    """ROC AUC of rows counted ``weights`` times each (a bootstrap resample as multiplicities).

    Example:
        >>> weighted_auc([0, 1, 1], [0.2, 0.1, 0.9], [1, 0, 1])
        1.0
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float64).ravel()
    if not y.shape == s.shape == w.shape:
        raise ValueError(f"labels {y.shape}, scores {s.shape} and weights {w.shape} differ in shape")
    return _Ranked.of(y, s).auc(w)


@dataclass(frozen=True)
class PairedDifference:
    """AUC(a) - AUC(b) on the same rows with its paired-bootstrap percentile interval.

    ``difference`` is measured on all rows; with several models per side (seeds) each side's AUC is the
    mean of its models' AUCs on the same (resampled) rows.
    """

    difference: float
    low: float
    high: float
    confidence: float
    resamples: int
    seed: int
    rows: int

    @property
    def above_zero(self) -> bool:
        return self.low > 0

    @property
    def contains_zero(self) -> bool:
        return self.low <= 0 <= self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_models(scores: npt.ArrayLike | Sequence[npt.ArrayLike], rows: int) -> list[np.ndarray]:
    """One model's scores [N], a [models, N] array or a list of [N] arrays -> a list of float64 [N]."""
    if isinstance(scores, list | tuple):
        models = [np.asarray(s, dtype=np.float64) for s in scores]
    else:
        array = np.asarray(scores, dtype=np.float64)
        models = [array] if array.ndim == 1 else list(array)
    if not models or any(m.shape != (rows,) for m in models):
        raise ValueError(f"every model needs one score per row ({rows} rows), got shapes "
                         f"{[m.shape for m in models]}")
    return models


def paired_bootstrap_auc(labels: npt.ArrayLike, scores_a: npt.ArrayLike | Sequence[npt.ArrayLike],
                         scores_b: npt.ArrayLike | Sequence[npt.ArrayLike], resamples: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> PairedDifference:
    """Paired bootstrap of the AUC difference between models a and b scored on the SAME rows.

    Each resample draws ``len(labels)`` rows with replacement (``numpy.random.default_rng(seed)``, so the
    interval is reproducible) and scores every model of both sides on those rows, so the row-to-row
    noise that both sides share cancels out of the difference. The interval is the percentile one.

    Args:
        labels: 0/1 labels [N].
        scores_a: a's scores [N], or a list of [N] arrays (e.g. one per training seed: their AUCs are
            averaged, so the interval covers the test rows' sampling noise of that mean; the seeds'
            own spread is reported separately).
        scores_b: b's scores, likewise.
        resamples: bootstrap resamples (>= 10).
        confidence: the interval's coverage, in (0, 1).
        seed: the resampling seed.

    Raises:
        ValueError: shapes differ, a single class, or bad settings.

    Example:
        >>> y = [0, 0, 1, 1, 0, 1]
        >>> d = paired_bootstrap_auc(y, [0.1, 0.2, 0.8, 0.9, 0.3, 0.7], [0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
        >>> (d.difference, d.low, d.high)
        (0.0, 0.0, 0.0)
    """
    y = np.asarray(labels).astype(bool).ravel()
    n = len(y)
    if resamples < 10:
        raise ValueError(f"resamples must be >= 10, got {resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if y.all() or not y.any():
        raise ValueError("the labels hold a single class: AUC is undefined")
    side_a = [_Ranked.of(y, s) for s in _as_models(scores_a, n)]
    side_b = [_Ranked.of(y, s) for s in _as_models(scores_b, n)]

    def difference(weights: np.ndarray) -> float:
        return float(np.mean([m.auc(weights) for m in side_a]) - np.mean([m.auc(weights) for m in side_b]))

    point = difference(np.ones(n))
    rng = np.random.default_rng(seed)
    draws = np.empty(resamples)
    for i in range(resamples):
        draws[i] = difference(np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64))
    draws = draws[np.isfinite(draws)]  # a resample with a single class has no AUC
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    return PairedDifference(point, float(low), float(high), confidence, resamples, seed, n)
