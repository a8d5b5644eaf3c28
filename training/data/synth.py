"""A synthetic Criteo-like click log with a planted label model, for meaningful compression comparisons.

DLRM's own generator draws ids uniformly and labels at random, so every embedding method scores AUC 0.5
on it. This one is built so that memory matters:

- 26 categorical features with the Criteo Kaggle cardinalities (DLRM's counts), the large ones scaled
  by ``scale`` (default 0.1: ~3.4M values in all); per-feature Zipf-like frequencies, exponent drawn in
  [``zipf_min``, ``zipf_max``]; a seeded bijection of each feature's ranks onto 32-bit ids, so ids look
  like Criteo's 8-hex-digit hashes; per-feature missing rates measured on the real sample.
- 13 dense counts whose log1p follows the real sample's per-feature mean and spread.
- Semantic clusters: each row has a topic; a feature's values are split into clusters (rank mod G),
  and with probability ``topic_affinity`` a row takes its value from its topic's cluster, so values of
  one cluster co-occur; the values of a cluster share a latent direction and a first-order effect.
- Planted label model, a function of the observed fields only (missing fields contribute nothing)::

      logit = bias + sum_f w_f(v_f) + sum_pairs z_f(v_f)' R_p z_g(v_g) + sum_k d_k * standardised log1p(x_k)

  ``w`` and ``z`` mix a cluster part (shared, learnable from frequent values of the cluster) with a
  per-value part (learnable only for values seen often enough, which is what full tables keep and small
  hashed tables blur). ``bias`` is calibrated so that ``positive_rate`` of rows are positive. The AUC of
  the true logits on the drawn labels is the ceiling any model can reach.

Everything is a pure function of the seed: rows come in fixed blocks of BLOCK_ROWS, each from its own
``default_rng([seed, 1, block])``, and per-value parameters are hashes of (seed, feature, rank), so the
output does not depend on how it is chunked and no table of values is held in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from training.data.synth_config import (
    CATEGORICAL_MISSING,
    DENSE_LOG_MEAN,
    DENSE_LOG_STD,
    DENSE_MISSING,
    KAGGLE_CARDINALITIES,
    NEGATIVE_I2_QUANTILE,
    SynthConfig,
)

logger = logging.getLogger(__name__)

NUM_CATEGORICAL, NUM_DENSE = len(KAGGLE_CARDINALITIES), len(DENSE_LOG_MEAN)
BLOCK_ROWS = 1 << 14
CALIBRATION_ROWS = 1 << 15
MIN_PAIR_CARDINALITY = 1000
GOLDEN, MIX_K = 0x9E3779B97F4A7C15, 0xD1B54A32D192ED03
SQRT3 = float(np.sqrt(3.0))

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SynthRows:
    """Generated rows in the readers' representation, plus the true logits.

    Args:
        labels: int8 [N].
        dense: float64 [N, 13], integer counts, NaN = missing.
        categorical: int64 [N, 26], 32-bit ids, 0 = missing.
        logits: float64 [N], the planted model's logit of each row.
        topics: int64 [N], each row's latent topic (for analysis; not written to the file).
    """

    labels: npt.NDArray[np.int8]
    dense: FloatArray
    categorical: IntArray
    logits: FloatArray
    topics: IntArray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class _Draws:
    """The random inputs of some rows, before the label model."""

    topics: IntArray
    ranks: IntArray  # (N, 26), in [1, K_f]
    present: npt.NDArray[np.bool_]  # (N, 26)
    dense: FloatArray  # (N, 13), NaN = missing
    label_uniform: FloatArray


@dataclass
class SyntheticCriteo:
    """The generator for one seed: parameters drawn once, rows produced block by block.

    Args:
        seed: determines every parameter and every row.
        config: the distribution.

    Example:
        >>> rows = SyntheticCriteo(seed=1).rows(0, 1000)
        >>> rows.categorical.shape, rows.dense.shape
        ((1000, 26), (1000, 13))
    """

    seed: int
    config: SynthConfig = field(default_factory=SynthConfig)

    def __post_init__(self) -> None:
        cfg = self.config
        rng = np.random.default_rng([self.seed, 0])
        self.cardinalities = np.array(cfg.cardinalities(), dtype=np.int64)
        self.exponents = rng.uniform(cfg.zipf_min, cfg.zipf_max, NUM_CATEGORICAL)
        self.clusters = np.clip(self.cardinalities // 8, 1, cfg.num_topics)  # clusters per feature
        self.id_keys = rng.integers(1 << 31, 1 << 32, NUM_CATEGORICAL, dtype=np.int64)
        self.noise_keys = rng.integers(0, 1 << 63, NUM_CATEGORICAL, dtype=np.int64).astype(np.uint64)
        self.topic_probs = rng.dirichlet(np.full(cfg.num_topics, 2.0))
        self.topic_directions = rng.standard_normal((cfg.num_topics, cfg.latent_dim))
        self.cluster_effects = rng.standard_normal((NUM_CATEGORICAL, cfg.num_topics))
        log_sizes = np.log1p(self.cardinalities)
        self.first_order_scale = cfg.first_order_std * np.sqrt(log_sizes / log_sizes.sum())
        self.pairs = self._draw_pairs(rng)
        self.pair_matrices = (
            rng.standard_normal((len(self.pairs), cfg.latent_dim, cfg.latent_dim)) / cfg.latent_dim
        )
        self.pair_scale = cfg.pair_std / np.sqrt(max(len(self.pairs), 1))
        self.dense_topic = rng.standard_normal((cfg.num_topics, NUM_DENSE))
        weights = rng.standard_normal(NUM_DENSE)
        self.dense_weights = cfg.dense_std * weights / np.sqrt(np.sum(weights**2))
        self.bias = self._calibrate_bias()

    def _draw_pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        candidates = np.flatnonzero(self.cardinalities >= MIN_PAIR_CARDINALITY)
        pairs: list[tuple[int, int]] = []
        all_pairs = [(int(a), int(b)) for i, a in enumerate(candidates) for b in candidates[i + 1 :]]
        if all_pairs and self.config.num_pairs:
            chosen = rng.choice(
                len(all_pairs), size=min(self.config.num_pairs, len(all_pairs)), replace=False
            )
            pairs = [all_pairs[int(index)] for index in np.sort(chosen)]
        return pairs

    def parameters(self) -> dict[str, Any]:
        """The drawn parameters worth recording beside the data (JSON-ready)."""
        return {
            "cardinalities": self.cardinalities.tolist(),
            "zipf_exponents": np.round(self.exponents, 4).tolist(),
            "clusters": self.clusters.tolist(),
            "pairs": [list(pair) for pair in self.pairs],
            "bias": round(self.bias, 6),
            "first_order_scale": np.round(self.first_order_scale, 4).tolist(),
            "dense_weights": np.round(self.dense_weights, 4).tolist(),
        }

    def rows(self, start: int, stop: int) -> SynthRows:
        """Rows ``start`` (inclusive) to ``stop`` (exclusive): the same whatever the chunking."""
        if not 0 <= start <= stop:
            raise ValueError(f"need 0 <= start <= stop, got {start}, {stop}")
        first, last = start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)
        blocks = [self._block(index) for index in range(first, last)] or [self._block(first)]
        offset = start - first * BLOCK_ROWS
        return SynthRows(
            *(
                np.concatenate([getattr(b, name) for b in blocks])[offset : offset + stop - start]
                for name in ("labels", "dense", "categorical", "logits", "topics")
            )
        )

    def _block(self, index: int) -> SynthRows:
        draws = self._draw(np.random.default_rng([self.seed, 1, index]), BLOCK_ROWS)
        logits = self.bias + self._raw_logits(draws)
        labels = (draws.label_uniform < 1.0 / (1.0 + np.exp(-logits))).astype(np.int8)
        ids = np.where(draws.present, _mix32(draws.ranks ^ self.id_keys), 0)
        return SynthRows(labels, draws.dense, ids, logits, draws.topics)

    def _draw(self, rng: np.random.Generator, rows: int) -> _Draws:
        cfg = self.config
        topics = rng.choice(cfg.num_topics, size=rows, p=self.topic_probs)
        follow = rng.random((rows, NUM_CATEGORICAL)) < cfg.topic_affinity
        uniform = rng.random((rows, NUM_CATEGORICAL))
        present = rng.random((rows, NUM_CATEGORICAL)) >= np.array(CATEGORICAL_MISSING)
        noise = rng.standard_normal((rows, NUM_DENSE))
        dense_present = rng.random((rows, NUM_DENSE)) >= np.array(DENSE_MISSING)
        label_uniform = rng.random(rows)
        ranks = np.empty((rows, NUM_CATEGORICAL), dtype=np.int64)
        for f in range(NUM_CATEGORICAL):
            ranks[:, f] = self._ranks(f, topics, follow[:, f], uniform[:, f])
        dense = self._dense(topics, noise)
        dense[~dense_present] = np.nan
        return _Draws(topics, ranks, present, dense, label_uniform)

    def _ranks(
        self, f: int, topics: IntArray, follow: npt.NDArray[np.bool_], uniform: FloatArray
    ) -> IntArray:
        """Value ranks (1 = most frequent) of feature ``f``: Zipf, or Zipf within the topic cluster."""
        size, groups, exponent = int(self.cardinalities[f]), int(self.clusters[f]), float(self.exponents[f])
        ranks = _zipf_ranks(uniform, np.full(uniform.shape, size), exponent)
        if groups > 1:
            cluster = topics % groups
            cluster_size = (
                size - 1 - cluster
            ) // groups + 1  # ranks r <= size with (r - 1) mod groups == cluster
            within = _zipf_ranks(uniform, cluster_size, exponent)
            ranks = np.where(follow, (within - 1) * groups + cluster + 1, ranks)
        return ranks

    def _dense(self, topics: IntArray, noise: FloatArray) -> FloatArray:
        share = self.config.dense_topic_share
        z = np.sqrt(share) * self.dense_topic[topics] + np.sqrt(1 - share) * noise  # (N, 13), standard normal
        logs = np.array(DENSE_LOG_MEAN) + np.array(DENSE_LOG_STD) * z
        counts = np.floor(np.expm1(np.clip(logs, 0.0, 25.0)) + 0.5)
        counts[:, 1] = np.where(z[:, 1] < NEGATIVE_I2_QUANTILE, -1.0, counts[:, 1])
        return counts

    def _raw_logits(self, draws: _Draws) -> FloatArray:
        """The planted logit without the bias, from observed fields only."""
        share = self.config.cluster_share
        logits = np.zeros(draws.ranks.shape[0])
        for f in range(NUM_CATEGORICAL):
            cluster = (draws.ranks[:, f] - 1) % self.clusters[f]
            own = _value_noise(self.noise_keys[f], draws.ranks[:, f], 0, 1)[:, 0]
            weight = np.sqrt(share) * self.cluster_effects[f, cluster] + np.sqrt(1 - share) * own
            logits += np.where(draws.present[:, f], self.first_order_scale[f] * weight, 0.0)
        latents = {f: self._latent(f, draws) for pair in self.pairs for f in pair}
        for matrix, (f, g) in zip(self.pair_matrices, self.pairs, strict=True):
            logits += self.pair_scale * np.einsum("ni,ij,nj->n", latents[f], matrix, latents[g])
        standardised = (
            np.log1p(np.clip(np.nan_to_num(draws.dense), 0, None)) - np.array(DENSE_LOG_MEAN)
        ) / np.array(DENSE_LOG_STD)
        logits += np.where(np.isnan(draws.dense), 0.0, standardised) @ self.dense_weights
        return logits

    def _latent(self, f: int, draws: _Draws) -> FloatArray:
        """Latent vectors of feature ``f``'s values: (N, latent_dim), zero where missing."""
        share = self.config.cluster_share
        ranks = draws.ranks[:, f]
        cluster = (ranks - 1) % self.clusters[f]
        own = _value_noise(self.noise_keys[f], ranks, 1, self.config.latent_dim)
        latent = np.sqrt(share) * self.topic_directions[cluster] + np.sqrt(1 - share) * own
        return latent * draws.present[:, f, None]

    def _calibrate_bias(self) -> float:
        """Bias giving ``positive_rate`` mean probability on a calibration sample (bisection)."""
        raw = self._raw_logits(self._draw(np.random.default_rng([self.seed, 2]), CALIBRATION_ROWS))
        low, high = -30.0, 30.0
        for _ in range(60):
            middle = (low + high) / 2
            if np.mean(1.0 / (1.0 + np.exp(-(raw + middle)))) < self.config.positive_rate:
                low = middle
            else:
                high = middle
        return (low + high) / 2


def _zipf_ranks(uniform: FloatArray, sizes: IntArray, exponent: float) -> IntArray:
    """Ranks in [1, size] with P(rank ~ r) proportional to r^-exponent (inverse CDF of the continuous law)."""
    power = 1.0 - exponent
    top = (sizes + 1.0) ** power
    ranks = np.floor((1.0 - uniform * (1.0 - top)) ** (1.0 / power)).astype(np.int64)
    return np.clip(ranks, 1, sizes)


def _mix32(values: IntArray) -> IntArray:
    """A bijection of 32-bit integers (lowbias32): only 0 maps to 0; rank ^ key is never 0."""
    x = values.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x.astype(np.int64)


def _value_noise(key: np.uint64, ranks: IntArray, first: int, count: int) -> FloatArray:
    """Per-value pseudo-random numbers, unit-variance uniform (N, count): hashes of (key, rank, index)."""
    base = np.uint64(key) ^ (ranks.astype(np.uint64) * np.uint64(GOLDEN))
    index = np.arange(first, first + count, dtype=np.uint64) * np.uint64(MIX_K)
    x = base[:, None] + index  # (N, count)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    uniform = (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    return (2.0 * uniform - 1.0) * SQRT3
