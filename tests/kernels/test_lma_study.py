"""kernels.lma_study: the measured P(same block code) follows (J + (1 - J) / 2^b)^k."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import lma_study


@pytest.mark.parametrize("jaccard", [0.25, 0.5, 0.9])
def test_pairs_have_the_requested_jaccard(jaccard: float) -> None:
    first, second = lma_study.pair_rows(np.random.default_rng(0), jaccard, 40)
    union, common = np.union1d(first, second), np.intersect1d(first, second)
    assert len(common) / len(union) == pytest.approx(jaccard, abs=0.03)


def test_equal_sets_always_share_and_disjoint_sets_almost_never() -> None:
    assert lma_study.shared_code_fraction(1.0, 2, 8, pairs=20, size=30, seed=0) == 1.0
    assert lma_study.shared_code_fraction(0.0, 2, 8, pairs=40, size=30, seed=0) < 0.01
    half = lma_study.shared_code_fraction(0.5, 1, 8, pairs=150, size=40, seed=1)
    assert half == pytest.approx(0.5, abs=0.08)
