"""The synthetic Criteo generator: determinism, file format, and the statistics it promises."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from training.data.readers import DataFormat, read_batches
from training.data.stats import top_share, zipf_exponent
from training.data.synth import (
    BLOCK_ROWS,
    CATEGORICAL_MISSING,
    DENSE_MISSING,
    KAGGLE_CARDINALITIES,
    SynthConfig,
    SyntheticCriteo,
    _mix32,
)
from training.data.synth_file import StreamingAuc, write_synth_criteo

STATS_ROWS = 50_000


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    positives = labels.sum()
    negatives = len(labels) - positives
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


@pytest.fixture(scope="module")
def sample():
    return SyntheticCriteo(seed=7).rows(0, STATS_ROWS)


def test_same_seed_same_bytes_across_chunkings(tmp_path: Path) -> None:
    rows = BLOCK_ROWS + 1234  # crosses a block edge
    write_synth_criteo(tmp_path / "a.tsv", rows, seed=3)
    write_synth_criteo(tmp_path / "b.tsv", rows, seed=3, chunk_rows=1000)
    write_synth_criteo(tmp_path / "c.tsv", rows, seed=4)
    a = (tmp_path / "a.tsv").read_bytes()
    assert a == (tmp_path / "b.tsv").read_bytes()
    assert a != (tmp_path / "c.tsv").read_bytes()
    assert a.count(b"\n") == rows
    meta_a = json.loads((tmp_path / "a.tsv.meta.json").read_text())
    assert meta_a == json.loads((tmp_path / "b.tsv.meta.json").read_text())
    assert meta_a["seed"] == 3 and meta_a["rows"] == rows and 0.5 < meta_a["ceiling_auc"] < 1


def test_gzip_output_is_deterministic_and_readable(tmp_path: Path) -> None:
    write_synth_criteo(tmp_path / "a.tsv.gz", 3000, seed=5)
    write_synth_criteo(tmp_path / "b.tsv.gz", 3000, seed=5)
    write_synth_criteo(tmp_path / "plain.tsv", 3000, seed=5)
    packed = (tmp_path / "a.tsv.gz").read_bytes()
    assert packed == (tmp_path / "b.tsv.gz").read_bytes()
    assert gzip.decompress(packed) == (tmp_path / "plain.tsv").read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_file_matches_rows_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "s.tsv"
    write_synth_criteo(path, 2000, seed=9)
    rows = SyntheticCriteo(seed=9).rows(0, 2000)
    batches = list(read_batches(path, DataFormat.CRITEO))
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), rows.labels)
    np.testing.assert_array_equal(np.concatenate([b.dense for b in batches]), rows.dense)
    np.testing.assert_array_equal(np.concatenate([b.categorical for b in batches]), rows.categorical)


def test_rows_do_not_depend_on_slicing() -> None:
    generator = SyntheticCriteo(seed=11)
    whole = generator.rows(0, 3 * BLOCK_ROWS // 2)
    parts = [
        generator.rows(0, 100),
        generator.rows(100, BLOCK_ROWS + 7),
        generator.rows(BLOCK_ROWS + 7, 3 * BLOCK_ROWS // 2),
    ]
    for name in ("labels", "dense", "categorical", "logits", "topics"):
        np.testing.assert_array_equal(getattr(whole, name), np.concatenate([getattr(p, name) for p in parts]))


def test_cardinalities_and_config_validation() -> None:
    assert sum(KAGGLE_CARDINALITIES) == 33_762_577
    total = sum(SynthConfig().cardinalities())
    assert 2_000_000 <= total <= 5_000_000
    assert SynthConfig(scale=1.0).cardinalities() == KAGGLE_CARDINALITIES
    for bad in (
        {"scale": 0},
        {"zipf_min": 1.3, "zipf_max": 1.1},
        {"positive_rate": 1.0},
        {"num_topics": 0},
        {"topic_affinity": 1.5},
    ):
        with pytest.raises(ValueError):
            SynthConfig(**bad)


def test_ids_are_32_bit_and_rank_map_is_injective(sample) -> None:
    ids = sample.categorical
    assert ids.min() >= 0 and ids.max() < 1 << 32
    ranks = np.arange(1, 300_001, dtype=np.int64)
    assert (
        np.unique(_mix32(ranks ^ 0x9ABCDEF0)).size == ranks.size
    )  # a bijection: distinct ranks, distinct ids
    assert (_mix32(ranks ^ 0x9ABCDEF0) != 0).all()


def test_positive_rate_and_ceiling(sample) -> None:
    assert abs(sample.labels.mean() - 0.25) < 0.015
    ceiling = exact_auc(sample.logits, sample.labels)
    assert ceiling > 0.75
    streaming = StreamingAuc()
    streaming.update(sample.logits, sample.labels)
    assert abs(streaming.auc() - ceiling) < 1e-3


def test_missing_rates_follow_the_real_sample(sample) -> None:
    np.testing.assert_allclose((sample.categorical == 0).mean(axis=0), CATEGORICAL_MISSING, atol=0.012)
    np.testing.assert_allclose(np.isnan(sample.dense).mean(axis=0), DENSE_MISSING, atol=0.012)


def test_frequencies_are_zipf_like(sample) -> None:
    cardinalities = SynthConfig().cardinalities()
    for column in (2, 3, 11, 15, 20):  # the five largest features
        values = sample.categorical[:, column]
        counts = np.sort(np.unique(values[values != 0], return_counts=True)[1])[::-1]
        assert counts.size <= cardinalities[column]
        assert top_share(counts) > 0.3  # the top 1% of values hold a large share of the rows (uniform: 0.01)
        exponent = zipf_exponent(counts)
        assert exponent is not None and 0.85 < exponent < 1.4


def collision(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Probability that a random row of ``a`` and another of ``b`` (or of ``a``) hold the same value."""
    values_a, counts_a = np.unique(a, return_counts=True)
    if b is None:
        return float((counts_a * (counts_a - 1)).sum() / (len(a) * (len(a) - 1)))
    values_b, counts_b = np.unique(b, return_counts=True)
    _, index_a, index_b = np.intersect1d(values_a, values_b, return_indices=True)
    return float((counts_a[index_a] * counts_b[index_b]).sum() / (len(a) * len(b)))


def test_topics_make_values_co_occur(sample) -> None:
    # rows of one topic share values of a large feature far more often than rows of different topics
    values, topics = sample.categorical[:, 2], sample.topics
    common = np.argsort(np.bincount(topics))[::-1][:6]
    same = np.mean([collision(values[topics == t]) for t in common])
    across = np.mean(
        [collision(values[topics == t], values[topics == u]) for t in common for u in common if t != u]
    )
    assert same > 1.4 * across


def test_label_depends_on_values_not_only_on_dense(sample) -> None:
    # the per-value first-order effect is visible: rows holding a feature's most frequent value
    # have a clearly different positive rate from the rest for several features
    differences = []
    for column in range(26):
        values = sample.categorical[:, column]
        top = np.bincount(np.unique(values, return_inverse=True)[1]).argmax()
        holds = np.unique(values, return_inverse=True)[1] == top
        if 500 < holds.sum() < len(values) - 500:
            differences.append(abs(sample.labels[holds].mean() - sample.labels[~holds].mean()))
    assert sum(d > 0.03 for d in differences) >= 5
