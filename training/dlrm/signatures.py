"""Learned LMA signatures: b-bit minhashes of the set of (sampled) training rows in which a value appears.

``learn_signatures`` samples training rows, keeps the most frequent values that fit the signature budget
and computes their signatures with ``kernels.reference.minhash_signatures`` (the spec; NumPy's
``minimum.at`` is as fast as a torch ``scatter_reduce`` port, measured at 2.5 s for 5M occurrences).

Two choices of the set ``S(v)`` (``SetKind``):

- ``rows`` (DESIGN.md section 1): the ids of the sampled rows containing ``v``. A row holds exactly one value
  per feature, so two values of the SAME feature never share a row: their Jaccard similarity is 0 and their
  b-bit minhash keys agree only by chance (1/16 per key). As the contract hashes every feature with its own
  coefficients, values of different features never share a block either, so this set gives LMA no semantic
  sharing; it behaves as ROBE with a different hash (measured in docs/results/dlrm.md).
- ``cooccurrence``: the (feature, value) tokens of the OTHER features in those rows, so two values of one
  feature are similar when they appear with the same context (same site, same device...). The element ids
  are passed to the same reference minhash in place of row ids, so the serving-time contract is unchanged.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import numpy as np
from tqdm import tqdm

from kernels import reference as ref
from training.dlrm.embeddings import Signatures

logger = logging.getLogger(__name__)


class SetKind(StrEnum):
    ROWS = "rows"
    COOCCURRENCE = "cooccurrence"


def sample_rows(num_rows: int, sample_size: int, seed: int) -> np.ndarray:
    """Sorted row ids of a uniform sample without replacement (all rows when the sample is larger)."""
    if sample_size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=sample_size, replace=False)).astype(np.int64)


def most_frequent(categorical: np.ndarray, limit: int) -> list[np.ndarray]:
    """Per feature, the sorted values among the ``limit`` most frequent (feature, value) pairs overall."""
    per_feature = [np.unique(categorical[:, f], return_counts=True) for f in range(categorical.shape[1])]
    counts = np.concatenate([c for _, c in per_feature])
    if limit >= len(counts):
        return [values for values, _ in per_feature]
    order = np.argsort(-counts, kind="stable")[:limit]
    chosen = np.zeros(len(counts), dtype=bool)
    chosen[order] = True
    out, start = [], 0
    for values, c in per_feature:
        out.append(values[chosen[start:start + len(c)]])
        start += len(c)
    return out


def learn_signatures(
    categorical: np.ndarray, max_values: int, sample_size: int, seed: int, minhash_seed: int,
    kind: SetKind = SetKind.ROWS,
) -> Signatures:
    """Signatures of the ``max_values`` most frequent values of a sample of training rows.

    Args:
        categorical: training ids [N, F] (may be a memmap; N < 2^31).
        max_values: how many signatures fit the budget (most frequent (feature, value) pairs first).
        sample_size: rows sampled to build the sets.
        seed: sampling seed.
        minhash_seed: seed of the minhash row hashes (``reference.minhash_params``).
        kind: the set of each value (see the module docstring).
    """
    rows = sample_rows(len(categorical), sample_size, seed)
    sample = np.asarray(categorical[rows], dtype=np.int64)  # (S, F)
    num_features = sample.shape[1]
    chosen = most_frequent(sample, max_values)
    tokens = ref.hash_ids(sample, 0, ref.HashParams.from_seed(num_features, minhash_seed + 1)) \
        if kind is SetKind.COOCCURRENCE else None
    keys, signatures, offsets = [], [], [0]
    for f in tqdm(range(num_features), desc=f"lma signatures ({kind.value})", leave=False):
        mask = np.isin(sample[:, f], chosen[f])
        values = sample[mask, f]
        if tokens is None:
            elements = rows[mask]
        else:
            others = np.delete(tokens[mask], f, axis=1)  # (n, F-1)
            values, elements = np.repeat(values, others.shape[1]), others.reshape(-1)
        uniq, sig = ref.minhash_signatures(values, elements, minhash_seed) if len(values) else \
            (np.zeros(0, np.int64), np.zeros(0, np.int64))
        keys.append(uniq)
        signatures.append(sig)
        offsets.append(offsets[-1] + len(uniq))
    logger.info("learned %d LMA signatures (%s sets) from %d sampled rows", offsets[-1], kind.value,
                len(rows))
    return Signatures(np.concatenate(keys).astype(np.int64), np.asarray(offsets, dtype=np.int64),
                      np.concatenate(signatures).astype(np.int64))
