"""The hash contract of ``kernels.reference`` ported to int64 torch tensors (bit-exact, any device).

Every function mirrors the NumPy function of the same name in ``kernels/reference.py`` (the spec). Only
``//``, ``%``, ``&``, ``|`` and shifts on int64 tensors are used: ``torch.div(..., rounding_mode=...)`` is
exported by the dynamo ONNX exporter as a float division that corrupts ids above 2^24 (DESIGN.md section 3).
Every product stays below 2^63: ``A * lo`` and ``A * hi`` are below 2^62 because ``A``, ``lo``, ``hi`` < 2^31.
"""

from __future__ import annotations

import torch

from kernels import reference as ref

P = ref.P


def check_ids(ids: torch.Tensor) -> None:
    """Raise ``reference.InvalidIdError`` unless ``ids`` is an integer tensor with values in [0, 2^62)."""
    if ids.dtype != torch.int64:
        raise ref.InvalidIdError(f"ids must be int64, got dtype {ids.dtype}")
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0:
            raise ref.InvalidIdError(f"id {lo} is negative; ids must be in [0, 2^62)")
        if hi >= ref.ID_LIMIT:
            raise ref.InvalidIdError(f"id {hi} is >= 2^62; ids must be in [0, 2^62)")


def hash_blocks(ids: torch.Tensor, num_blocks: int, coefficients: torch.Tensor) -> torch.Tensor:
    """h(f, c, v) for every block c < num_blocks: int64 [..., F, num_blocks].

    Args:
        ids: int64 [..., F].
        num_blocks: number of blocks c = 0 .. num_blocks-1.
        coefficients: int64 [4, F], the rows A1, A2, B, C (see ``coefficients_tensor``).
    """
    a1, a2, b, c = coefficients  # each (F,)
    base = (a1 * (ids & ref.LO_MASK)) % P + (a2 * (ids >> ref.LO_BITS)) % P + c  # (..., F), < 3P
    blocks = torch.arange(num_blocks, dtype=torch.int64, device=ids.device)
    return (base[..., None] + b[:, None] * blocks) % P  # (..., F, num_blocks)


def hash_codes(codes: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """h(f, c, codes[..., f, c]) for per-block ids (LMA's block codes): int64 [..., F, num_blocks]."""
    a1, a2, b, c = (row[:, None] for row in coefficients)  # each (F, 1)
    lo = codes & ref.LO_MASK
    hi = codes >> ref.LO_BITS
    blocks = torch.arange(codes.shape[-1], dtype=torch.int64, device=codes.device)
    return ((a1 * lo) % P + (a2 * hi) % P + b * blocks + c) % P


def coefficients_tensor(params: ref.HashParams) -> torch.Tensor:
    """The hash coefficients as one int64 [4, F] tensor (rows A1, A2, B, C), a buffer for the modules."""
    return torch.stack([torch.as_tensor(getattr(params, name), dtype=torch.int64)
                        for name in ("a1", "a2", "b", "c")])


def params_from_tensor(seed: int, coefficients: torch.Tensor) -> ref.HashParams:
    """Back to ``reference.HashParams`` (for export and checkpoints)."""
    a1, a2, b, c = (row.cpu().numpy().copy() for row in coefficients)
    return ref.HashParams(seed, a1, a2, b, c)


def hash_rows(ids: torch.Tensor, coefficients: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Hashing trick ``h(f, 0, v) mod rows[f]``: the row within each feature's table, int64 [..., F]."""
    return hash_blocks(ids, 1, coefficients)[..., 0] % rows


def block_starts(hashes: torch.Tensor, memory_size: int, block_size: int) -> torch.Tensor:
    """Offsets ``h mod (m - Z + 1)`` of the blocks, same shape as ``hashes``."""
    return hashes % (memory_size - block_size + 1)


def expand_blocks(starts: torch.Tensor, block_size: int) -> torch.Tensor:
    """Block starts [..., F, d/Z] -> element indices [..., F, d] (``start + j mod Z``)."""
    within = torch.arange(block_size, dtype=torch.int64, device=starts.device)
    return (starts[..., :, None] + within).flatten(-2)  # (..., F, d)


def vocab_lookup(ids: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Full-table row of every id [..., F]: known value at global key position p -> p + f, else OOV row.

    ``offsets`` is read on the host once per call (F + 1 values); the search runs on ``ids.device``. Only
    the binary search loops over features; the rest is vectorised over [..., F].
    """
    bounds = offsets.tolist()
    columns = ids.reshape(-1, ids.shape[-1]).t().contiguous()  # (F, N): one copy, not one per feature
    position = torch.empty_like(columns)  # global position of the first key >= id, within its feature
    for f in range(ids.shape[-1]):
        lo, hi = bounds[f], bounds[f + 1]
        if hi > lo:
            torch.searchsorted(keys[lo:hi], columns[f], out=position[f])
            position[f] += lo
        else:
            position[f] = lo
    position = position.t().reshape(ids.shape)
    ends = offsets[1:]
    features = torch.arange(ids.shape[-1], dtype=torch.int64, device=ids.device)
    if keys.numel() == 0:
        return (ends + features).expand_as(ids).clone()
    found = (position < ends) & (keys[position.clamp(max=keys.numel() - 1)] == ids)
    return torch.where(found, position + features, ends + features)


def pack_signature(keys: torch.Tensor) -> torch.Tensor:
    """Pack 4-bit keys [..., 16] into int64 signatures [...] (key 15 may set the sign bit)."""
    shifts = torch.arange(ref.NUM_SIGNATURE_KEYS, dtype=torch.int64, device=keys.device) * 4
    # disjoint 4-bit fields: the sum sets the bits an OR would (no carries; key 15 wraps into the sign)
    return ((keys & 15) << shifts).sum(dim=-1)


def signature_keys(signatures: torch.Tensor) -> torch.Tensor:
    """Unpack int64 signatures [...] into their 16 4-bit keys [..., 16]."""
    shifts = torch.arange(ref.NUM_SIGNATURE_KEYS, dtype=torch.int64, device=signatures.device)
    return (signatures[..., None] >> (shifts * ref.SIGNATURE_KEY_BITS)) & 15


def unknown_keys(values: torch.Tensor, features: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Keys of values without a learned signature, ``h(f, t, v) mod 16``: int64 [N, 16].

    Args:
        values: int64 [N] ids; features: int64 [N] the feature of each.
    """
    a1, a2, b, c = coefficients[:, features]  # each (N,)
    base = (a1 * (values & ref.LO_MASK)) % P + (a2 * (values >> ref.LO_BITS)) % P + c
    t = torch.arange(ref.NUM_SIGNATURE_KEYS, dtype=torch.int64, device=values.device)
    return ((base[:, None] + b[:, None] * t) % P) & 15  # & 15 == mod 16 for non-negative values


def lma_keys(
    ids: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor, signatures: torch.Tensor,
    coefficients: torch.Tensor,
) -> torch.Tensor:
    """The 16 signature keys of every id [..., F] -> [..., F, 16]: learned for a known key of its feature,
    else ``unknown_keys`` (hashed only for the unknown ids)."""
    rows = vocab_lookup(ids, keys, offsets)
    features = torch.arange(ids.shape[-1], dtype=torch.int64, device=ids.device).expand_as(ids)
    known = rows < offsets[1:] + features
    out = torch.empty((*ids.shape, ref.NUM_SIGNATURE_KEYS), dtype=torch.int64, device=ids.device)
    out[known] = signature_keys(signatures[(rows - features)[known]])
    unknown = ~known
    out[unknown] = unknown_keys(ids[unknown], features[unknown], coefficients)
    return out


def lma_signatures_for(
    ids: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor, signatures: torch.Tensor,
    coefficients: torch.Tensor,
) -> torch.Tensor:
    """Signature of every id [..., F]: the learned one for a known key of its feature, else unknown."""
    return pack_signature(lma_keys(ids, keys, offsets, signatures, coefficients))


def lma_codes(signature_key_sets: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """Block codes [..., num_blocks] from keys [..., 16] and ``lma_key_selection`` [num_blocks, k]."""
    chosen = signature_key_sets[..., selection]  # (..., blocks, k)
    weights = 16 ** torch.arange(selection.shape[1], dtype=torch.int64, device=chosen.device)  # key t << 4t
    return (chosen * weights).sum(dim=-1)
