"""``python -m training.dlrm.lma_collisions``: where LMA and ROBE-Z put tokens in memory, by frequency band.

Why LMA loses to ROBE Z = 1 in docs/results/dlrm.md is the question (issue 11). Hypothesis: LMA makes two
tokens share a block with probability ~ J^k (J: Jaccard of their row sets). Frequent tokens of different
features have a high J by chance alone (two independent tokens each in half of the rows: J = 1/3), so
LMA makes the frequent tokens, which generator v2 calibrates to carry most of the signal, share memory
with one another, while ROBE-Z spreads every token uniformly (P(share a slot) ~ d/m).

For one data set and budget this builds the study's embeddings exactly as a run does
(``training.dlrm.factory.build_embedding``, seed 0) and measures, on the training split:

- ``shared``: for pairs of distinct tokens (t1 in band A, t2 in band B, of different features), the mean
  fraction of t1's ``d`` elements stored at a slot that t2 also uses (all pairs, or a uniform sample of
  ``--pairs`` when there are more), per pair of frequency bands;
- ``foreign_load``: for each token, the mean over its ``d`` slots of the training occurrences of OTHER
  tokens that read the same slot, per training row (how many other tokens' gradients land on its memory
  in an average row), averaged over the tokens of each band;
- for the head band, the mean exact Jaccard of the pairs and LMA's predicted share probability
  ``kernels.reference.share_probability``.

Bands are by training occurrences (``BANDS``); LMA variants are given with ``--lma NAME=ARGS`` in the
``python -m training dlrm`` syntax (``--lma 'NAME:--lma-k 4'``; options ``--lma-k``, ``--lma-minhashes``,
``--lma-bits``, ``--signature-fraction``, ``--lma-max-share``, ``--lma-budget``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kernels import reference as ref
from training.dlrm import budget as sizing
from training.dlrm.embeddings import CompressedEmbedding, LmaEmbedding, Method
from training.dlrm.factory import EmbeddingSpec, build_embedding, full_bytes

logger = logging.getLogger(__name__)

# (name, lowest share of training rows, highest): a token's band by the rows it occurs in
BANDS: tuple[tuple[str, float, float], ...] = (
    ("head (>= 1% of rows)", 0.01, 1.01),
    ("mid (0.05-1%)", 0.0005, 0.01),
    ("low (10 rows-0.05%)", 0.0, 0.0005),
    ("rare (< 10 rows)", 0.0, 0.0),
)
RARE_COUNT = 10
JACCARD_BUCKETS = ((0.0, 0.1), (0.1, 0.5), (0.5, 1.01))  # head pairs: chance overlap .. aliases
CHUNK = 8192


@dataclass(frozen=True)
class Tokens:
    """Every training token: its feature, value and occurrences, and its band index."""

    feature: np.ndarray
    value: np.ndarray
    count: np.ndarray
    band: np.ndarray
    rows: int


def tokens_of(categorical: np.ndarray) -> Tokens:
    features, values, counts = [], [], []
    for f in range(categorical.shape[1]):
        v, c = np.unique(np.asarray(categorical[:, f]), return_counts=True)
        features.append(np.full(len(v), f, dtype=np.int64))
        values.append(v.astype(np.int64))
        counts.append(c.astype(np.int64))
    count = np.concatenate(counts)
    rows = len(categorical)
    return Tokens(np.concatenate(features), np.concatenate(values), count, band_of(count, rows), rows)


def band_of(count: np.ndarray, rows: int) -> np.ndarray:
    """Band index of each token (``BANDS`` order)."""
    share = count / rows
    band = np.full(len(count), 2, dtype=np.int64)
    band[share >= BANDS[1][1]] = 1
    band[share >= BANDS[0][1]] = 0
    band[count < RARE_COUNT] = 3
    return band


def token_slots(embedding: CompressedEmbedding, tokens: Tokens) -> np.ndarray:
    """The ``d`` memory slots of every token: int64 [T, d] (the module's own ``indices``)."""
    num_features = int(tokens.feature.max()) + 1
    out = []
    with torch.no_grad():
        for start in range(0, len(tokens.value), CHUNK):
            v = torch.as_tensor(tokens.value[start:start + CHUNK])
            f = torch.as_tensor(tokens.feature[start:start + CHUNK])
            ids = v[:, None].expand(-1, num_features).contiguous()  # every column holds the value
            idx = embedding.indices(ids)  # (B, F, d)
            out.append(idx[torch.arange(len(v)), f].numpy())
    return np.concatenate(out)


def shared_fraction(slots: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For pairs (left[i], right[i]): the fraction of left's d elements at a slot right also uses."""
    out = np.empty(len(left))
    for start in range(0, len(left), CHUNK):
        a, b = slots[left[start:start + CHUNK]], slots[right[start:start + CHUNK]]
        out[start:start + CHUNK] = (a[:, :, None] == b[:, None, :]).any(-1).mean(-1)
    return out


def band_pairs(tokens: Tokens, a: int, b: int, limit: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of tokens of different features, the first in band a, the second in band b (all of them, or a
    uniform sample of about ``limit``)."""
    left_all, right_all = np.flatnonzero(tokens.band == a), np.flatnonzero(tokens.band == b)
    if len(left_all) == 0 or len(right_all) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(left_all) * len(right_all) <= limit:
        left, right = (x.ravel() for x in np.meshgrid(left_all, right_all, indexing="ij"))
    else:
        left, right = rng.choice(left_all, limit), rng.choice(right_all, limit)
    keep = tokens.feature[left] != tokens.feature[right]
    return left[keep], right[keep]


def foreign_load(slots: np.ndarray, tokens: Tokens, m: int) -> np.ndarray:
    """Per token: mean over its slots of other tokens' training occurrences at that slot, per row."""
    d = slots.shape[1]
    weight = np.repeat(tokens.count.astype(np.float64), d)
    load = np.bincount(slots.ravel(), weights=weight, minlength=m)
    own = np.zeros_like(slots, dtype=np.float64)  # a token's own uses of one slot (repeats count)
    for j in range(d):
        own[:, j] = (slots == slots[:, j:j + 1]).sum(axis=1) * tokens.count
    return np.asarray((load[slots] - own).mean(axis=1) / tokens.rows)


def head_jaccard(categorical: np.ndarray, tokens: Tokens, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Exact Jaccard of the training row sets of head-band pairs."""
    head = np.flatnonzero(tokens.band == 0)
    where = {int(t): i for i, t in enumerate(head)}
    member = np.stack([np.asarray(categorical[:, tokens.feature[t]]) == tokens.value[t] for t in head])
    member = member.astype(np.float32)
    inter = member @ member.T
    sizes = member.sum(axis=1)
    i = np.array([where[int(t)] for t in left])
    j = np.array([where[int(t)] for t in right])
    return np.asarray(inter[i, j] / (sizes[i] + sizes[j] - inter[i, j]))


def lma_spec(arguments: str) -> EmbeddingSpec:
    """An LMA spec from ``python -m training dlrm``-style options (``--lma-k 4 --signature-fraction 0.1``)."""
    parser = argparse.ArgumentParser(prog="--lma", add_help=False, exit_on_error=False)
    parser.add_argument("--lma-k", type=int, default=ref.DEFAULT_KEYS_PER_BLOCK)
    parser.add_argument("--lma-minhashes", type=int, default=ref.DEFAULT_NUM_MINHASHES)
    parser.add_argument("--lma-bits", type=int, default=ref.DEFAULT_MINHASH_BITS)
    parser.add_argument("--signature-fraction", type=float, default=0.25)
    parser.add_argument("--lma-max-share", type=float, default=1.0)
    parser.add_argument("--lma-budget", default="serving")
    args, unknown = parser.parse_known_args(shlex.split(arguments))
    if unknown:
        raise ValueError(f"unknown LMA options {' '.join(unknown)}")
    return EmbeddingSpec(Method.LMA, None, 0, keys_per_block=args.lma_k, num_minhashes=args.lma_minhashes,
                         minhash_bits=args.lma_bits, signature_fraction=args.signature_fraction,
                         lma_budget=args.lma_budget, max_token_share=args.lma_max_share)


def measure(categorical: np.ndarray, compression: float, methods: dict[str, EmbeddingSpec], dim: int = 16,
            pairs: int = 200_000, seed: int = 0) -> dict[str, Any]:
    """The collision tables of ``methods`` at ``compression`` (see the module docstring)."""
    tokens = tokens_of(categorical)
    budget = int(full_bytes(categorical, dim) / compression)
    rng = np.random.default_rng(seed)
    pair_sets = {(a, b): band_pairs(tokens, a, b, pairs, rng) for a in range(len(BANDS))
                 for b in range(len(BANDS)) if a <= b}
    out: dict[str, Any] = {
        "compression": compression, "budget_bytes": budget, "train_rows": tokens.rows, "dim": dim,
        "bands": [{"band": name, "tokens": int((tokens.band == i).sum()),
                   "occurrence_share": float(tokens.count[tokens.band == i].sum() / tokens.count.sum())}
                  for i, (name, _, _) in enumerate(BANDS)],
        "methods": {},
    }
    jaccard = None
    if len(pair_sets[(0, 0)][0]):
        jaccard = head_jaccard(categorical, tokens, *pair_sets[(0, 0)])
        out["head_pairs"] = {"pairs": len(jaccard), "mean_jaccard": float(jaccard.mean()),
                             "median_jaccard": float(np.median(jaccard))}
    for name, spec in methods.items():
        torch.manual_seed(0)
        embedding = build_embedding(spec, dim, categorical, budget, torch.Generator().manual_seed(0))
        m = int(embedding.config.memory_size)  # type: ignore[attr-defined]
        slots = token_slots(embedding, tokens)
        load = foreign_load(slots, tokens, m)
        signed = np.zeros(len(tokens.value), dtype=bool)
        if isinstance(embedding, LmaEmbedding):
            keys, offsets = embedding.keys.numpy(), embedding.offsets.numpy()
            for f in range(int(tokens.feature.max()) + 1):
                mine = tokens.feature == f
                signed[mine] = np.isin(tokens.value[mine], keys[offsets[f]:offsets[f + 1]])
        in_band = [tokens.band == i for i in range(len(BANDS))]
        entry: dict[str, Any] = {
            "memory_floats": m, "array_bytes": int(embedding.array_bytes()),
            "parameter_bytes": int(embedding.parameter_bytes()),
            "bands": [{"band": b, "signed_share": float(signed[mask].mean()) if mask.any() else None,
                       "foreign_load": float(load[mask].mean()) if mask.any() else None}
                      for (b, _, _), mask in zip(BANDS, in_band, strict=True)],
            "shared": [{"bands": [BANDS[a][0], BANDS[b][0]], "pairs": len(left),
                        "mean_shared": float(shared_fraction(slots, left, right).mean())
                        if len(left) else None}
                       for (a, b), (left, right) in pair_sets.items()],
        }
        if jaccard is not None:
            head = shared_fraction(slots, *pair_sets[(0, 0)])
            entry["head_by_jaccard"] = [
                {"jaccard": [low, high], "pairs": int(mask.sum()),
                 "mean_shared": float(head[mask].mean()) if mask.any() else None,
                 "share_of_shared": float(head[mask].sum() / head.sum()) if head.sum() else None}
                for low, high in JACCARD_BUCKETS
                for mask in [(jaccard >= low) & (jaccard < high)]]
        if spec.method is Method.LMA and jaccard is not None:
            entry["head_predicted_share"] = float(ref.share_probability(
                jaccard, spec.keys_per_block, spec.minhash_bits, m).mean())
        out["methods"][name] = entry
        logger.info("%s: %d floats, head foreign load %.3f", name, m, entry["bands"][0]["foreign_load"])
    return out


def markdown(result: dict[str, Any]) -> str:
    names = list(result["methods"])
    lines = [f"Budget {result['compression']:g}x ({sizing.format_size(result['budget_bytes'])}), "
             f"{result['train_rows']:,} training rows, d = {result['dim']}.", "",
             "| band | tokens | share of occurrences | " + " | ".join(
                 f"{n}: signed / foreign load" for n in names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for i, band in enumerate(result["bands"]):
        cells = ["-" if result["methods"][n]["bands"][i]["foreign_load"] is None else
                 f"{result['methods'][n]['bands'][i]['signed_share']:.2f} / "
                 f"{result['methods'][n]['bands'][i]['foreign_load']:.3f}" for n in names]
        lines.append(f"| {band['band']} | {band['tokens']:,} | {band['occurrence_share']:.3f} | "
                     + " | ".join(cells) + " |")
    lines += ["", "| token pair (different features) | pairs | " + " | ".join(
        f"{n}: shared" for n in names) + " |", "|---|---|" + "---|" * len(names)]
    for j, pair in enumerate(result["methods"][names[0]]["shared"]):
        cells = []
        for n in names:
            value = result["methods"][n]["shared"][j]["mean_shared"]
            cells.append("-" if value is None else f"{value:.5f}")
        lines.append(f"| {' x '.join(pair['bands'])} | {pair['pairs']:,} | " + " | ".join(cells) + " |")
    head = result.get("head_pairs")
    if head:
        predicted = ", ".join(f"{n} {e['head_predicted_share']:.4f}" for n, e in result["methods"].items()
                              if "head_predicted_share" in e)
        lines += ["", f"Head pairs: mean Jaccard {head['mean_jaccard']:.3f} (median "
                  f"{head['median_jaccard']:.3f}); predicted P(share a block): {predicted}.", "",
                  "| head x head pairs by Jaccard | pairs | " + " | ".join(
                      f"{n}: shared (share of all head-head sharing)" for n in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for j, (low, high) in enumerate(JACCARD_BUCKETS):
            cells = []
            for n in names:
                bucket = result["methods"][n]["head_by_jaccard"][j]
                cells.append("-" if bucket["mean_shared"] is None else
                             f"{bucket['mean_shared']:.5f} ({bucket['share_of_shared'] or 0:.2f})")
            pairs = result["methods"][names[0]]["head_by_jaccard"][j]["pairs"]
            lines.append(f"| J in [{low:g}, {min(high, 1):g}{']' if high > 1 else ')'} | {pairs:,} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dlrm.lma_collisions",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="raw data file or shard directory")
    parser.add_argument("--compression", type=float, action="append", help="budget(s), x (default 16)")
    parser.add_argument("--lma", action="append", default=[],
                        help="NAME:OPTIONS, an LMA variant, e.g. 'lma k=4:--lma-k 4' (default: 'lma:', "
                        "its defaults); repeatable")
    parser.add_argument("--pairs", type=int, default=200_000, help="sampled token pairs per band pair")
    parser.add_argument("--out", type=Path, help="write the tables as JSON here too")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if not args.data.exists():
            raise ValueError(f"data path {args.data} does not exist")
        methods = {"robe Z=1": EmbeddingSpec(Method.ROBE, 1, 0)}
        for item in args.lma or ["lma:"]:
            name, _, options = item.partition(":")
            methods[name or "lma"] = lma_spec(options)
        from training.data.shards import prepare

        categorical = np.asarray(prepare(args.data, cache_dir=args.cache_dir).split("train").categorical)
        results = [measure(categorical, x, methods, pairs=args.pairs) for x in args.compression or [16.0]]
    except (ValueError, argparse.ArgumentError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    for result in results:
        sys.stdout.write(markdown(result) + "\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

