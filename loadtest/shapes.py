"""Benchmark shapes (DESIGN.md section 7): table cardinalities, the DLRM preset and each method's memory.

``kaggle``: the 26 Criteo Kaggle cardinalities (33.8M rows, dim 16: 2.16 GB of float32 tables).
``terabyte``: the MLPerf Criteo Terabyte cardinalities capped at 40M (187.8M rows, dim 128: 96 GB).
``tiny``: a few thousand rows, for tests and ``--dry-run``.

The compressed methods get the paper's budgets: ROBE-Z on terabyte keeps 27M floats (100 MB) read in
blocks of Z = 32; on kaggle it keeps 1/1000 of the table with Z = d = 16 (one contiguous read per
lookup). LMA uses the same array; the hashing trick gets the same number of floats as table rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

NUM_DENSE = 13
FLOAT_BYTES = 4

KAGGLE_ROWS = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992, 5461306, 10,
    5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
TERABYTE_ROWS = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10, 2208, 11938, 155,
    4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)  # fmt: skip
TINY_ROWS = (
    1000, 50, 2000, 300, 20, 5, 700, 60, 3, 900, 400, 1500, 100, 10, 800, 1200, 4, 200, 90, 2, 1100, 8, 6,
    500, 30, 250,
)  # fmt: skip


class ShapeName(StrEnum):
    TINY = "tiny"
    KAGGLE = "kaggle"
    TERABYTE = "terabyte"


@dataclass(frozen=True)
class Shape:
    """One benchmark shape.

    Args:
        name: the shape, also the name of its DLRM preset in ``training.dlrm.model``.
        rows: rows of each feature's full table.
        embedding_dim: d.
        robe_floats: floats of the shared ROBE-Z / LMA array.
        block_size: Z, dividing d.
        rows_scale: the fraction of the published rows kept (1.0 unless scaled to fit a machine).

    Example:
        >>> SHAPES["kaggle"].table_bytes
        2160804928
    """

    name: ShapeName
    rows: tuple[int, ...]
    embedding_dim: int
    robe_floats: int
    block_size: int
    rows_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.rows or min(self.rows) < 1:
            raise ValueError(f"every table needs at least one row, got {self.rows}")
        if self.embedding_dim % self.block_size:
            raise ValueError(f"block size {self.block_size} must divide embedding_dim {self.embedding_dim}")
        if self.robe_floats < self.block_size:
            raise ValueError(f"robe_floats {self.robe_floats} is smaller than one block of {self.block_size}")
        if not 0 < self.rows_scale <= 1:
            raise ValueError(f"rows_scale must be in (0, 1], got {self.rows_scale}")

    @property
    def num_features(self) -> int:
        return len(self.rows)

    @property
    def total_rows(self) -> int:
        return sum(self.rows)

    @property
    def table_bytes(self) -> int:
        """Bytes of the full float32 tables (without the vocabulary a served model also keeps)."""
        return self.total_rows * self.embedding_dim * FLOAT_BYTES

    @property
    def robe_bytes(self) -> int:
        return self.robe_floats * FLOAT_BYTES

    def scaled(self, factor: float) -> Shape:
        """The same shape with every table's rows multiplied by ``factor`` (at least one row each).

        The ROBE array keeps its size: only the full tables have to fit the machine.
        """
        if factor >= 1:
            return self
        rows = tuple(max(1, math.floor(r * factor)) for r in self.rows)
        return replace(self, rows=rows, rows_scale=self.rows_scale * factor)


SHAPES: dict[str, Shape] = {
    ShapeName.TINY: Shape(ShapeName.TINY, TINY_ROWS, 16, robe_floats=4096, block_size=16),
    ShapeName.KAGGLE: Shape(ShapeName.KAGGLE, KAGGLE_ROWS, 16, robe_floats=sum(KAGGLE_ROWS) * 16 // 1000,
                            block_size=16),
    ShapeName.TERABYTE: Shape(ShapeName.TERABYTE, TERABYTE_ROWS, 128, robe_floats=27_000_000, block_size=32),
}


def get_shape(name: str) -> Shape:
    """The shape called ``name`` (raises ValueError naming the choices when unknown)."""
    try:
        return SHAPES[ShapeName(name)]
    except ValueError:
        choices = ", ".join(s.value for s in ShapeName)
        raise ValueError(f"unknown shape {name!r}; choose one of {choices}") from None
