"""The hash contract (version 2) of ``kernels.reference`` on int64 torch tensors (bit-exact, any device).

Every function mirrors the NumPy function of the same name in ``kernels/reference.py`` (the spec). Only
``//``, ``%``, ``&``, ``|`` and shifts on int64 tensors are used: ``torch.div(..., rounding_mode=...)`` is
exported by the dynamo ONNX exporter as a float division that corrupts ids above 2^24 (DESIGN.md section 3).
Every product stays below 2^63: ``A * lo``, ``A * hi`` and ``G1 * u`` are below 2^62 because every
coefficient, both halves of a valid id and every key ``u`` are below 2^31.

The modules keep the coefficients as two int64 buffers: ``coefficients`` [3, F] (rows A1, A2, C) and
``block_coefficients`` [2, d/Z] (rows G1, G2); ``coefficient_tensors`` makes both from ``HashParams``.
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


def coefficient_tensors(params: ref.HashParams) -> tuple[torch.Tensor, torch.Tensor]:
    """(int64 [3, F] rows A1, A2, C; int64 [2, d/Z] rows G1, G2): buffers for the modules."""
    features = torch.stack([torch.as_tensor(getattr(params, n), dtype=torch.int64) for n in ("a1", "a2",
                                                                                             "c")])
    blocks = torch.stack([torch.as_tensor(getattr(params, n), dtype=torch.int64) for n in ("g1", "g2")])
    return features, blocks


def params_from_tensors(seed: int, coefficients: torch.Tensor,
                        block_coefficients: torch.Tensor) -> ref.HashParams:
    """Back to ``reference.HashParams`` (for export and checkpoints)."""
    a1, a2, c = (row.cpu().numpy().copy() for row in coefficients)
    g1, g2 = (row.cpu().numpy().copy() for row in block_coefficients)
    return ref.HashParams(seed, a1, a2, c, g1, g2)


def feature_keys(ids: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """u(f, v) for ids [..., F] with ``coefficients`` [3, F] (or [3] for one global key): int64 [..., F]."""
    a1, a2, c = coefficients
    return ((a1 * (ids & ref.LO_MASK)) % P + (a2 * (ids >> ref.LO_BITS)) % P + c) % P


def hash_blocks(ids: torch.Tensor, coefficients: torch.Tensor,
                block_coefficients: torch.Tensor) -> torch.Tensor:
    """h(f, c, v) for every block: int64 [..., F, d/Z] for ids [..., F]."""
    g1, g2 = block_coefficients  # (d/Z,)
    return (feature_keys(ids, coefficients)[..., None] * g1 + g2) % P


def global_hash(codes: torch.Tensor, coefficients: torch.Tensor,
                block_coefficients: torch.Tensor) -> torch.Tensor:
    """h(0, c, codes[..., c]): LMA's feature-free hash of block codes [..., d/Z] -> same shape."""
    g1, g2 = block_coefficients
    return (feature_keys(codes, coefficients[:, 0]) * g1 + g2) % P


def hash_rows(ids: torch.Tensor, coefficients: torch.Tensor, block_coefficients: torch.Tensor,
              rows: torch.Tensor) -> torch.Tensor:
    """Hashing trick ``h(f, 0, v) mod rows[f]``: the row within each feature's table, int64 [..., F]."""
    g1, g2 = block_coefficients[:, 0]
    return ((feature_keys(ids, coefficients) * g1 + g2) % P) % rows


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


def lma_codes(signatures: torch.Tensor, selection: torch.Tensor) -> torch.Tensor:
    """Block codes [..., d/Z] from uint8 signatures [..., S] and ``reference.lma_selection`` [d/Z, k]."""
    chosen = signatures.to(torch.int64)[..., selection]  # (..., d/Z, k)
    shifts = torch.arange(selection.shape[1], dtype=torch.int64, device=chosen.device) * ref.CODE_SHIFT
    return (chosen << shifts).sum(dim=-1)


def lma_hashes(
    ids: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor, signatures: torch.Tensor,
    coefficients: torch.Tensor, block_coefficients: torch.Tensor, selection: torch.Tensor,
) -> torch.Tensor:
    """Block hashes [..., F, d/Z] of ``reference.lma_offsets``: ``h(0, c, code_c)`` for sampled tokens
    (found in their feature's keys), ``h(f, c, v)`` for the others."""
    rows = vocab_lookup(ids, keys, offsets)
    features = torch.arange(ids.shape[-1], dtype=torch.int64, device=ids.device)
    known = rows < offsets[1:] + features  # (..., F)
    out = hash_blocks(ids, coefficients, block_coefficients)  # (..., F, d/Z)
    if bool(known.any()):
        codes = lma_codes(signatures[(rows - features)[known]], selection)  # (N, d/Z)
        out[known] = global_hash(codes, coefficients, block_coefficients)
    return out
