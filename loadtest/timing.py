"""Side-by-side timing (DESIGN.md section 7): warm up every variant, then alternate them, keep medians.

Each variant is a callable that runs one timed sample and returns its duration in seconds (it picks its
own clock: CUDA events on a GPU, ``perf_counter`` on a CPU). Rounds alternate the order (A B, B A, ...)
so drift in clocks or caches falls on every variant alike.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Sample = Callable[[], float]


@dataclass(frozen=True)
class TimingConfig:
    """How many samples to take.

    Args:
        warmup: untimed samples of each variant before the first round.
        rounds: timed rounds; every variant runs once per round.
        max_seconds: stop early (keeping at least ``min_rounds``) once the rounds took this long.
        min_rounds: rounds always taken, whatever ``max_seconds`` says.
    """

    warmup: int = 3
    rounds: int = 15
    max_seconds: float = float("inf")
    min_rounds: int = 3

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.rounds < 1 or not 1 <= self.min_rounds <= self.rounds:
            raise ValueError(f"need warmup >= 0 and 1 <= min_rounds <= rounds, got {self}")
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")


@dataclass(frozen=True)
class Timing:
    """Durations (seconds) of one variant's timed samples."""

    samples: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: how noisy the samples were."""
        if len(self.samples) < 3:
            return 0.0
        deciles = statistics.quantiles(self.samples, n=10)
        return (deciles[-1] - deciles[0]) / self.median_s


def alternate(variants: Mapping[str, Sample], config: TimingConfig) -> dict[str, Timing]:
    """Warm up, then time the variants in alternating order; returns each one's samples.

    Example:
        >>> t = alternate({"a": lambda: 1.0, "b": lambda: 2.0}, TimingConfig(warmup=0, rounds=3))
        >>> t["b"].median_s / t["a"].median_s
        2.0
    """
    names = list(variants)
    for name in names:
        for _ in range(config.warmup):
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    start = time.monotonic()
    for round_index in range(config.rounds):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(variants[name]())
        if round_index + 1 >= config.min_rounds and time.monotonic() - start > config.max_seconds:
            logger.info("timing stopped after %d rounds (%.1f s budget)", round_index + 1, config.max_seconds)
            break
    return {name: Timing(tuple(values)) for name, values in samples.items()}


def wall_clock(run: Callable[[], object], repeats: int = 1) -> Sample:
    """A sample that runs ``run`` ``repeats`` times under ``perf_counter``: seconds per run."""

    def sample() -> float:
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        return (time.perf_counter() - start) / repeats

    return sample
