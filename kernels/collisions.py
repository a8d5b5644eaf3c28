"""Do ROBE-Z blocks collide independently? ``python -m kernels.collisions --m M --block-size Z --dim D``.

Hashes ``--ids`` random ids (one feature) with hash version 1 (``(A1 lo + A2 hi + B c + C) mod P``, linear
in the block c, kept here only for this comparison) and version 2 (``kernels.reference``), takes every
pair of ids whose block 0 lands on the same offset and prints the fraction of their other blocks
(c = 1 .. d/Z - 1) that collide too. Independent blocks give ~1/(m - Z + 1); DESIGN.md section 3 asks
version 2 to stay below 3/m. Output: one line per version, then the verdict.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kernels import reference as ref


@dataclass(frozen=True)
class Recurrence:
    version: int
    pairs: int  # pairs of ids colliding on block 0
    recurrence: float  # fraction of their other blocks that collide too


def v1_offsets(ids: np.ndarray, m: int, dim: int, block_size: int, seed: int) -> np.ndarray:
    """Hash version 1 (withdrawn): offsets [N, d/Z] of one feature, from A1, A2, B, C drawn as it did."""
    rng = np.random.default_rng(seed)
    a1, a2, b, c = (int(rng.integers(1, ref.P, dtype=np.int64)) for _ in range(4))
    base = (a1 * (ids & ref.LO_MASK)) % ref.P + (a2 * (ids >> ref.LO_BITS)) % ref.P + c
    blocks = np.arange(dim // block_size, dtype=np.int64)
    return ((base[:, None] + b * blocks) % ref.P) % (m - block_size + 1)


def v2_offsets(ids: np.ndarray, m: int, dim: int, block_size: int, seed: int) -> np.ndarray:
    """Hash version 2 (``kernels.reference``): offsets [N, d/Z] of one feature."""
    params = ref.HashParams.from_seed(1, dim // block_size, seed)
    return ref.robe_offsets(ids[:, None], params, m, dim, block_size)[:, 0, :]


def recurrence(offsets: np.ndarray, version: int) -> Recurrence:
    """Over all pairs colliding on block 0 (every pair within each group of equal block-0 offsets)."""
    order = np.argsort(offsets[:, 0], kind="stable")
    sorted_offsets = offsets[order]
    _, starts, counts = np.unique(sorted_offsets[:, 0], return_index=True, return_counts=True)
    same, pairs = 0, 0
    for start, count in zip(starts[counts > 1], counts[counts > 1], strict=True):
        group = sorted_offsets[start:start + count, 1:]  # (n, d/Z - 1)
        i, j = np.triu_indices(count, k=1)
        same += int((group[i] == group[j]).sum())
        pairs += len(i)
    others = offsets.shape[1] - 1
    return Recurrence(version, pairs, same / (pairs * others) if pairs and others else float("nan"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.collisions", description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, required=True, help="floats in the shared array M")
    parser.add_argument("--block-size", type=int, default=1, help="Z")
    parser.add_argument("--dim", type=int, default=16, help="embedding dimension d (d/Z blocks)")
    parser.add_argument("--ids", type=int, default=200_000, help="random ids hashed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    args = parser.parse_args(argv)
    blocks = args.dim // args.block_size if args.block_size >= 1 else 0
    if args.dim % max(args.block_size, 1) or blocks < 2 or args.m < args.block_size or args.ids < 2:
        sys.stderr.write("error: need Z dividing d into at least 2 blocks, m >= Z and --ids >= 2\n")
        return 2
    ids = np.random.default_rng(args.seed).integers(0, ref.ID_LIMIT, size=args.ids, dtype=np.int64)
    geometry = (args.m, args.dim, args.block_size, args.seed)
    results = [recurrence(v1_offsets(ids, *geometry), 1), recurrence(v2_offsets(ids, *geometry), 2)]
    span = args.m - args.block_size + 1
    target = 3 / args.m
    if args.json:
        print(json.dumps({"m": args.m, "block_size": args.block_size, "dim": args.dim,  # noqa: T201
                          "ids": args.ids, "seed": args.seed, "independent": 1 / span, "target": target,
                          "results": [asdict(r) for r in results]}))
    else:
        print(f"m={args.m} Z={args.block_size} d={args.dim}: {args.ids} ids, seed {args.seed}; "  # noqa: T201
              f"independent blocks give 1/(m-Z+1) = {1 / span:.2e}, target <= 3/m = {target:.2e}")
        for r in results:
            print(f"hash v{r.version}: {r.recurrence:.4g} of the other blocks of {r.pairs} "  # noqa: T201
                  f"block-0 colliding pairs collide too ({r.recurrence * args.m:.2f}/m)")
    return 0 if results[1].recurrence <= target else 1


if __name__ == "__main__":
    sys.exit(main())
