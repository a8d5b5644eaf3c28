"""Memory budgets: parse sizes like ``2MB``, turn ``--compression X`` into bytes, size tables to fit.

Sizes use decimal units (``KB`` = 1000 bytes, ``MB`` = 10^6, ``GB`` = 10^9) and binary ones (``KiB`` =
1024, ``MiB``, ``GiB``); a bare number is bytes. ``--compression X`` means a budget of ``full_bytes / X``
where ``full_bytes`` is ``FullEmbedding.parameter_bytes()`` of the same data: table, vocabulary keys and
offsets, everything a full-table model needs at serving time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

FLOAT_BYTES = 4
INT64_BYTES = 8
FEATURE_HASH_ARRAYS = 3  # A1, A2, C per feature
BLOCK_HASH_ARRAYS = 2  # G1, G2 per block (hash version 2)

_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


class BudgetError(ValueError):
    """A memory budget that cannot be parsed or cannot hold the embedding."""


def parse_size(text: str) -> int:
    """``"2MB"`` -> 2000000, ``"1.5KiB"`` -> 1536, ``"4096"`` -> 4096.

    Raises:
        BudgetError: not a positive size with a known unit.
    """
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise BudgetError(f"cannot parse memory size {text!r}; use e.g. 2MB, 512KiB or a byte count")
    size = int(float(match.group(1)) * _UNITS[unit])
    if size <= 0:
        raise BudgetError(f"memory size {text!r} must be positive")
    return size


def format_size(num_bytes: float) -> str:
    """Human-readable decimal size: 2000000 -> ``2.00 MB``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.2f} {unit}"
    return f"{int(num_bytes)} B"


def resolve_budget(memory: str | None, compression: float | None, full_bytes: int) -> int:
    """The embedding budget in bytes from exactly one of ``--memory`` and ``--compression``."""
    if (memory is None) == (compression is None):
        raise BudgetError("give exactly one of --memory and --compression")
    if memory is not None:
        return parse_size(memory)
    assert compression is not None
    if not math.isfinite(compression) or compression < 1:
        raise BudgetError(f"--compression must be a finite number >= 1, got {compression}")
    return int(full_bytes / compression)


def hash_param_bytes(num_features: int, num_blocks: int) -> int:
    """Bytes of the hash coefficients (A1, A2, C per feature, G1, G2 per block) an embedding serves with."""
    return (FEATURE_HASH_ARRAYS * num_features + BLOCK_HASH_ARRAYS * num_blocks) * INT64_BYTES


def full_table_bytes(num_keys: int, num_features: int, embedding_dim: int) -> int:
    """Bytes of a full-table embedding: K + F rows (one OOV row per feature), keys and offsets."""
    table = (num_keys + num_features) * embedding_dim * FLOAT_BYTES
    return table + num_keys * INT64_BYTES + (num_features + 1) * INT64_BYTES


def memory_floats(budget_bytes: int, fixed_bytes: int, block_size: int) -> int:
    """Floats of the shared array ``M`` that fit ``budget_bytes`` after ``fixed_bytes`` of metadata.

    Raises:
        BudgetError: the budget cannot hold one block of ``block_size`` floats.
    """
    floats = (budget_bytes - fixed_bytes) // FLOAT_BYTES
    if floats < block_size:
        need = fixed_bytes + block_size * FLOAT_BYTES
        raise BudgetError(f"memory budget of {budget_bytes} bytes is smaller than one block "
                          f"({block_size} floats + {fixed_bytes} bytes of metadata = {need} bytes)")
    return floats


def hash_table_rows(cardinalities: Sequence[int], total_rows: int) -> tuple[int, ...]:
    """Rows of each feature's hashing-trick table: a max-min fair share of ``total_rows``.

    A feature never gets more than ``cardinality + 1`` rows (one per value plus one for unseen values: more
    would only waste memory), every feature gets at least one, and the rest is shared equally among the
    features that would use more (water filling). The result sums to at most ``max(total_rows, F)``.

    Raises:
        BudgetError: fewer rows than features.
    """
    num_features = len(cardinalities)
    if total_rows < num_features:
        raise BudgetError(f"{total_rows} hash rows cannot give each of {num_features} features one row")
    caps = [max(1, int(c) + 1) for c in cardinalities]
    rows = [0] * num_features
    remaining, left = total_rows, num_features
    for f in sorted(range(num_features), key=lambda i: caps[i]):
        rows[f] = min(caps[f], remaining // left)
        remaining -= rows[f]
        left -= 1
    return tuple(rows)
