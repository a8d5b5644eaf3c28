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

Generator v2 (the default) adds three properties of real logs; ``SynthConfig.null_control()`` (CLI
``--null-control``) turns them off and gives v1's bytes exactly (v2 draws from its own random streams):

- **Rarity** (``rarity_decay``): the variance of a value's own effect (first-order and latent) is
  proportional to its Zipf probability to the power ``rarity_decay``, normalised so the mean over rows
  stays 1: frequent values carry most of the per-value signal, rare ones little.
- **Head shares** (``head_share``): a feature's most frequent value holds the share measured on the real
  sample (``REAL_TOP1_SHARE``): with probability q the value is rank 1, else the Zipf draw, q solved for it.
- **Aliased groups** (``aliases``, ``ALIAS_GROUPS``): a leader feature's value stands for a latent entity
  (a user, a site); each member feature copies a deterministic function of it with probability
  ``determinism`` (0.78-0.99, calibrated on the dependency rates of the real sample), else draws as usual.
  The function keeps the rank (divided by the member's fan-in, modulo its cardinality), so members of a
  group agree with each other too; a hashed share of the leader's values maps to the member's rank 1
  (its head share).

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
    ALIAS_FAN_IN,
    ALIAS_GROUPS,
    CATEGORICAL_MISSING,
    DENSE_LOG_MEAN,
    DENSE_LOG_STD,
    DENSE_MISSING,
    KAGGLE_CARDINALITIES,
    NEGATIVE_I2_QUANTILE,
    REAL_TOP1_SHARE,
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
BoolArray = npt.NDArray[np.bool_]


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
class Draws:
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
        self._init_v2()
        self.bias = self._calibrate_bias()

    def _init_v2(self) -> None:
        """Generator v2 parameters, from their own random stream so that the v1 draws stay unchanged."""
        cfg = self.config
        rng = np.random.default_rng([self.seed, 4])
        self.alias_keys = rng.integers(0, 1 << 63, NUM_CATEGORICAL, dtype=np.int64).astype(np.uint64)
        self.groups = ALIAS_GROUPS if cfg.aliases else ()
        zipf_top = np.array([_zipf_rank1_mass(int(k), float(e)) for k, e in
                             zip(self.cardinalities, self.exponents, strict=True)])
        # a field that follows its topic draws within the topic's cluster: rank 1 only in cluster 0
        cluster0 = np.array(
            [self.topic_probs[np.arange(cfg.num_topics) % g == 0].sum() for g in self.clusters]
        )
        in_cluster0 = np.array([
            _zipf_rank1_mass((int(k) - 1) // int(g) + 1, float(e))
            for k, g, e in zip(self.cardinalities, self.clusters, self.exponents, strict=True)
        ])
        follow = np.where(self.clusters > 1, cfg.topic_affinity, 0.0)
        zipf_top = (1.0 - follow) * zipf_top + follow * cluster0 * in_cluster0
        target = np.array(REAL_TOP1_SHARE) if cfg.head_share else np.zeros(NUM_CATEGORICAL)
        # rank 1 with probability q, else the Zipf draw: q + (1 - q) * zipf_top = target
        self.head_mass = np.clip((target - zipf_top) / (1.0 - zipf_top), 0.0, 1.0)
        top = self.head_mass + (1.0 - self.head_mass) * zipf_top  # each feature's own top-value share
        # an alias copy is rank 1 for this share of the leader's values (which bring their own rank 1)
        self.alias_head = np.zeros(NUM_CATEGORICAL)
        for leader, members in self.groups:
            for g, _ in members:
                self.alias_head[g] = np.clip((target[g] - top[leader]) / (1.0 - top[leader]), 0.0, 1.0)
        self.rarity_norm = np.ones(NUM_CATEGORICAL)
        if cfg.rarity_decay:
            for f in range(NUM_CATEGORICAL):
                ranks = np.arange(1, int(self.cardinalities[f]) + 1, dtype=np.float64)
                law = ranks ** -self.exponents[f]
                law /= law.sum()
                # row-weighted mean of the rank scale below, so each feature keeps unit mean variance
                self.rarity_norm[f] = float(np.sum(law * ranks ** (-self.exponents[f] * cfg.rarity_decay)))

    def rarity_scale(self, f: int, ranks: IntArray) -> FloatArray:
        """Standard deviation of the own effects of feature ``f``'s values of these ranks (v2; 1 in v1).

        The variance is proportional to the value's Zipf probability to the power ``rarity_decay``,
        normalised so that its mean over rows (under the Zipf law) is 1.
        """
        if not self.config.rarity_decay:
            return np.ones(ranks.shape)
        exponent = -0.5 * self.exponents[f] * self.config.rarity_decay
        return ranks.astype(np.float64) ** exponent / np.sqrt(self.rarity_norm[f])

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
        v2 = {} if self.config.is_null_control else {
            "head_mass": np.round(self.head_mass, 4).tolist(),
            "alias_groups": [
                {
                    "leader": f"C{leader + 1}",
                    "members": {
                        f"C{g + 1}": {"determinism": p, "fan_in": ALIAS_FAN_IN.get(g, 1)} for g, p in members
                    },
                }
                for leader, members in self.groups
            ],
        }
        return v2 | {
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

    def block_draws(self, index: int) -> Draws:
        """The random inputs of block ``index`` (rows ``index * BLOCK_ROWS`` onwards)."""
        return self._draw(
            np.random.default_rng([self.seed, 1, index]),
            BLOCK_ROWS,
            np.random.default_rng([self.seed, 3, index]),
        )

    def _block(self, index: int) -> SynthRows:
        draws = self.block_draws(index)
        logits = self.bias + self._raw_logits(draws)
        labels = (draws.label_uniform < 1.0 / (1.0 + np.exp(-logits))).astype(np.int8)
        ids = np.where(draws.present, _mix32(draws.ranks ^ self.id_keys), 0)
        return SynthRows(labels, draws.dense, ids, logits, draws.topics)

    def _draw(self, rng: np.random.Generator, rows: int, extra: np.random.Generator) -> Draws:
        """``rng`` draws everything v1 drew (in v1's order); ``extra`` what v2 adds."""
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
        for leader, members in self.groups:
            copies = extra.random((rows, len(members))) < np.array([p for _, p in members])
            for column, (g, _) in enumerate(members):
                alias = self._alias_ranks(g, leader, ranks[:, leader])
                ranks[:, g] = np.where(copies[:, column], alias, ranks[:, g])
        dense = self._dense(topics, noise)
        dense[~dense_present] = np.nan
        return Draws(topics, ranks, present, dense, label_uniform)

    def _ranks(
        self, f: int, topics: IntArray, follow: npt.NDArray[np.bool_], uniform: FloatArray
    ) -> IntArray:
        """Value ranks (1 = most frequent) of feature ``f``: Zipf, or Zipf within the topic cluster."""
        size, groups, exponent = int(self.cardinalities[f]), int(self.clusters[f]), float(self.exponents[f])
        head = float(self.head_mass[f])
        if head:
            on_head = uniform < head
            uniform = np.where(on_head, 0.0, (uniform - head) / (1.0 - head))
        ranks = _zipf_ranks(uniform, np.full(uniform.shape, size), exponent)
        if groups > 1:
            cluster = topics % groups
            cluster_size = (
                size - 1 - cluster
            ) // groups + 1  # ranks r <= size with (r - 1) mod groups == cluster
            within = _zipf_ranks(uniform, cluster_size, exponent)
            ranks = np.where(follow, (within - 1) * groups + cluster + 1, ranks)
        if head:
            ranks = np.where(on_head, 1, ranks)
        return ranks

    def _alias_ranks(self, g: int, leader: int, leader_ranks: IntArray) -> IntArray:
        """Feature ``g``'s value for each value of its group's leader (a deterministic function).

        The rank is kept, divided by ``g``'s fan-in (``ALIAS_FAN_IN``: a coarse member groups that many
        consecutive leader ranks) and wrapped modulo ``g``'s cardinality, so frequent leader values map to
        frequent values of ``g`` and members of one group agree with each other; a hashed uniform of the
        leader value, shared by the group, sends a share of the leader values to rank 1 (``alias_head``).
        """
        uniform = 0.5 + _value_noise(self.alias_keys[leader], leader_ranks, 0, 1)[:, 0] / (2 * SQRT3)
        wrapped = ((leader_ranks - 1) // ALIAS_FAN_IN.get(g, 1)) % int(self.cardinalities[g]) + 1
        return np.where(uniform < self.alias_head[g], 1, wrapped)

    def _dense(self, topics: IntArray, noise: FloatArray) -> FloatArray:
        share = self.config.dense_topic_share
        z = np.sqrt(share) * self.dense_topic[topics] + np.sqrt(1 - share) * noise  # (N, 13), standard normal
        logs = np.array(DENSE_LOG_MEAN) + np.array(DENSE_LOG_STD) * z
        counts = np.floor(np.expm1(np.clip(logs, 0.0, 25.0)) + 0.5)
        counts[:, 1] = np.where(z[:, 1] < NEGATIVE_I2_QUANTILE, -1.0, counts[:, 1])
        return counts

    def _raw_logits(self, draws: Draws, keep: list[BoolArray] | None = None) -> FloatArray:
        """The planted logit without the bias, from observed fields only.

        ``keep[f][rank]`` False drops that value's own effect (first-order and latent), leaving its
        cluster part: what the oracle of ``training.data.oracle`` gives a value a budget cannot hold.
        """
        share = self.config.cluster_share
        logits = np.zeros(draws.ranks.shape[0])
        for f in range(NUM_CATEGORICAL):
            cluster = (draws.ranks[:, f] - 1) % self.clusters[f]
            own = _value_noise(self.noise_keys[f], draws.ranks[:, f], 0, 1)[:, 0]
            own = own * self._own_scale(f, draws.ranks[:, f], keep)
            weight = np.sqrt(share) * self.cluster_effects[f, cluster] + np.sqrt(1 - share) * own
            logits += np.where(draws.present[:, f], self.first_order_scale[f] * weight, 0.0)
        latents = {f: self._latent(f, draws, keep) for pair in self.pairs for f in pair}
        for matrix, (f, g) in zip(self.pair_matrices, self.pairs, strict=True):
            logits += self.pair_scale * np.einsum("ni,ij,nj->n", latents[f], matrix, latents[g])
        standardised = (
            np.log1p(np.clip(np.nan_to_num(draws.dense), 0, None)) - np.array(DENSE_LOG_MEAN)
        ) / np.array(DENSE_LOG_STD)
        logits += np.where(np.isnan(draws.dense), 0.0, standardised) @ self.dense_weights
        return logits

    def _own_scale(self, f: int, ranks: IntArray, keep: list[BoolArray] | None) -> FloatArray | float:
        """Multiplier of the own part of values: rarity scale (v2), times 0 where ``keep`` drops them."""
        scale: FloatArray | float = self.rarity_scale(f, ranks) if self.config.rarity_decay else 1.0
        if keep is not None:
            scale = np.where(keep[f][ranks], scale, 0.0)
        return scale

    def _latent(self, f: int, draws: Draws, keep: list[BoolArray] | None = None) -> FloatArray:
        """Latent vectors of feature ``f``'s values: (N, latent_dim), zero where missing."""
        share = self.config.cluster_share
        ranks = draws.ranks[:, f]
        cluster = (ranks - 1) % self.clusters[f]
        own = _value_noise(self.noise_keys[f], ranks, 1, self.config.latent_dim)
        scale = self._own_scale(f, ranks, keep)
        if not isinstance(scale, float):
            own = own * scale[:, None]
        latent = np.sqrt(share) * self.topic_directions[cluster] + np.sqrt(1 - share) * own
        return latent * draws.present[:, f, None]

    def _calibrate_bias(self) -> float:
        """Bias giving ``positive_rate`` mean probability on a calibration sample (bisection)."""
        draws = self._draw(
            np.random.default_rng([self.seed, 2]), CALIBRATION_ROWS, np.random.default_rng([self.seed, 5])
        )
        raw = self._raw_logits(draws)
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


def _zipf_rank1_mass(size: int, exponent: float) -> float:
    """Probability that ``_zipf_ranks`` returns 1 (continuous law on [1, size + 1), floored)."""
    power = 1.0 - exponent
    return float((2.0**power - 1.0) / ((size + 1.0) ** power - 1.0)) if size > 1 else 1.0


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
