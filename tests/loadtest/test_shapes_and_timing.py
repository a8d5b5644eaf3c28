"""Benchmark shapes (DESIGN.md section 7 figures) and the alternating timer."""

from __future__ import annotations

import itertools

import pytest

from loadtest.shapes import SHAPES, get_shape
from loadtest.timing import TimingConfig, alternate


def test_published_shapes_match_the_design() -> None:
    kaggle, terabyte = get_shape("kaggle"), get_shape("terabyte")
    assert (kaggle.num_features, kaggle.embedding_dim, kaggle.block_size) == (26, 16, 16)
    assert round(kaggle.total_rows / 1e6, 1) == 33.8 and round(kaggle.table_bytes / 1e9, 2) == 2.16
    assert (terabyte.num_features, terabyte.embedding_dim, terabyte.block_size) == (26, 128, 32)
    assert round(terabyte.total_rows / 1e6, 1) == 187.8 and round(terabyte.table_bytes / 1e9) == 96
    assert terabyte.robe_floats == 27_000_000 and max(terabyte.rows) <= 40_000_000
    assert kaggle.robe_floats == kaggle.total_rows * 16 // 1000  # 1000x compression


def test_scaling_shrinks_every_table_but_not_the_robe_array() -> None:
    terabyte = get_shape("terabyte")
    scaled = terabyte.scaled(0.5)
    assert scaled.rows_scale == 0.5 and scaled.robe_floats == terabyte.robe_floats
    assert all(1 <= s <= (r + 1) // 2 for s, r in zip(scaled.rows, terabyte.rows, strict=True))
    assert terabyte.scaled(1.5) is terabyte


def test_unknown_shape_names_the_choices() -> None:
    with pytest.raises(ValueError, match="kaggle"):
        get_shape("huge")
    assert set(SHAPES) == {"tiny", "kaggle", "terabyte"}


def test_alternate_swaps_the_order_every_round_and_keeps_medians() -> None:
    calls: list[str] = []
    durations = {"a": itertools.cycle([1.0, 3.0, 2.0]), "b": itertools.cycle([10.0])}

    def variant(name: str):
        def sample() -> float:
            calls.append(name)
            return next(durations[name])

        return sample

    timings = alternate({"a": variant("a"), "b": variant("b")}, TimingConfig(warmup=1, rounds=3))
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"]  # warm-up a, b; then ab, ba, ab
    assert timings["a"].samples == (3.0, 2.0, 1.0) and timings["a"].median_s == 2.0
    assert timings["b"].median_s == 10.0


def test_alternate_stops_at_the_time_limit_after_min_rounds() -> None:
    timings = alternate({"a": lambda: 0.0}, TimingConfig(warmup=0, rounds=50, max_seconds=1e-9, min_rounds=2))
    assert len(timings["a"].samples) == 2


@pytest.mark.parametrize("kwargs", [{"rounds": 0}, {"warmup": -1}, {"min_rounds": 20}, {"max_seconds": 0}])
def test_timing_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimingConfig(**kwargs)  # type: ignore[arg-type]
