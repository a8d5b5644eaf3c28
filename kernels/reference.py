"""The hash contract and index maps of robeserve, in NumPy: the spec every other implementation follows.

DESIGN.md section 3. One integer hash, bit-identical in NumPy (here), PyTorch, ONNX standard ops, C++
and CUDA; every intermediate product stays below 2^63::

    P  = 2^31 - 1
    v  : int64 id, 0 <= v < 2^62 (a missing categorical value is the id 0)
    lo = v mod 2^31,  hi = v div 2^31
    h(f, c, v) = ((A1[f]*lo mod P) + (A2[f]*hi mod P) + B[f]*c + C[f]) mod P

``f`` is the feature, ``c`` the block index (0 <= c < d/Z, or the minhash key index for unknown LMA values).

Index maps built on ``h``:

- ROBE-Z: ``offset(f, v, c) = h(f, c, v) mod (m - Z + 1)``; element ``j`` of the embedding of ``v`` is
  ``M[offset(f, v, j div Z) + j mod Z]`` (no wrap-around).
- Hashing trick: ``row(f, v) = h(f, 0, v) mod rows_f`` within feature ``f``'s table.
- Full table (``VocabLookup``): feature ``f``'s known values are ``keys[offsets[f]:offsets[f+1]]``
  (sorted); a value found at global position ``p`` maps to row ``p + f``; an unknown value to the feature's
  OOV row ``offsets[f+1] + f``. One concatenated table of ``K + F`` rows.
- LMA: each value has a 64-bit signature of 16 4-bit minhash keys (key ``t`` in bits ``4t .. 4t+3``).
  Block ``c`` of the embedding concatenates ``k`` (default 8, at most 15) of those keys, chosen by a hash of
  ``c``::

      first(c) = ((48271 * c + 11) mod P) mod 16
      step(c)  = 2 * (((16807 * c + 7) mod P) mod 8) + 1            (odd, so the k keys are distinct)
      sel(c, t) = (first(c) + t * step(c)) mod 16,   t = 0 .. k-1
      code(c)  = sum_t key[sel(c, t)] << (4 t)                      (< 2^32, a valid id)
      offset   = h(f, c, code(c)) mod (m - Z + 1)                   (exactly as ROBE)

  A value without a learned signature (unknown at training time) gets ``key[t] = h(f, t, v) mod 16``, so
  unknown values spread over memory like plain ROBE.
  Learned signatures are b-bit minhashes (b = 4) of the set of sampled training rows in which a value
  appears: ``key[t] = (min over rows r of g_t(r)) mod 16`` with ``g_t(r) = (GA[t] * r + GB[t]) mod P``.

Hash parameters are drawn from ``numpy.random.default_rng(seed)`` in the order A1, A2, B, C, each
``integers(1, P, size=F)`` (values in [1, P-1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

P = (1 << 31) - 1
ID_LIMIT = 1 << 62
LO_BITS = 31
LO_MASK = (1 << LO_BITS) - 1
NUM_SIGNATURE_KEYS = 16
SIGNATURE_KEY_BITS = 4
DEFAULT_KEYS_PER_BLOCK = 8
MAX_KEYS_PER_BLOCK = 15  # 4 * 15 = 60 bits: every block code stays a valid id (< 2^62)
SELECT_FIRST_MUL, SELECT_FIRST_ADD = 48271, 11
SELECT_STEP_MUL, SELECT_STEP_ADD = 16807, 7

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class InvalidIdError(ValueError):
    """An id outside [0, 2^62): the hash contract does not define it."""


@dataclass(frozen=True)
class HashParams:
    """Per-feature hash coefficients, each an int64 array of length ``num_features`` in [1, P-1].

    Example:
        >>> params = HashParams.from_seed(num_features=26, seed=0)
        >>> params.a1.shape
        (26,)
    """

    seed: int
    a1: IntArray
    a2: IntArray
    b: IntArray
    c: IntArray

    def __post_init__(self) -> None:
        n = len(self.a1)
        for name in ("a1", "a2", "b", "c"):
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"hash array {name} has shape {arr.shape}, expected ({n},)")
            if arr.size and (arr.min() < 1 or arr.max() > P - 1):
                raise ValueError(f"hash array {name} has values outside [1, P-1]")

    @property
    def num_features(self) -> int:
        return len(self.a1)

    @classmethod
    def from_seed(cls, num_features: int, seed: int) -> HashParams:
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        rng = np.random.default_rng(seed)
        arrays = [rng.integers(1, P, size=num_features, dtype=np.int64) for _ in range(4)]
        return cls(seed, *arrays)

    def to_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "a1": self.a1.tolist(),
            "a2": self.a2.tolist(),
            "b": self.b.tolist(),
            "c": self.c.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> HashParams:
        arrays = [np.asarray(data[k], dtype=np.int64) for k in ("a1", "a2", "b", "c")]
        return cls(int(data["seed"]), *arrays)  # type: ignore[call-overload]


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


def hash_ids(ids: npt.ArrayLike, block: npt.ArrayLike, params: HashParams) -> IntArray:
    """h(f, c, v) for ids of shape [..., F] (the last axis is the feature), broadcast against ``block``.

    Args:
        ids: int ids, last axis of length ``params.num_features``.
        block: block index c (a scalar, or an array broadcastable against ``ids``).
        params: the per-feature hash coefficients.

    Returns:
        int64 array in [0, P) with the broadcast shape of ``ids`` and ``block``.
    """
    v = check_ids(ids)
    if v.ndim == 0 or v.shape[-1] != params.num_features:
        raise ValueError(f"ids must end with the feature axis of length {params.num_features}, got {v.shape}")
    return _hash(v, np.asarray(block, dtype=np.int64), params.a1, params.a2, params.b, params.c)


def hash_blocks(ids: npt.ArrayLike, num_blocks: int, params: HashParams) -> IntArray:
    """h(f, c, v) for every block c < num_blocks: int64 [..., F, num_blocks] for ids [..., F]."""
    v = check_ids(ids)
    if v.ndim == 0 or v.shape[-1] != params.num_features:
        raise ValueError(f"ids must end with the feature axis of length {params.num_features}, got {v.shape}")
    return hash_codes(np.repeat(v[..., None], num_blocks, axis=-1), params)


def hash_codes(codes: npt.ArrayLike, params: HashParams) -> IntArray:
    """h(f, c, codes[..., f, c]): one id per (feature, block), as LMA's codes. int64 [..., F, blocks]."""
    v = check_ids(codes)
    if v.ndim < 2 or v.shape[-2] != params.num_features:
        raise ValueError(f"codes must have shape [..., {params.num_features}, num_blocks], got {v.shape}")
    blocks = np.arange(v.shape[-1], dtype=np.int64)
    a1, a2, b, c = (arr[:, None] for arr in (params.a1, params.a2, params.b, params.c))
    return _hash(v, blocks, a1, a2, b, c)


def _hash(v: IntArray, block: IntArray, a1: IntArray, a2: IntArray, b: IntArray, c: IntArray) -> IntArray:
    lo = v & LO_MASK
    hi = v >> LO_BITS
    return ((a1 * lo) % P + (a2 * hi) % P + b * block + c) % P


def _check_block(m: int, dim: int, block_size: int) -> None:
    if dim < 1 or block_size < 1 or dim % block_size:
        raise ValueError(f"block_size {block_size} must divide embedding_dim {dim}")
    if m < block_size:
        raise ValueError(f"memory of {m} floats is smaller than one block of {block_size}")


def robe_offsets(ids: npt.ArrayLike, params: HashParams, m: int, dim: int, block_size: int) -> IntArray:
    """Start offset of every block: int64 [..., F, d/Z]."""
    _check_block(m, dim, block_size)
    return hash_blocks(ids, dim // block_size, params) % (m - block_size + 1)


def robe_indices(ids: npt.ArrayLike, params: HashParams, m: int, dim: int, block_size: int) -> IntArray:
    """Index into ``M`` of every embedding element: int64 [..., F, d]."""
    starts = robe_offsets(ids, params, m, dim, block_size)  # (..., F, d/Z)
    within = np.arange(block_size, dtype=np.int64)
    return (starts[..., :, None] + within).reshape(*starts.shape[:-1], dim)


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


def lma_key_selection(num_blocks: int, keys_per_block: int = DEFAULT_KEYS_PER_BLOCK) -> IntArray:
    """sel(c, t): which signature key feeds position t of block c's code, int64 [num_blocks, k]."""
    if not 1 <= keys_per_block <= MAX_KEYS_PER_BLOCK:
        raise ValueError(f"keys_per_block must be in [1, {MAX_KEYS_PER_BLOCK}], got {keys_per_block}")
    c = np.arange(num_blocks, dtype=np.int64)[:, None]
    t = np.arange(keys_per_block, dtype=np.int64)[None, :]
    first = ((SELECT_FIRST_MUL * c + SELECT_FIRST_ADD) % P) % NUM_SIGNATURE_KEYS
    step = 2 * (((SELECT_STEP_MUL * c + SELECT_STEP_ADD) % P) % 8) + 1
    return (first + t * step) % NUM_SIGNATURE_KEYS


def signature_keys(signatures: npt.ArrayLike) -> IntArray:
    """Unpack int64 signatures [...] into their 16 4-bit keys [..., 16]."""
    s = np.asarray(signatures, dtype=np.int64)
    shifts = np.arange(NUM_SIGNATURE_KEYS, dtype=np.int64) * SIGNATURE_KEY_BITS
    return (s[..., None] >> shifts) & 15


def pack_signature(keys: npt.ArrayLike) -> IntArray:
    """Pack 4-bit keys [..., 16] into int64 signatures [...] (key 15 may set the sign bit)."""
    k = np.asarray(keys, dtype=np.uint64) & np.uint64(15)
    shifts = np.arange(NUM_SIGNATURE_KEYS, dtype=np.uint64) * np.uint64(SIGNATURE_KEY_BITS)
    packed = np.bitwise_or.reduce(k << shifts, axis=-1)
    return np.asarray(packed, dtype=np.uint64).view(np.int64)


def unknown_signatures(ids: npt.ArrayLike, params: HashParams) -> IntArray:
    """Signature of values without a learned one: key t = h(f, t, v) mod 16. int64 [..., F]."""
    keys = hash_blocks(ids, NUM_SIGNATURE_KEYS, params) % NUM_SIGNATURE_KEYS  # (..., F, 16)
    return pack_signature(keys)


def lma_signatures_for(
    ids: npt.ArrayLike, keys: npt.ArrayLike, offsets: npt.ArrayLike, signatures: npt.ArrayLike,
    params: HashParams,
) -> IntArray:
    """Signature of every id: the learned one when the id is a known key of its feature, else unknown."""
    v = check_ids(ids)
    k = np.asarray(keys, dtype=np.int64)
    sig = np.asarray(signatures, dtype=np.int64)
    if sig.shape != k.shape:
        raise ValueError(f"signatures {sig.shape} must match keys {k.shape}")
    rows = vocab_lookup(v, k, offsets)
    o = _check_offsets(offsets, v.shape[-1], len(k))
    features = np.arange(v.shape[-1], dtype=np.int64)
    known = rows < o[1:] + features
    learned = sig[np.where(known, rows - features, 0)] if len(k) else np.zeros(v.shape, np.int64)
    return np.where(known, learned, unknown_signatures(v, params))


def lma_codes(
    signatures: npt.ArrayLike, num_blocks: int, keys_per_block: int = DEFAULT_KEYS_PER_BLOCK
) -> IntArray:
    """Block codes from signatures: int64 [..., num_blocks], each < 2^(4k)."""
    keys = signature_keys(signatures)  # (..., 16)
    sel = lma_key_selection(num_blocks, keys_per_block)  # (blocks, k)
    chosen = keys[..., sel]  # (..., blocks, k)
    shifts = np.arange(keys_per_block, dtype=np.int64) * SIGNATURE_KEY_BITS
    return (chosen << shifts).sum(axis=-1)


def lma_offsets(
    signatures: npt.ArrayLike, params: HashParams, m: int, dim: int, block_size: int,
    keys_per_block: int = DEFAULT_KEYS_PER_BLOCK,
) -> IntArray:
    """Start offset of every block for signatures [..., F]: int64 [..., F, d/Z]."""
    _check_block(m, dim, block_size)
    num_blocks = dim // block_size
    codes = lma_codes(signatures, num_blocks, keys_per_block)  # (..., F, blocks)
    return hash_codes(codes, params) % (m - block_size + 1)


def lma_indices(
    ids: npt.ArrayLike, keys: npt.ArrayLike, offsets: npt.ArrayLike, signatures: npt.ArrayLike,
    params: HashParams, m: int, dim: int, block_size: int, keys_per_block: int = DEFAULT_KEYS_PER_BLOCK,
) -> IntArray:
    """Index into ``M`` of every LMA embedding element: int64 [..., F, d]."""
    sig = lma_signatures_for(ids, keys, offsets, signatures, params)
    starts = lma_offsets(sig, params, m, dim, block_size, keys_per_block)
    within = np.arange(block_size, dtype=np.int64)
    return (starts[..., :, None] + within).reshape(*starts.shape[:-1], dim)


def minhash_params(seed: int) -> tuple[IntArray, IntArray]:
    """(GA, GB), each int64 [16] in [1, P-1], for the row hashes g_t of learned signatures."""
    rng = np.random.default_rng([seed, 0x4C4D41])  # "LMA"
    return (rng.integers(1, P, size=NUM_SIGNATURE_KEYS, dtype=np.int64),
            rng.integers(1, P, size=NUM_SIGNATURE_KEYS, dtype=np.int64))


def minhash_signatures(values: npt.ArrayLike, rows: npt.ArrayLike, seed: int) -> tuple[IntArray, IntArray]:
    """Learned signatures of one feature from (value, row) occurrences.

    Args:
        values: int64 [N] value ids, one per occurrence.
        rows: int64 [N] the (sampled) training row of each occurrence, 0 <= row < 2^31.
        seed: the minhash seed.

    Returns:
        (unique sorted values [U], their int64 signatures [U]).
    """
    v = check_ids(values)
    r = np.asarray(rows, dtype=np.int64)
    if r.shape != v.shape:
        raise ValueError(f"values {v.shape} and rows {r.shape} must have the same shape")
    uniq, inverse = np.unique(v, return_inverse=True)
    ga, gb = minhash_params(seed)
    mins = np.full((len(uniq), NUM_SIGNATURE_KEYS), P, dtype=np.int64)
    for t in range(NUM_SIGNATURE_KEYS):
        g = (ga[t] * (r & LO_MASK) + gb[t]) % P
        np.minimum.at(mins[:, t], inverse, g)
    return uniq, pack_signature(mins % NUM_SIGNATURE_KEYS)
