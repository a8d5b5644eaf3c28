"""LMA signatures (DESIGN.md section 1): minhashes of the set of sampled training rows each token occurs in.

A token is a (feature, value) pair. ``S(t)`` is the set of global row ids of the sample that contain it,
so tokens of DIFFERENT features that occur in the same rows (a site and its domain, a user and its
device) have a high Jaccard similarity and share memory; two values of one feature never share a row.
``learn_signatures`` samples rows (all of them up to ``reference.DEFAULT_SIGNATURE_ROWS``), keeps the
most frequent tokens that fit the signature budget and computes their ``S`` b-bit minhashes with
``kernels.reference.minhash_signatures`` (the spec).
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from kernels import reference as ref
from training.dlrm.budget import INT64_BYTES
from training.dlrm.embeddings import Signatures

logger = logging.getLogger(__name__)


class SignatureSampleError(ValueError):
    """A signature sample too small for the row sets DESIGN.md section 1 asks for."""


def check_sample_size(num_rows: int, sample_rows: int) -> None:
    """Raise SignatureSampleError when ``sample_rows`` is below 125K rows while the data has more."""
    if sample_rows < min(ref.MIN_SIGNATURE_ROWS, num_rows):
        raise SignatureSampleError(
            f"LMA signature sample of {sample_rows:,} rows is below the {ref.MIN_SIGNATURE_ROWS:,} rows "
            f"the row sets need (DESIGN.md section 1) and the training data has {num_rows:,}; sample at "
            f"least {min(ref.MIN_SIGNATURE_ROWS, num_rows):,} rows")


def sample_rows(num_rows: int, sample_size: int, seed: int) -> np.ndarray:
    """Sorted row ids of a uniform sample without replacement (all rows when the sample is larger)."""
    if sample_size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=sample_size, replace=False)).astype(np.int64)


def token_bytes(num_minhashes: int) -> int:
    """Serving bytes of one sampled token: its key (int64) and its signature (one byte per minhash)."""
    return INT64_BYTES + num_minhashes


def most_frequent(categorical: np.ndarray, limit: int, max_share: float = 1.0) -> list[np.ndarray]:
    """Per feature, the sorted values among the ``limit`` most frequent (feature, value) tokens overall,
    leaving out tokens in more than ``max_share`` of the rows."""
    per_feature = [np.unique(categorical[:, f], return_counts=True) for f in range(categorical.shape[1])]
    counts = np.concatenate([c for _, c in per_feature])
    allowed = counts <= max_share * len(categorical)
    if limit >= len(counts) and allowed.all():
        return [values for values, _ in per_feature]
    order = np.argsort(-counts, kind="stable")
    order = order[allowed[order]][:limit]
    chosen = np.zeros(len(counts), dtype=bool)
    chosen[order] = True
    out, start = [], 0
    for values, c in per_feature:
        out.append(values[chosen[start:start + len(c)]])
        start += len(c)
    return out


def learn_signatures(
    categorical: np.ndarray, max_tokens: int, sample_size: int, seed: int, minhash_seed: int,
    num_minhashes: int = ref.DEFAULT_NUM_MINHASHES, bits: int = ref.DEFAULT_MINHASH_BITS,
    max_share: float = 1.0,
) -> Signatures:
    """Signatures of the ``max_tokens`` most frequent tokens of a sample of training rows.

    Args:
        categorical: training ids [N, F] (may be a memmap; N < 2^31).
        max_tokens: how many signatures fit the budget (most frequent tokens first).
        sample_size: rows sampled to build the row sets (>= 125K unless the data has fewer rows).
        seed: sampling seed.
        minhash_seed: seed of the minhash row hashes (``reference.minhash_params``).
        num_minhashes: S, minhashes per token.
        bits: b, bits kept of each minhash.
        max_share: tokens in more than this share of the sampled rows get no signature (they keep their
            ROBE-Z locations); 1.0: every token may get one.

    Raises:
        SignatureSampleError: ``sample_size`` below 125K rows while the data has more.
    """
    check_sample_size(len(categorical), sample_size)
    rows = sample_rows(len(categorical), sample_size, seed)
    sample = np.asarray(categorical[rows], dtype=np.int64)  # (S, F)
    num_features = sample.shape[1]
    if not 0 < max_share <= 1:
        raise ValueError(f"max_share must be in (0, 1], got {max_share}")
    chosen = most_frequent(sample, max(max_tokens, 0), max_share)
    keys, signatures, offsets = [], [], [0]
    for f in tqdm(range(num_features), desc="lma signatures", leave=False):
        mask = np.isin(sample[:, f], chosen[f])
        uniq, sig = ref.minhash_signatures(sample[mask, f], rows[mask], minhash_seed, num_minhashes, bits)
        keys.append(uniq)
        signatures.append(sig)
        offsets.append(offsets[-1] + len(uniq))
    logger.info("learned %d LMA signatures (%d x %d-bit minhashes) from %d sampled rows", offsets[-1],
                num_minhashes, bits, len(rows))
    return Signatures(np.concatenate(keys).astype(np.int64), np.asarray(offsets, dtype=np.int64),
                      np.concatenate(signatures).astype(ref.SIGNATURE_DTYPE).reshape(-1, num_minhashes))
