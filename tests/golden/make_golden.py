"""Generate ``tests/golden/hash_golden.json`` from ``kernels.reference`` (the spec).

Run ``python tests/golden/make_golden.py`` (add ``--check`` to verify the checked-in file is current).
The JSON is read by the PyTorch tests (tests/training, tests/kernels) and by the C++/CUDA op tests, so its
schema is stable; add new keys rather than change existing ones.

Schema (version 2, hash contract version 2). Every integer is written exactly (ids reach 2^62-1;
signatures are uint8). Arrays are nested lists in row-major order with the shape given. Every case
carries its own hash coefficients, so a reader never needs NumPy's random generator::

    {
      "schema_version": 2,
      "hash_version": 2,
      "P": 2147483647,
      "special_ids": [0, 1, 2^31-1, 2^31, 2^32-1, 3*2^31-1, 2^62-1],
      "invalid_ids": [-1, 2^62, 2^63-1, ...]      # must be rejected (InvalidIdError / ORT_INVALID_ARGUMENT)
      "hash": [{                                  # h(f, c, v) for every block c < num_blocks
          "name", "params": {"version", "seed", "a1", "a2", "c", "g1", "g2"},  # HashParams.to_dict():
          "ids": [B][F], "num_blocks": int,       # a1, a2, c of length F; g1, g2 of length num_blocks
          "h": [B][F][num_blocks]}],
      "robe": [{                                  # ROBE-Z; M[i] = float32(i) makes lookup == indices
                                                  # (one case has m > 2^31)
          "name", "params", "m", "embedding_dim", "block_size", "ids": [B][F],
          "offsets": [B][F][embedding_dim / block_size], "indices": [B][F][embedding_dim]}],
      "hash_rows": [{                             # hashing trick, row within feature f's table (1 block)
          "name", "params", "rows": [F], "ids": [B][F], "out": [B][F]}],
      "vocab": [{                                 # VocabLookup: row in the concatenated K+F-row table
          "name", "keys": [K], "offsets": [F+1], "ids": [B][F], "rows": [B][F]}],
      "lma": [{                                   # LmaEmbedding (one case has m > 2^31)
          "name", "params", "m", "embedding_dim", "block_size", "keys_per_block", "num_minhashes",
          "keys": [K], "offsets": [F+1], "signatures": [K][num_minhashes] (uint8), "ids": [B][F],
          "known": [B][F],                        # 1 when the id is a sampled token of its feature
          "block_offsets": [B][F][embedding_dim / block_size], "indices": [B][F][embedding_dim]}],
      "lma_selection": [{"num_blocks", "keys_per_block", "num_minhashes",
                         "sel": [num_blocks][keys_per_block]}],
      "minhash": [{                               # signatures of one feature's tokens
          "name", "seed", "num_minhashes", "bits", "values": [N], "rows": [N], "unique": [U],
          "signatures": [U][num_minhashes]}]
    }
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kernels import reference as ref

GOLDEN_PATH = Path(__file__).with_name("hash_golden.json")
SCHEMA_VERSION = 2
SPECIAL_IDS = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 3 * 2**31 - 1, 2**62 - 1]
INVALID_IDS = [-1, -(2**31), 2**62, 2**62 + 1, 2**63 - 1]


def _ids(num_features: int, seed: int, extra_rows: int = 3) -> np.ndarray:
    """Ids [B, F]: every special id in every feature (cyclic shifts), then a few random ids < 2^62."""
    special = np.asarray(SPECIAL_IDS, dtype=np.int64)
    n = len(special)
    rows = [np.roll(special, -shift)[np.arange(num_features) % n] for shift in range(n)]
    rng = np.random.default_rng(seed)
    for _ in range(extra_rows):
        rows.append(rng.integers(0, ref.ID_LIMIT, size=num_features, dtype=np.int64))
    return np.stack(rows)


def _hash_cases() -> list[dict[str, Any]]:
    cases = []
    for num_features, seed, num_blocks in [(1, 0, 1), (3, 1, 4), (26, 2, 16), (5, 7, 32)]:
        params = ref.HashParams.from_seed(num_features, num_blocks, seed)
        ids = _ids(num_features, seed)
        cases.append({
            "name": f"F{num_features}_seed{seed}_blocks{num_blocks}", "params": params.to_dict(),
            "ids": ids.tolist(), "num_blocks": num_blocks,
            "h": ref.hash_blocks(ids, params).tolist(),
        })
    return cases


# (num_features, seed, m, embedding_dim, block_size)
ROBE_SHAPES = [
    (3, 0, 1000, 16, 1), (3, 0, 1000, 16, 4), (3, 0, 1000, 16, 16), (26, 3, 1 << 20, 16, 16),
    (26, 3, (1 << 20) + 3, 16, 2), (2, 5, 8, 8, 8), (2, 5, 9, 8, 8), (4, 6, (1 << 31) + 5, 8, 4),
    (1, 9, 4096, 128, 32), (3, 11, 97, 6, 3),
]


def _robe_cases() -> list[dict[str, Any]]:
    cases = []
    for num_features, seed, m, dim, block_size in ROBE_SHAPES:
        params = ref.HashParams.from_seed(num_features, dim // block_size, seed)
        ids = _ids(num_features, seed + 100)
        cases.append({
            "name": f"F{num_features}_m{m}_d{dim}_Z{block_size}", "params": params.to_dict(), "m": m,
            "embedding_dim": dim, "block_size": block_size, "ids": ids.tolist(),
            "offsets": ref.robe_offsets(ids, params, m, dim, block_size).tolist(),
            "indices": ref.robe_indices(ids, params, m, dim, block_size).tolist(),
        })
    return cases


def _hash_rows_cases() -> list[dict[str, Any]]:
    cases = []
    for num_features, seed, rows in [(3, 0, [1, 10, 1000]), (4, 4, [7, 2**31 - 1, 2**31 + 11, 2**40])]:
        params = ref.HashParams.from_seed(num_features, 1, seed)
        ids = _ids(num_features, seed + 200)
        cases.append({
            "name": f"F{num_features}_seed{seed}", "params": params.to_dict(), "rows": rows,
            "ids": ids.tolist(), "out": ref.hash_rows(ids, params, rows).tolist(),
        })
    return cases


def _vocabulary(num_features: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted keys per feature (some special ids known, feature 1 empty when F > 1), offsets, query ids."""
    rng = np.random.default_rng(seed)
    ids = _ids(num_features, seed)
    keys, offsets = [], [0]
    for f in range(num_features):
        known = [] if f == 1 else [*ids[::2, f].tolist(), *rng.integers(0, 2**40, size=4).tolist()]
        feature_keys = sorted(set(known))
        keys.extend(feature_keys)
        offsets.append(len(keys))
    return np.asarray(keys, dtype=np.int64), np.asarray(offsets, dtype=np.int64), ids


def _vocab_cases() -> list[dict[str, Any]]:
    cases = []
    for num_features, seed in [(1, 0), (3, 1), (5, 2)]:
        keys, offsets, ids = _vocabulary(num_features, seed)
        cases.append({
            "name": f"F{num_features}_seed{seed}", "keys": keys.tolist(), "offsets": offsets.tolist(),
            "ids": ids.tolist(), "rows": ref.vocab_lookup(ids, keys, offsets).tolist(),
        })
    return cases


# (num_features, seed, m, embedding_dim, block_size, keys_per_block, num_minhashes)
LMA_SHAPES = [
    (3, 1, 1000, 16, 4, 2, 8), (3, 1, 1000, 16, 1, 2, 8), (5, 2, 1 << 16, 16, 16, 2, 8),
    (5, 2, 4099, 32, 8, 4, 16), (1, 0, 64, 8, 2, 6, 6), (3, 3, 50, 6, 3, 1, 1), (4, 6, (1 << 31) + 5, 8, 4,
                                                                                 3, 5),
]


def _lma_cases() -> list[dict[str, Any]]:
    cases = []
    for num_features, seed, m, dim, block_size, keys_per_block, num_minhashes in LMA_SHAPES:
        params = ref.HashParams.from_seed(num_features, dim // block_size, seed)
        keys, offsets, ids = _vocabulary(num_features, seed)
        rng = np.random.default_rng(seed + 300)
        signatures = rng.integers(0, 256, size=(len(keys), num_minhashes)).astype(np.uint8)
        signatures[: len(keys) // 3] = signatures[0]  # tokens with equal signatures share every block
        known = ref.vocab_lookup(ids, keys, offsets) < offsets[1:] + np.arange(num_features)
        geometry = (params, m, dim, block_size, keys_per_block)
        cases.append({
            "name": f"F{num_features}_m{m}_d{dim}_Z{block_size}_k{keys_per_block}_S{num_minhashes}",
            "params": params.to_dict(), "m": m, "embedding_dim": dim, "block_size": block_size,
            "keys_per_block": keys_per_block, "num_minhashes": num_minhashes,
            "keys": keys.tolist(), "offsets": offsets.tolist(), "signatures": signatures.tolist(),
            "ids": ids.tolist(), "known": known.astype(int).tolist(),
            "block_offsets": ref.lma_offsets(ids, keys, offsets, signatures, *geometry).tolist(),
            "indices": ref.lma_indices(ids, keys, offsets, signatures, *geometry).tolist(),
        })
    return cases


def _selection_cases() -> list[dict[str, Any]]:
    return [
        {"num_blocks": blocks, "keys_per_block": k, "num_minhashes": s,
         "sel": ref.lma_selection(blocks, k, s).tolist()}
        for blocks, k, s in [(1, 2, 8), (4, 2, 8), (16, 2, 8), (32, 4, 16), (8, 6, 6), (3, 1, 1), (5, 3, 7)]
    ]


def _minhash_cases() -> list[dict[str, Any]]:
    cases = []
    for seed, n, num_values, num_minhashes, bits in [(0, 40, 6, 8, 8), (7, 200, 30, 16, 4)]:
        rng = np.random.default_rng(seed + 400)
        values = rng.choice(np.asarray(SPECIAL_IDS, dtype=np.int64), size=n) if num_values <= 7 else \
            rng.integers(0, num_values, size=n, dtype=np.int64)
        rows = rng.integers(0, 2**31, size=n, dtype=np.int64)
        unique, signatures = ref.minhash_signatures(values, rows, seed, num_minhashes, bits)
        cases.append({
            "name": f"seed{seed}_n{n}_S{num_minhashes}_b{bits}", "seed": seed, "num_minhashes": num_minhashes,
            "bits": bits, "values": values.tolist(), "rows": rows.tolist(),
            "unique": unique.tolist(), "signatures": signatures.tolist(),
        })
    return cases


def build_golden() -> dict[str, Any]:
    """All golden cases as one JSON-ready dict (schema in the module docstring)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "hash_version": ref.HASH_VERSION,
        "P": ref.P,
        "special_ids": SPECIAL_IDS,
        "invalid_ids": INVALID_IDS,
        "hash": _hash_cases(),
        "robe": _robe_cases(),
        "hash_rows": _hash_rows_cases(),
        "vocab": _vocab_cases(),
        "lma": _lma_cases(),
        "lma_selection": _selection_cases(),
        "minhash": _minhash_cases(),
    }


def render(golden: dict[str, Any]) -> str:
    return json.dumps(golden, separators=(",", ":")) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the checked-in file is out of date")
    parser.add_argument("--out", type=Path, default=GOLDEN_PATH)
    args = parser.parse_args(argv)
    text = render(build_golden())
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"error: {args.out} is out of date; run tests/golden/make_golden.py", file=sys.stderr)
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
