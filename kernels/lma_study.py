"""How often do two LMA tokens share a block, as a function of the Jaccard similarity of their row sets?

``python -m kernels.lma_study [--pairs N] [--rows R]`` draws, for each J, pairs of row sets of R rows
with exactly that Jaccard similarity (R shared rows in J's proportion), computes their signatures with
``kernels.reference.minhash_signatures`` and counts, over the blocks of a d = 16, Z = 1 embedding, how
often the two tokens' block codes are equal (then they share the block; otherwise they meet with
probability ~1/m like any two hashed values). Printed per (k, b): measured and expected
``(J + (1 - J) / 2^b)^k``. This is the measurement behind the defaults in ``kernels.reference``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from kernels import reference as ref

JACCARDS = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
SHAPES = ((1, 8), (2, 4), (2, 8), (3, 8), (4, 8))  # (k, b)
NUM_BLOCKS = 16


def pair_rows(rng: np.random.Generator, jaccard: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two sets of ``size`` row ids whose Jaccard similarity is ``jaccard`` (to the nearest row)."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    rows = rng.choice(1 << 30, size=shared + 2 * (size - shared), replace=False)
    common, rest = rows[:shared], rows[shared:]
    return np.concatenate([common, rest[: size - shared]]), np.concatenate([common, rest[size - shared:]])


def shared_code_fraction(jaccard: float, keys_per_block: int, bits: int, pairs: int, size: int,
                         seed: int) -> float:
    """Fraction of (pair, block) where the two tokens' block codes are equal."""
    rng = np.random.default_rng(seed)
    num_minhashes = max(8, keys_per_block * 4)
    equal = 0
    for p in range(pairs):
        first, second = pair_rows(rng, jaccard, size)
        values = np.repeat(np.asarray([1, 2], np.int64), size)
        rows = np.concatenate([first, second])
        _, signatures = ref.minhash_signatures(values, rows, seed + p, num_minhashes, bits)
        codes = ref.lma_codes(signatures, NUM_BLOCKS, keys_per_block)  # (2, blocks)
        equal += int((codes[0] == codes[1]).sum())
    return equal / (pairs * NUM_BLOCKS)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.lma_study", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300, help="token pairs per (J, k, b)")
    parser.add_argument("--rows", type=int, default=40, help="rows in each token's set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.pairs < 1 or args.rows < 2:
        sys.stderr.write("error: need --pairs >= 1 and --rows >= 2\n")
        return 2
    results = []
    for k, bits in SHAPES:
        for j in JACCARDS:
            measured = shared_code_fraction(j, k, bits, args.pairs, args.rows, args.seed)
            expected = float(ref.share_probability(j, k, bits, m=1 << 62))
            results.append({"k": k, "bits": bits, "jaccard": j, "measured": measured, "expected": expected})
            print(f"k={k} b={bits} J={j:<4}: P(same code) measured {measured:.4f}, "  # noqa: T201
                  f"(J + (1-J)/2^b)^k = {expected:.4f}")
    print(json.dumps({"pairs": args.pairs, "rows": args.rows, "seed": args.seed, "results": results}))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
