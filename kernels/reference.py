"""The hash contract and index maps of robeserve, in NumPy: the spec every other implementation follows.

DESIGN.md section 3, hash version 2. One integer hash, bit-identical in NumPy (here), PyTorch, ONNX
standard ops, C++ and CUDA; every intermediate product stays below 2^63::

    P  = 2^31 - 1
    v  : int64 id, 0 <= v < 2^62 (a missing categorical value is the id 0)
    lo = v mod 2^31,  hi = v div 2^31
    u(f, v)    = ((A1[f]*lo mod P) + (A2[f]*hi mod P) + C[f]) mod P       the value's key in feature f
    h(f, c, v) = (G1[c]*u(f, v) + G2[c]) mod P                            block c's hash

``f`` is the feature, ``c`` the block index (0 <= c < d/Z). ``A1, A2, C`` are per feature, ``G1, G2`` per
block, all in [1, P-1], drawn from ``numpy.random.default_rng(seed)`` in the order A1, A2, C (each
``integers(1, P, size=F)``), then G1, G2 (each ``integers(1, P, size=d/Z)``). ``G1[c] * u < 2^62``.
Two values with different keys u never collide modulo P on any block (G1[c] is invertible mod P), and
the blocks of two keys collide modulo ``m - Z + 1`` independently, with probability ~1/m each
(``python -m kernels.collisions`` measures it against version 1's formula, linear in c).

Index maps built on ``h``:

- ROBE-Z: ``offset(f, v, c) = h(f, c, v) mod (m - Z + 1)``; element ``j`` of the embedding of ``v`` is
  ``M[offset(f, v, j div Z) + j mod Z]`` (no wrap-around).
- Hashing trick: ``row(f, v) = h(f, 0, v) mod rows_f`` within feature ``f``'s table (one block: G1[0], G2[0]).
- Full table (``VocabLookup``): feature ``f``'s known values are ``keys[offsets[f]:offsets[f+1]]``
  (sorted); a value found at global position ``p`` maps to row ``p + f``; an unknown value to the feature's
  OOV row ``offsets[f+1] + f``. One concatenated table of ``K + F`` rows.
- LMA (DESIGN.md section 1). A token is a (feature, value) pair; ``S(t)`` the ids of the sampled training
  rows that contain it. Its signature is ``S`` b-bit minhashes of ``S(t)`` (b <= 8, one uint8 each)::

      g_s(r)     = (GA[s] * (r mod 2^31) + GB[s]) mod P        s = 0 .. S-1, (GA, GB) = minhash_params
      sig[t, s]  = (min over r in S(t) of g_s(r)) mod 2^b

  Row ids are global (not per feature), so tokens of different features that occur in the same rows
  get the same minhashes. Block ``c`` of a token with a signature (a sampled token, stored in ``keys``)
  combines ``k`` of them, chosen by ``c``, into one code (exactly; ``k <= 6`` keeps it below 2^48)::

      sel(c, t)  = (c * k + t) mod S                            t = 0 .. k-1
      code_c     = sum_t sig[sel(c, t)] * 256^t
      offset     = h(0, c, code_c) mod (m - Z + 1)              feature 0's A1, A2, C: ONE global hash

  so two tokens share block ``c`` with probability ~ (J + (1 - J) / 2^b)^k + 1/m, J the Jaccard
  similarity of their row sets. Blocks use disjoint minhashes while ``c * k < S``, then reuse them
  cyclically (their locations still differ through G1[c], G2[c]). A token without a signature (unseen in
  the sample, or left out by the budget) reads the ROBE-Z locations ``h(f, c, v)``.

  Defaults (``DEFAULT_KEYS_PER_BLOCK`` k = 2, ``DEFAULT_MINHASH_BITS`` b = 8, ``DEFAULT_NUM_MINHASHES``
  S = 8; the trainer's LMA default Z = 1), chosen by measurement:

  - ``python -m kernels.lma_study --pairs 200`` (pairs of 40-row sets, d = 16 blocks): P(same block code)
    measured at J = 0 / 0.1 / 0.5 / 0.9 is 0.005 / 0.104 / 0.507 / 0.924 for k = 1, b = 8; 0 / 0.010 /
    0.268 / 0.855 for k = 2, b = 8; 0.0025 / 0.021 / 0.295 / 0.861 for k = 2, b = 4; 0 / 0.001 / 0.121 /
    0.735 for k = 3, b = 8, each within sampling error of (J + (1 - J)/2^b)^k. k = 1 lets tokens that
    merely meet (J = 0.1) share 10% of their blocks; k = 2 cuts that to 1% and keeps aliases (J >= 0.9)
    sharing most blocks; k = 3 starts to separate aliases (J = 0.9: 73%). b = 8 costs what b = 4 does
    (one uint8 per minhash) and makes unrelated tokens agree at 2^-16 instead of 2^-8.
  - ``python -m training dlrm --data ../shared/data/criteo/criteo_15k.tsv.gz --config tiny --epochs 3
    --compression X --block-size Z --embedding robe | lma --lma-k K`` (seed 0, one run each, validation
    AUC of 1,576 rows, standard error ~0.013). Z = 1: at 16x ROBE 0.677, LMA k = 1 / 2 / 3 0.616 /
    0.686 / 0.679; at 64x ROBE 0.688, LMA 0.664 / 0.683 / 0.682. LMA k = 2 at 16x with Z = 4: 0.675,
    Z = 16 (= d): 0.668 (ROBE 0.678, 0.647). Only k = 1 stands out (worse, at both budgets); k = 2 and
    Z = 1 (per element, as the paper) are the best of one seed, not significant wins; this sample cannot
    separate LMA from ROBE.
  - S = 8: 8 bytes per token beside its 8-byte key. At 16x on criteo_15k the 25% signature share
    (``EmbeddingSpec.signature_fraction``) holds the 3,696 most frequent tokens (7% of 52,791 distinct
    training tokens), which cover 74.7% of validation lookups; two features of one row then share 3.8%
    of their blocks on average (ROBE: 1/m = 2e-5). With d/Z = 16 blocks the S/k = 4 independent codes
    are each used by 4 blocks (at different locations).

Hash parameters and signatures are saved in every checkpoint, ``model.json`` and ONNX node attributes
with ``"version": 2``; reading any other version raises ``HashVersionError``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HASH_VERSION = 2
P = (1 << 31) - 1
ID_LIMIT = 1 << 62
LO_BITS = 31
LO_MASK = (1 << LO_BITS) - 1
CODE_SHIFT = 8  # bits between the minhashes of one block code: one uint8 each
MAX_MINHASH_BITS = 8
MAX_KEYS_PER_BLOCK = 6  # 6 * 8 = 48 bits: codes < 2^48, valid ids, exact even through a float64
MAX_NUM_MINHASHES = 255
DEFAULT_NUM_MINHASHES = 8
DEFAULT_KEYS_PER_BLOCK = 2
DEFAULT_MINHASH_BITS = 8
MIN_SIGNATURE_ROWS = 125_000  # DESIGN.md section 1: row sets from a sample of >= 125K rows
DEFAULT_SIGNATURE_ROWS = 500_000
SIGNATURE_DTYPE = np.uint8

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
SignatureArray = npt.NDArray[np.uint8]


class InvalidIdError(ValueError):
    """An id outside [0, 2^62): the hash contract does not define it."""


class HashVersionError(ValueError):
    """Hash parameters written under a hash contract version this build does not implement."""


def check_hash_version(version: Any, where: str = "hash parameters") -> None:
    """Raise HashVersionError unless ``version`` is ``HASH_VERSION`` (a missing version means 1)."""
    if version != HASH_VERSION:
        raise HashVersionError(
            f"{where}: hash version {version} is not supported; this build implements hash version "
            f"{HASH_VERSION} (DESIGN.md section 3): retrain the model with this version")


def _draw(rng: np.random.Generator, size: int) -> IntArray:
    return rng.integers(1, P, size=size, dtype=np.int64)


@dataclass(frozen=True)
class HashParams:
    """Hash version 2 coefficients: per feature ``a1, a2, c`` [F], per block ``g1, g2`` [d/Z], in [1, P-1].

    Example:
        >>> params = HashParams.from_seed(num_features=26, num_blocks=4, seed=0)
        >>> params.a1.shape, params.g1.shape
        ((26,), (4,))
    """

    seed: int
    a1: IntArray
    a2: IntArray
    c: IntArray
    g1: IntArray
    g2: IntArray

    def __post_init__(self) -> None:
        for name, length in (("a1", self.num_features), ("a2", self.num_features), ("c", self.num_features),
                             ("g1", self.num_blocks), ("g2", self.num_blocks)):
            arr = getattr(self, name)
            if arr.shape != (length,) or length < 1:
                raise ValueError(f"hash array {name} has shape {arr.shape}, expected ({max(length, 1)},)")
            if arr.min() < 1 or arr.max() > P - 1:
                raise ValueError(f"hash array {name} has values outside [1, P-1]")

    @property
    def num_features(self) -> int:
        return len(self.a1)

    @property
    def num_blocks(self) -> int:
        return len(self.g1)

    @classmethod
    def from_seed(cls, num_features: int, num_blocks: int, seed: int) -> HashParams:
        if num_features < 1 or num_blocks < 1:
            raise ValueError(f"need num_features >= 1 and num_blocks >= 1, got {num_features}, {num_blocks}")
        rng = np.random.default_rng(seed)
        a1, a2, c = (_draw(rng, num_features) for _ in range(3))
        g1, g2 = (_draw(rng, num_blocks) for _ in range(2))
        return cls(seed, a1, a2, c, g1, g2)

    def to_dict(self) -> dict[str, Any]:
        return {"version": HASH_VERSION, "seed": self.seed,
                **{name: getattr(self, name).tolist() for name in ("a1", "a2", "c", "g1", "g2")}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "hash parameters") -> HashParams:
        """Inverse of ``to_dict``. Raises HashVersionError for another version (none recorded: version 1)."""
        check_hash_version(data.get("version", 1), where)
        arrays = [np.asarray(data[k], dtype=np.int64) for k in ("a1", "a2", "c", "g1", "g2")]
        return cls(int(data["seed"]), *arrays)


def check_ids(ids: npt.ArrayLike) -> IntArray:
    """Return ``ids`` as int64, raising InvalidIdError when any id is outside [0, 2^62)."""
    arr = np.asarray(ids)
    if arr.dtype.kind not in "iu":
        raise InvalidIdError(f"ids must be integers, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size and int(arr.max()) >= ID_LIMIT:
        raise InvalidIdError(f"id {int(arr.max())} is >= 2^62; ids must be in [0, 2^62)")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise InvalidIdError(f"id {lo} is negative; ids must be in [0, 2^62)")
        if hi >= ID_LIMIT:
            raise InvalidIdError(f"id {hi} is >= 2^62; ids must be in [0, 2^62)")
    return arr


def _check_features(v: IntArray, params: HashParams) -> None:
    if v.ndim == 0 or v.shape[-1] != params.num_features:
        raise ValueError(f"ids must end with the feature axis of length {params.num_features}, got {v.shape}")


def _key(v: IntArray, a1: IntArray, a2: IntArray, c: IntArray) -> IntArray:
    return ((a1 * (v & LO_MASK)) % P + (a2 * (v >> LO_BITS)) % P + c) % P


def feature_keys(ids: npt.ArrayLike, params: HashParams) -> IntArray:
    """u(f, v) for ids [..., F] (the last axis is the feature): int64 [..., F] in [0, P)."""
    v = check_ids(ids)
    _check_features(v, params)
    return _key(v, params.a1, params.a2, params.c)


def hash_ids(ids: npt.ArrayLike, block: int, params: HashParams) -> IntArray:
    """h(f, block, v) for ids [..., F]: int64 [..., F] in [0, P)."""
    if not 0 <= block < params.num_blocks:
        raise ValueError(f"block {block} outside [0, {params.num_blocks})")
    return (params.g1[block] * feature_keys(ids, params) + params.g2[block]) % P


def hash_blocks(ids: npt.ArrayLike, params: HashParams) -> IntArray:
    """h(f, c, v) for every block c < params.num_blocks: int64 [..., F, num_blocks] for ids [..., F]."""
    u = feature_keys(ids, params)
    return (params.g1 * u[..., None] + params.g2) % P


def global_hash(codes: npt.ArrayLike, params: HashParams) -> IntArray:
    """h(0, c, codes[..., c]): LMA's one feature-free hash of block codes [..., num_blocks] -> same shape."""
    v = check_ids(codes)
    if v.ndim == 0 or v.shape[-1] != params.num_blocks:
        raise ValueError(f"codes must end with the block axis of length {params.num_blocks}, got {v.shape}")
    u = _key(v, params.a1[0], params.a2[0], params.c[0])
    return (params.g1 * u + params.g2) % P


def _check_block(params: HashParams, m: int, dim: int, block_size: int) -> None:
    if dim < 1 or block_size < 1 or dim % block_size:
        raise ValueError(f"block_size {block_size} must divide embedding_dim {dim}")
    if m < block_size:
        raise ValueError(f"memory of {m} floats is smaller than one block of {block_size}")
    if params.num_blocks != dim // block_size:
        raise ValueError(f"hash parameters have {params.num_blocks} blocks, d/Z = {dim // block_size}")


def _expand(starts: IntArray, block_size: int) -> IntArray:
    """Block starts [..., F, d/Z] -> element indices [..., F, d]."""
    within = np.arange(block_size, dtype=np.int64)
    return (starts[..., :, None] + within).reshape(*starts.shape[:-1], starts.shape[-1] * block_size)


def robe_offsets(ids: npt.ArrayLike, params: HashParams, m: int, dim: int, block_size: int) -> IntArray:
    """Start offset of every block: int64 [..., F, d/Z]."""
    _check_block(params, m, dim, block_size)
    return hash_blocks(ids, params) % (m - block_size + 1)


def robe_indices(ids: npt.ArrayLike, params: HashParams, m: int, dim: int, block_size: int) -> IntArray:
    """Index into ``M`` of every embedding element: int64 [..., F, d]."""
    return _expand(robe_offsets(ids, params, m, dim, block_size), block_size)


def robe_lookup(
    ids: npt.ArrayLike, memory: FloatArray, params: HashParams, dim: int, block_size: int
) -> FloatArray:
    """The ROBE-Z embedding: float32 [..., F, d]."""
    idx = robe_indices(ids, params, len(memory), dim, block_size)
    return np.asarray(memory, dtype=np.float32)[idx]


def hash_rows(ids: npt.ArrayLike, params: HashParams, rows: npt.ArrayLike) -> IntArray:
    """Hashing trick: row within each feature's table, int64 [..., F]."""
    r = np.asarray(rows, dtype=np.int64)
    if r.shape != (params.num_features,) or (r < 1).any():
        raise ValueError(f"rows must be {params.num_features} positive counts, got {r.tolist()}")
    return hash_ids(ids, 0, params) % r


def vocab_lookup(ids: npt.ArrayLike, keys: npt.ArrayLike, offsets: npt.ArrayLike) -> IntArray:
    """Full-table row of every id: int64 [B, F] (see the module docstring for the numbering)."""
    v = check_ids(ids)
    k = np.asarray(keys, dtype=np.int64)
    o = _check_offsets(offsets, v.shape[-1], len(k))
    out = np.empty(v.shape, dtype=np.int64)
    for f in range(v.shape[-1]):
        lo, hi = int(o[f]), int(o[f + 1])
        col = v[..., f]
        pos = np.searchsorted(k[lo:hi], col)
        found = np.zeros(col.shape, dtype=bool)
        if hi > lo:
            found = (pos < hi - lo) & (k[lo:hi][np.minimum(pos, hi - lo - 1)] == col)
        out[..., f] = np.where(found, lo + pos + f, hi + f)
    return out


def _check_offsets(offsets: npt.ArrayLike, num_features: int, num_keys: int) -> IntArray:
    o = np.asarray(offsets, dtype=np.int64)
    if o.shape != (num_features + 1,) or o[0] != 0 or o[-1] != num_keys or (np.diff(o) < 0).any():
        raise ValueError(f"offsets must be {num_features + 1} non-decreasing values from 0 to {num_keys}")
    return o


def check_lma_shape(num_minhashes: int, keys_per_block: int) -> None:
    """Raise ValueError unless 1 <= k <= min(S, MAX_KEYS_PER_BLOCK) and S <= MAX_NUM_MINHASHES."""
    if not 1 <= num_minhashes <= MAX_NUM_MINHASHES:
        raise ValueError(f"signatures must hold 1 to {MAX_NUM_MINHASHES} minhashes per token, "
                         f"got {num_minhashes}")
    if not 1 <= keys_per_block <= min(num_minhashes, MAX_KEYS_PER_BLOCK):
        raise ValueError(f"keys_per_block k={keys_per_block} must be in [1, {MAX_KEYS_PER_BLOCK}] and at "
                         f"most the {num_minhashes} minhashes per token (K)")


def lma_selection(num_blocks: int, keys_per_block: int, num_minhashes: int) -> IntArray:
    """sel(c, t) = (c k + t) mod S: the minhash feeding position t of block c's code, int64 [blocks, k]."""
    check_lma_shape(num_minhashes, keys_per_block)
    c = np.arange(num_blocks, dtype=np.int64)[:, None]
    t = np.arange(keys_per_block, dtype=np.int64)[None, :]
    return (c * keys_per_block + t) % num_minhashes


def lma_codes(signatures: npt.ArrayLike, num_blocks: int, keys_per_block: int) -> IntArray:
    """Block codes from signatures [..., S] (uint8): int64 [..., num_blocks], each < 256^k."""
    sig = np.asarray(signatures)
    if sig.dtype != SIGNATURE_DTYPE:
        raise ValueError(f"signatures must be uint8, got {sig.dtype}")
    sel = lma_selection(num_blocks, keys_per_block, sig.shape[-1])  # (blocks, k)
    chosen = sig.astype(np.int64)[..., sel]  # (..., blocks, k)
    shifts = np.arange(keys_per_block, dtype=np.int64) * CODE_SHIFT
    return (chosen << shifts).sum(axis=-1)


def lma_offsets(
    ids: npt.ArrayLike, keys: npt.ArrayLike, offsets: npt.ArrayLike, signatures: npt.ArrayLike,
    params: HashParams, m: int, dim: int, block_size: int, keys_per_block: int = DEFAULT_KEYS_PER_BLOCK,
) -> IntArray:
    """Start offset of every LMA block: int64 [..., F, d/Z].

    A sampled token (its value in ``keys[offsets[f]:offsets[f+1]]`` at global position p) reads
    ``h(0, c, code_c(signatures[p])) mod (m - Z + 1)``; any other token the ROBE-Z offset ``h(f, c, v)``.
    """
    _check_block(params, m, dim, block_size)
    v = check_ids(ids)
    k = np.asarray(keys, dtype=np.int64)
    sig = np.asarray(signatures)
    if sig.ndim != 2 or sig.shape[0] != len(k):
        raise ValueError(f"signatures must be [{len(k)}, S] (one row per key), got {sig.shape}")
    rows = vocab_lookup(v, k, offsets)
    o = _check_offsets(offsets, v.shape[-1], len(k))
    features = np.arange(v.shape[-1], dtype=np.int64)
    known = rows < o[1:] + features  # (..., F)
    position = np.where(known, rows - features, 0)
    num_blocks = dim // block_size
    if len(k):
        learned = global_hash(lma_codes(sig[position], num_blocks, keys_per_block), params)
    else:
        check_lma_shape(sig.shape[1], keys_per_block)
        learned = np.zeros((*v.shape, num_blocks), dtype=np.int64)
    hashed = np.where(known[..., None], learned, hash_blocks(v, params))  # (..., F, d/Z)
    return hashed % (m - block_size + 1)


def lma_indices(
    ids: npt.ArrayLike, keys: npt.ArrayLike, offsets: npt.ArrayLike, signatures: npt.ArrayLike,
    params: HashParams, m: int, dim: int, block_size: int, keys_per_block: int = DEFAULT_KEYS_PER_BLOCK,
) -> IntArray:
    """Index into ``M`` of every LMA embedding element: int64 [..., F, d]."""
    starts = lma_offsets(ids, keys, offsets, signatures, params, m, dim, block_size, keys_per_block)
    return _expand(starts, block_size)


def minhash_params(seed: int, num_minhashes: int = DEFAULT_NUM_MINHASHES) -> tuple[IntArray, IntArray]:
    """(GA, GB), each int64 [S] in [1, P-1], for the row hashes g_s of the signatures."""
    rng = np.random.default_rng([seed, 0x4C4D41])  # "LMA"
    return _draw(rng, num_minhashes), _draw(rng, num_minhashes)


def minhash_signatures(
    values: npt.ArrayLike, rows: npt.ArrayLike, seed: int, num_minhashes: int = DEFAULT_NUM_MINHASHES,
    bits: int = DEFAULT_MINHASH_BITS,
) -> tuple[IntArray, SignatureArray]:
    """Signatures of the tokens of one feature from their (value, row) occurrences.

    Args:
        values: int64 [N] value ids, one per occurrence.
        rows: int64 [N] the global id of the (sampled) training row of each occurrence.
        seed: the minhash seed.
        num_minhashes: S.
        bits: b, bits kept of each minhash (1..8).

    Returns:
        (unique sorted values [U], their uint8 signatures [U, S]).
    """
    if not 1 <= bits <= MAX_MINHASH_BITS:
        raise ValueError(f"minhash bits must be in [1, {MAX_MINHASH_BITS}], got {bits}")
    if not 1 <= num_minhashes <= MAX_NUM_MINHASHES:
        raise ValueError(f"num_minhashes must be in [1, {MAX_NUM_MINHASHES}], got {num_minhashes}")
    v = check_ids(values)
    r = np.asarray(rows, dtype=np.int64)
    if r.shape != v.shape:
        raise ValueError(f"values {v.shape} and rows {r.shape} must have the same shape")
    uniq, inverse = np.unique(v, return_inverse=True)
    ga, gb = minhash_params(seed, num_minhashes)
    mins = np.full((len(uniq), num_minhashes), P, dtype=np.int64)
    for s in range(num_minhashes):
        g = (ga[s] * (r & LO_MASK) + gb[s]) % P
        np.minimum.at(mins[:, s], inverse, g)
    return uniq, (mins & ((1 << bits) - 1)).astype(SIGNATURE_DTYPE)


def share_probability(jaccard: npt.ArrayLike, keys_per_block: int, bits: int,
                      m: int) -> npt.NDArray[np.float64]:
    """Expected P(two sampled tokens share one block) at Jaccard J: (J + (1-J)/2^b)^k, plus 1/m otherwise."""
    j = np.asarray(jaccard, dtype=np.float64)
    same_code = (j + (1 - j) / 2.0**bits) ** keys_per_block
    return same_code + (1 - same_code) / m
