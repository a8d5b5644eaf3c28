"""The oracle of a ``synth-criteo`` file: what the planted label model scores when memory is limited.

``oracle_table(data, budgets_bytes, dim)`` regenerates the planted parameters from the seed and the
configuration in ``PATH.meta.json`` (nothing per value is stored: parameters are hashes of the seed), checks
that the file's first rows are the ones the generator gives, and scores one split of the trainer's
position split (:class:`training.data.shards.SplitFractions`: train = the first 80% of rows, val = the next
10%, test = the rest) three ways, each by the exact ROC AUC of a logit against the file's labels:

- ``ceiling_auc``: the true planted logits (the best any model can do on these rows);
- one row per memory budget: the budget holds ``budget_bytes // (4 * dim)`` values (a float32
  embedding of ``dim`` numbers each); the values kept are the most frequent ones of the **train** split,
  counted over all 26 features together (ties: lower column, then more frequent rank first); a value a
  budget does not hold, or one never seen in train, keeps only what the model could know without a
  slot of its own: its **cluster part** (the first-order effect and latent direction shared by its
  cluster; the generator's docstring), while its own per-value part (first-order and latent) is set to
  its mean, 0. Dense terms and the bias are kept whole;
- ``no_per_value_auc``: every value reduced to its cluster part (the row of a budget of 0 values).

``full_table_bytes`` = (distinct values seen in train, all features) * ``dim`` * 4: the size of full
tables that keep one row per value seen; ``train_values_seen_10_times`` counts the values seen at least 10
times in train (a budget's slots per such value is ``values_kept / train_values_seen_10_times``). Budgets
may also be given as ratios of the full-table bytes (``compressions``).

Example:
    python -m training.data oracle --data data/results/synthetic.tsv --dim 16 --compression 4 16 64 \\
        --out oracle.json
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from training.data.errors import DataError
from training.data.shards import SplitFractions, SplitName
from training.data.synth import BLOCK_ROWS, NUM_CATEGORICAL, Draws, SyntheticCriteo
from training.data.synth_config import SynthConfig
from training.data.synth_file import SIDECAR_SUFFIX
from training.data.text import open_binary
from training.data.tsv import format_criteo_rows

logger = logging.getLogger(__name__)

BYTES_PER_FLOAT = 4
FREQUENT_COUNT = 10  # train_values_seen_10_times: values seen at least this often in train
CHECK_ROWS = 2048  # rows of the file compared with the regenerated ones
FALLBACK = (
    "a value without a slot (not held by the budget, or unseen in train) keeps its cluster part; "
    "its own per-value part (first-order and latent) is set to its mean, 0"
)

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def load_generator(data: Path) -> tuple[SyntheticCriteo, dict[str, Any]]:
    """The generator that wrote ``data`` (from its sidecar), after checking the file's first rows.

    A sidecar written before generator v2 (no v2 fields in its config) is read as the null control.
    """
    sidecar = data.with_name(data.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        raise DataError(f"{data}: no {sidecar.name}: the oracle needs a file written by synth-criteo")
    meta = json.loads(sidecar.read_text())
    if meta.get("generator") != "synth-criteo":
        raise DataError(f"{sidecar}: not a synth-criteo sidecar (generator {meta.get('generator')!r})")
    known = set(SynthConfig.__dataclass_fields__)
    unknown = sorted(set(meta["config"]) - known)
    if unknown:
        raise DataError(f"{sidecar}: unknown config field(s) {', '.join(unknown)}")
    generator = SyntheticCriteo(int(meta["seed"]), SynthConfig.null_control(**meta["config"]))
    check = min(int(meta["rows"]), CHECK_ROWS)
    rows = generator.rows(0, check)
    expected = format_criteo_rows(rows.labels, rows.dense, rows.categorical)
    with open_binary(data) as stream:
        found = stream.read(len(expected))
    if found != expected:
        raise DataError(
            f"{data}: its first {check} rows differ from what seed {meta['seed']} and the sidecar's "
            "config generate (edited file, or a sidecar from another run)"
        )
    return generator, meta


def _draws(generator: SyntheticCriteo, start: int, stop: int, desc: str) -> Iterator[Draws]:
    """The draws of rows ``start`` to ``stop``, block by block (sliced at the ends)."""
    first, last = start // BLOCK_ROWS, -(-stop // BLOCK_ROWS)
    for index in tqdm(range(first, last), desc=desc, unit="block", disable=None):
        draws = generator.block_draws(index)
        lo = max(start - index * BLOCK_ROWS, 0)
        hi = min(stop - index * BLOCK_ROWS, BLOCK_ROWS)
        yield Draws(*(getattr(draws, name)[lo:hi] for name in Draws.__dataclass_fields__))


def train_counts(generator: SyntheticCriteo, rows: int) -> list[IntArray]:
    """Per feature, the count of each rank (index = rank, 0 unused) over the first ``rows`` rows."""
    counts = [np.zeros(int(k) + 1, dtype=np.int64) for k in generator.cardinalities]
    for draws in _draws(generator, 0, rows, "oracle: train counts"):
        for f in range(NUM_CATEGORICAL):
            counts[f] += np.bincount(draws.ranks[draws.present[:, f], f], minlength=counts[f].size)
    return counts


def kept_values(counts: list[IntArray], values: int) -> list[BoolArray]:
    """Masks (index = rank) of the ``values`` most frequent (feature, value) pairs seen (module docstring)."""
    flat = np.concatenate([c[1:] for c in counts])
    offsets = np.cumsum([0] + [c.size - 1 for c in counts])
    order = np.argsort(-flat, kind="stable")[: max(values, 0)]
    order = order[flat[order] > 0]
    chosen = np.zeros(flat.size, dtype=bool)
    chosen[order] = True
    return [np.r_[False, chosen[offsets[f] : offsets[f + 1]]] for f in range(len(counts))]


def exact_auc(labels: npt.NDArray[Any], scores: npt.NDArray[np.float64]) -> float:
    """ROC AUC with average ranks for ties (Mann-Whitney U); NaN when one class is absent."""
    positive = labels.astype(bool)
    positives = int(positive.sum())
    negatives = positive.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    ranks = np.empty(ordered.size)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return float((ranks[positive].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def oracle_table(
    data: Path,
    budgets_bytes: list[int],
    dim: int,
    split: str = "test",
    *,
    compressions: Sequence[float] = (),
    fractions: SplitFractions | None = None,
) -> dict[str, Any]:
    """Ceiling, no-per-value and per-budget oracle AUCs of a synth-criteo file (module docstring).

    Args:
        data: the TSV written by ``python -m training.data synth-criteo`` (its sidecar beside it).
        budgets_bytes: memory budgets in bytes; each holds ``budget // (4 * dim)`` values.
        dim: embedding dimension.
        split: ``test`` (default), ``val`` or ``train``: the rows scored.
        compressions: more budgets, as ratios of ``full_table_bytes`` (rounded down to whole bytes).
        fractions: the train/val/test split (default: the trainer's 0.8/0.1/0.1).

    Returns:
        ``{"ceiling_auc", "no_per_value_auc", "rows": [{"budget_bytes", "values_kept", "auc", ...}],
        "full_table_bytes", "distinct_train_values", "train_values_seen_10_times", ...}``, rows in
        increasing budget order.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if any(b < 0 for b in budgets_bytes) or any(c <= 0 for c in compressions):
        raise ValueError("budgets must be >= 0 bytes and compressions > 0")
    generator, meta = load_generator(Path(data))
    sizes = (fractions or SplitFractions()).sizes(int(meta["rows"]))
    bounds = np.cumsum([0, *sizes.values()])
    index = list(sizes).index(SplitName(split))
    start, stop = int(bounds[index]), int(bounds[index + 1])
    if stop <= start:
        raise DataError(f"{data}: the {split} split is empty ({meta['rows']} rows)")
    counts = train_counts(generator, sizes[SplitName.TRAIN])
    seen = int(sum(int(np.count_nonzero(c)) for c in counts))
    seen_10 = int(sum(int(np.count_nonzero(c >= FREQUENT_COUNT)) for c in counts))
    full_bytes = seen * dim * BYTES_PER_FLOAT
    budgets: list[tuple[int, float | None]] = [(int(b), None) for b in budgets_bytes]
    budgets += [(int(full_bytes // c), float(c)) for c in compressions]
    budgets.sort(key=lambda item: item[0])

    parts = list(_draws(generator, start, stop, f"oracle: {split} rows"))
    draws = Draws(*(np.concatenate([getattr(p, name) for p in parts]) for name in Draws.__dataclass_fields__))
    true_logits = generator.bias + generator._raw_logits(draws)
    labels = (draws.label_uniform < 1.0 / (1.0 + np.exp(-true_logits))).astype(np.int8)

    def score(values: int) -> float:
        keep = kept_values(counts, values)
        return exact_auc(labels, generator.bias + generator._raw_logits(draws, keep))

    rows = []
    for budget, compression in budgets:
        values = budget // (dim * BYTES_PER_FLOAT)
        row: dict[str, Any] = {
            "budget_bytes": budget,
            "values_kept": min(values, seen),
            "auc": round(score(values), 6),
            "compression": round(compression if compression else full_bytes / max(budget, 1), 4),
        }
        rows.append(row)
        logger.info("oracle: %d bytes, %d values kept: AUC %.4f", budget, row["values_kept"], row["auc"])
    return {
        "data": str(data),
        "seed": meta["seed"],
        "generator": "null-control" if generator.config.is_null_control else "v2",
        "split": split,
        "rows_scored": stop - start,
        "dim": dim,
        "distinct_train_values": seen,
        "train_values_seen_10_times": seen_10,
        "full_table_bytes": full_bytes,
        "fallback": FALLBACK,
        "ceiling_auc": round(exact_auc(labels, true_logits), 6),
        "no_per_value_auc": round(score(0), 6),
        "rows": rows,
    }


def plot_oracle(tables: list[dict[str, Any]], labels: list[str], out: Path) -> None:
    """Oracle AUC against the memory ratio (log x), with each table's ceiling and no-per-value lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(7, 4.4))
    for index, (table, label) in enumerate(zip(tables, labels, strict=True)):
        color = f"C{index}"
        rows = sorted(table["rows"], key=lambda row: row["compression"])
        axis.plot([r["compression"] for r in rows], [r["auc"] for r in rows], "o-", color=color,
                  label=f"{label}: budget oracle")
        axis.axhline(table["ceiling_auc"], color=color, linestyle="--", linewidth=0.9,
                     label=f"{label}: ceiling {table['ceiling_auc']:.4f}")
        axis.axhline(table["no_per_value_auc"], color=color, linestyle=":", linewidth=0.9,
                     label=f"{label}: no per-value {table['no_per_value_auc']:.4f}")
    axis.set_xscale("log")
    axis.set_xlabel(f"compression (full-table bytes / budget), dim {tables[0]['dim']}")
    axis.set_ylabel(f"AUC on the {tables[0]['split']} split")
    axis.set_title("oracle: planted logits with per-value effects for the values a budget holds")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
