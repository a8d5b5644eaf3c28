"""``training.dlrm.metrics``: weighted AUC, the paired bootstrap of an AUC difference, frequent values."""

from __future__ import annotations

import numpy as np
import pytest

from training.dlrm.metrics import (
    count_frequent_values,
    paired_bootstrap_auc,
    roc_auc,
    weighted_auc,
)


def _two_models(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels from a true score; model a sees it with little noise, model b with much more."""
    rng = np.random.default_rng(seed)
    truth = rng.standard_normal(rows)
    labels = (rng.random(rows) < 1 / (1 + np.exp(-2 * truth))).astype(np.int8)
    return labels, truth + 0.3 * rng.standard_normal(rows), truth + 1.5 * rng.standard_normal(rows)


def test_weighted_auc_with_unit_weights_is_the_auc() -> None:
    labels, a, _ = _two_models(500)
    rounded = np.round(a, 1)  # many ties
    assert weighted_auc(labels, rounded, np.ones(500)) == pytest.approx(roc_auc(labels, rounded), abs=1e-12)


def test_weighted_auc_equals_the_auc_of_repeated_rows() -> None:
    labels, a, _ = _two_models(300, seed=1)
    scores = np.round(a, 1)
    weights = np.random.default_rng(2).integers(0, 4, 300)
    repeated = np.repeat(np.arange(300), weights)
    assert weighted_auc(labels, scores, weights) == pytest.approx(
        roc_auc(labels[repeated], scores[repeated]), abs=1e-12)


def test_bootstrap_equals_resampling_rows_by_hand() -> None:
    """The multiplicity trick gives exactly what resampling indices and recomputing the AUCs gives."""
    labels, a, b = _two_models(400, seed=3)
    got = paired_bootstrap_auc(labels, a, b, resamples=50, seed=7)
    rng = np.random.default_rng(7)
    draws = []
    for _ in range(50):
        rows = rng.integers(0, 400, 400)
        draws.append(roc_auc(labels[rows], a[rows]) - roc_auc(labels[rows], b[rows]))
    low, high = np.quantile(draws, [0.025, 0.975])
    assert (got.low, got.high) == pytest.approx((low, high), abs=1e-12)
    assert got.difference == pytest.approx(roc_auc(labels, a) - roc_auc(labels, b), abs=1e-12)


def test_bootstrap_is_reproducible_and_seeded() -> None:
    labels, a, b = _two_models(1000, seed=4)
    first = paired_bootstrap_auc(labels, a, b, resamples=200, seed=11)
    assert first == paired_bootstrap_auc(labels, a, b, resamples=200, seed=11)
    other = paired_bootstrap_auc(labels, a, b, resamples=200, seed=12)
    assert (other.low, other.high) != (first.low, first.high)
    assert other.difference == first.difference


def test_a_better_model_has_an_interval_above_zero_and_pairing_narrows_it() -> None:
    labels, a, b = _two_models(4000, seed=5)
    paired = paired_bootstrap_auc(labels, a, b, resamples=300, seed=0)
    assert paired.above_zero and paired.low < paired.difference < paired.high
    reverse = paired_bootstrap_auc(labels, b, a, resamples=300, seed=0)
    assert reverse.high < 0 and reverse.difference == pytest.approx(-paired.difference)
    # resampling a's and b's rows independently (unpaired) gives a wider interval
    rng = np.random.default_rng(0)
    unpaired = []
    for _ in range(300):
        r1, r2 = rng.integers(0, 4000, 4000), rng.integers(0, 4000, 4000)
        unpaired.append(roc_auc(labels[r1], a[r1]) - roc_auc(labels[r2], b[r2]))
    width = np.subtract(*np.quantile(unpaired, [0.975, 0.025]))
    assert paired.high - paired.low < width


def test_equal_models_give_zero_and_noise_gives_an_interval_around_zero() -> None:
    labels, a, _ = _two_models(3000, seed=6)
    same = paired_bootstrap_auc(labels, a, a.copy(), resamples=50)
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    rng = np.random.default_rng(9)
    twin = a + 0.01 * rng.standard_normal(3000)  # no real difference
    assert paired_bootstrap_auc(labels, twin, a, resamples=300).contains_zero


def test_several_seeds_per_side_average_their_aucs() -> None:
    labels, a, b = _two_models(800, seed=8)
    a2 = a + 0.2 * np.random.default_rng(1).standard_normal(800)
    got = paired_bootstrap_auc(labels, [a, a2], b, resamples=20)
    expected = (roc_auc(labels, a) + roc_auc(labels, a2)) / 2 - roc_auc(labels, b)
    assert got.difference == pytest.approx(expected, abs=1e-12)
    stacked = paired_bootstrap_auc(labels, np.stack([a, a2]), b, resamples=20)
    assert stacked == got


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"resamples": 5}, "resamples must be >= 10"),
    ({"confidence": 1.0}, "confidence must be in"),
])
def test_bad_settings(kwargs: dict[str, float], message: str) -> None:
    labels, a, b = _two_models(100)
    with pytest.raises(ValueError, match=message):
        paired_bootstrap_auc(labels, a, b, **kwargs)  # type: ignore[arg-type]


def test_bad_shapes_and_single_class() -> None:
    labels, a, b = _two_models(100)
    with pytest.raises(ValueError, match="one score per row"):
        paired_bootstrap_auc(labels, a[:99], b)
    with pytest.raises(ValueError, match="single class"):
        paired_bootstrap_auc(np.ones(100), a, b)


def test_count_frequent_values() -> None:
    ids = np.array([[1, 7]] * 10 + [[2, 7]] * 9 + [[0, 8]] * 10)
    assert count_frequent_values(ids, 10) == 4  # feature 0: values 1 and 0; feature 1: 7 and 8
    assert count_frequent_values(ids, 1) == 5
    with pytest.raises(ValueError, match="must be"):
        count_frequent_values(np.zeros(5), 10)
