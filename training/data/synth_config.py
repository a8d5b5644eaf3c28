"""Configuration of the synthetic Criteo-like log, and the real-data figures it is calibrated to.

The missing rates and dense-value spreads were measured on ``../shared/data/criteo/criteo_15k.tsv.gz``
(``python -m training.data stats`` prints the missing rates); the cardinalities are the Criteo Kaggle
counts DLRM reports for C1..C26.
"""

from __future__ import annotations

from dataclasses import dataclass

# Criteo Kaggle distinct values per categorical feature C1..C26 (DLRM's preprocessed counts).
KAGGLE_CARDINALITIES = (1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
                        27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)
# Share of empty fields in ../shared/data/criteo/criteo_15k.tsv.gz (`python -m training.data stats`).
CATEGORICAL_MISSING = (0.0014, 0.0, 0.0329, 0.0329, 0.0, 0.1221, 0.0, 0.0, 0.0, 0.0014, 0.0014, 0.0329, 0.0,
                       0.0292, 0.0, 0.0622, 0.0292, 0.0, 0.4178, 0.4192, 0.0343, 0.7519, 0.0292,
                       0.0329, 0.4178, 0.4178)
DENSE_MISSING = (0.4362, 0.0057, 0.2092, 0.2255, 0.0665, 0.2334, 0.0466, 0.0007, 0.0446, 0.4276, 0.0726,
                 0.7237, 0.2082)
# Mean and standard deviation of log1p(max(x, 0)) over the present values of I1..I13 in the same file.
DENSE_LOG_MEAN = (0.959, 2.287, 2.177, 1.792, 7.039, 3.265, 1.478, 2.083, 3.448, 0.36, 0.895, 1.989, 1.829)
DENSE_LOG_STD = (1.095, 2.219, 1.243, 1.051, 3.025, 1.935, 1.377, 1.262, 1.723, 0.395, 0.756, 3.421, 1.03)
NEGATIVE_I2_QUANTILE = -1.32  # I2 is -1 below this z-score (9.3% of the real sample's I2 values are < 0)
# Share of the present rows holding each feature's most frequent value in the same file (`python -m
# training.data stats`, column top1); generator v2 gives rank 1 at least this share (``head_share``).
REAL_TOP1_SHARE = (0.466, 0.114, 0.038, 0.055, 0.624, 0.467, 0.01, 0.55, 0.837, 0.244, 0.024, 0.038, 0.022,
                   0.345, 0.015, 0.039, 0.425, 0.04, 0.54, 0.313, 0.038, 0.402, 0.433, 0.062, 0.253, 0.072)
# Aliased feature groups of generator v2 (0-based columns: 2 = C3): (leader, ((member, determinism), ...)).
# A member copies a deterministic function of the leader's value with probability `determinism`; the
# values are calibrated so that the dependency rates of a 15,764-row v2 file match those measured on the
# real sample (`python -m training.data stats --dependencies`, docs/data.md): C3 -> C4 0.957,
# C12 0.966, C16 0.997, C21 0.978, C24 0.998, C26 0.784; C7 -> C11 0.930, C13 0.979;
# C15 -> C2 0.991, C14 0.998, C18 0.974. C3 -> C19 0.900, C20 0.845, C25 0.818 (whose own top values are
# common: 0.54, 0.31, 0.25) are matched more loosely.
ALIAS_GROUPS: tuple[tuple[int, tuple[tuple[int, float], ...]], ...] = (
    (2, ((3, 0.96), (11, 0.97), (15, 0.99), (18, 0.8), (19, 0.8), (20, 0.98), (23, 0.99), (24, 0.75),
         (25, 0.78))),
    (6, ((10, 0.93), (12, 0.98))),
    (14, ((1, 0.99), (13, 0.99), (17, 0.97))),
)
# Fan-in of a member (0-based column -> leader values per member value, default 1): a coarse feature groups
# this many consecutive leader ranks, so its value does not tell the leader's back (real sample: C4 -> C3
# 0.589, C24 -> C3 0.448, C26 -> C3 0.366, C11 -> C7 0.612, C13 -> C7 0.556, C18 -> C15 0.540,
# C2 -> C15 0.367). Fan-ins within a group are multiples of each other, so the coarser member still
# follows the finer one (C4 -> C24 0.925, C13 -> C11 0.857, C18 -> C2 0.946).
ALIAS_FAN_IN = {3: 2, 23: 4, 25: 2, 10: 2, 12: 2, 17: 2, 1: 4}
MAX_RANK = (1 << 31) - 1  # ranks must stay below 2^31 for the rank -> 32-bit id bijection


@dataclass(frozen=True)
class SynthConfig:
    """Distribution of the synthetic log; the defaults are the documented ``synth-criteo`` data set.

    Args:
        scale: factor on the Kaggle cardinalities above ``min_cardinality``.
        min_cardinality: cardinalities up to this stay as in Kaggle; scaled ones do not go below it.
        zipf_min: smallest per-feature Zipf exponent.
        zipf_max: largest per-feature Zipf exponent ([zipf_min, zipf_max] must not contain 1).
        num_topics: row topics (and at most as many clusters per feature).
        topic_affinity: probability that a field follows the row's topic cluster.
        cluster_share: share of a value's latent variance (and first-order effect) from its cluster.
        latent_dim: size of the latent vectors of the pairwise terms.
        num_pairs: pairwise bilinear terms, between features of at least 1,000 values.
        first_order_std: standard deviation of the sum of first-order terms (all fields present).
        pair_std: standard deviation of the sum of pairwise terms.
        dense_std: standard deviation of the dense term.
        dense_topic_share: share of a dense feature's log variance explained by the row topic.
        positive_rate: target share of positive labels (the bias is calibrated to it).
        rarity_decay: generator v2: the variance of a value's own effect is proportional to its Zipf
            probability to this power (0: every value has the same variance, the null control).
        head_share: generator v2: each feature's most frequent value holds at least the share measured on
            the real sample (``REAL_TOP1_SHARE``); off in the null control.
        aliases: generator v2: the aliased feature groups ``ALIAS_GROUPS``; off in the null control.

    Example:
        >>> SynthConfig(scale=0.01).cardinalities()[:4]
        (1460, 583, 101312, 22026)
    """

    scale: float = 0.1
    min_cardinality: int = 100
    zipf_min: float = 1.05
    zipf_max: float = 1.2
    num_topics: int = 32
    topic_affinity: float = 0.5
    cluster_share: float = 0.5
    latent_dim: int = 8
    num_pairs: int = 6
    first_order_std: float = 1.2
    pair_std: float = 0.8
    dense_std: float = 0.5
    dense_topic_share: float = 0.3
    positive_rate: float = 0.25
    rarity_decay: float = 0.25
    head_share: bool = True
    aliases: bool = True

    @classmethod
    def null_control(cls, **overrides: object) -> SynthConfig:
        """Generator v1, the null control: same bytes as before v2 for a given seed."""
        values: dict[str, object] = {"rarity_decay": 0.0, "head_share": False, "aliases": False}
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def is_null_control(self) -> bool:
        return self.rarity_decay == 0 and not self.head_share and not self.aliases

    def __post_init__(self) -> None:
        exponents_ok = 0 < self.zipf_min <= self.zipf_max and not self.zipf_min <= 1 <= self.zipf_max
        checks = {
            "scale": self.scale > 0 and max(KAGGLE_CARDINALITIES) * self.scale <= MAX_RANK,
            "min_cardinality": self.min_cardinality >= 1,
            "zipf_min/zipf_max": exponents_ok,
            "num_topics": self.num_topics >= 1,
            "topic_affinity": 0 <= self.topic_affinity <= 1,
            "cluster_share": 0 <= self.cluster_share <= 1,
            "latent_dim": self.latent_dim >= 1,
            "num_pairs": 0 <= self.num_pairs <= 50,
            "term stds": min(self.first_order_std, self.pair_std, self.dense_std) >= 0,
            "dense_topic_share": 0 <= self.dense_topic_share <= 1,
            "positive_rate": 0 < self.positive_rate < 1,
            "rarity_decay": 0 <= self.rarity_decay <= 4,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid synthetic config value(s): {', '.join(bad)} ({self})")

    def cardinalities(self) -> tuple[int, ...]:
        """Distinct values per feature C1..C26."""
        floor = self.min_cardinality
        return tuple(card if card <= floor else max(floor, round(card * self.scale))
                     for card in KAGGLE_CARDINALITIES)
