"""Streaming readers of the click-log formats: Criteo TSV (Kaggle and Terabyte), Criteo header CSV, Avazu CSV.

Every reader yields :class:`Batch` objects of a few tens of thousands of rows, so any file size streams
through. Gzip or plain is told by the first bytes, never by the name.

- ``criteo``: tab-separated ``label, I1..I13, C1..C26``, no header; the 26 categoricals are hexadecimal
  (8 digits) and become their integer value; an empty field is missing (id 0, dense NaN).
- ``criteo-csv``: the same columns, comma-separated, with a header line ``label,I1,...,C26``.
- ``avazu``: comma-separated with the standard header; ``click`` is the label, ``id`` is dropped, and the
  22 other columns are categorical, each string hashed to an id (see :mod:`training.data.parse`).

Example:
    >>> from pathlib import Path
    >>> for batch in read_batches(Path("../shared/data/criteo/criteo_15k.tsv.gz")):  # doctest: +SKIP
    ...     batch.categorical.shape                                     # (rows, 26) int64
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data.errors import UnknownFormatError
from training.data.parse import hash_columns, parse_decimal, parse_hex, parse_labels
from training.data.text import (
    DEFAULT_CHUNK_BYTES,
    header_indices,
    iter_line_blocks,
    read_first_line,
    split_fields,
)

logger = logging.getLogger(__name__)


class DataFormat(StrEnum):
    """The click-log file formats the readers understand."""

    CRITEO = "criteo"
    CRITEO_CSV = "criteo-csv"
    AVAZU = "avazu"


@dataclass(frozen=True)
class Schema:
    """Column names of a format, in the order of the arrays a reader yields.

    Args:
        dataset: ``criteo`` or ``avazu``.
        dense: names of the dense (numeric) columns.
        categorical: names of the categorical columns.
    """

    dataset: str
    dense: tuple[str, ...]
    categorical: tuple[str, ...]


CRITEO_DENSE = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
CRITEO_SCHEMA = Schema("criteo", CRITEO_DENSE, CRITEO_CATEGORICAL)
AVAZU_CATEGORICAL = (
    "hour",
    "C1",
    "banner_pos",
    "site_id",
    "site_domain",
    "site_category",
    "app_id",
    "app_domain",
    "app_category",
    "device_id",
    "device_ip",
    "device_model",
    "device_type",
    "device_conn_type",
    "C14",
    "C15",
    "C16",
    "C17",
    "C18",
    "C19",
    "C20",
    "C21",
)
AVAZU_SCHEMA = Schema("avazu", (), AVAZU_CATEGORICAL)
SCHEMAS = {
    DataFormat.CRITEO: CRITEO_SCHEMA,
    DataFormat.CRITEO_CSV: CRITEO_SCHEMA,
    DataFormat.AVAZU: AVAZU_SCHEMA,
}
CRITEO_COLUMNS = 1 + len(CRITEO_DENSE) + len(CRITEO_CATEGORICAL)


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of a file.

    Args:
        first_line: 1-based file line of the first row.
        labels: int8 [rows], 0 or 1.
        dense: float64 [rows, num_dense], raw values, NaN = missing.
        categorical: int64 [rows, num_categorical], ids in [0, 2^62), 0 = missing.
    """

    first_line: int
    labels: npt.NDArray[np.int8]
    dense: npt.NDArray[np.float64]
    categorical: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def sniff_format(path: Path) -> DataFormat:
    """Tell the format from the first line (header or field count), else from the file name."""
    first = read_first_line(path)
    if first.startswith(b"label,"):
        return DataFormat.CRITEO_CSV
    if first.startswith(b"id,click,") or first.startswith(b"id,click\r"):
        return DataFormat.AVAZU
    if first.count(b"\t") == CRITEO_COLUMNS - 1:
        return DataFormat.CRITEO
    name = path.name.lower()
    if "avazu" in name:
        return DataFormat.AVAZU
    if "criteo" in name or name.startswith("day_"):
        return DataFormat.CRITEO_CSV if b"," in first else DataFormat.CRITEO
    raise UnknownFormatError(
        f"{path}: cannot tell the format from its first line or name; "
        f"name one of {', '.join(f.value for f in DataFormat)}"
    )


def read_batches(
    path: Path, data_format: DataFormat | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Batch]:
    """Stream ``path`` as batches; the format is sniffed when not given."""
    data_format = sniff_format(path) if data_format is None else DataFormat(data_format)
    if data_format is DataFormat.CRITEO:
        return _criteo_tsv(path, chunk_bytes)
    if data_format is DataFormat.CRITEO_CSV:
        return _criteo_csv(path, chunk_bytes)
    return _avazu(path, chunk_bytes)


def _criteo_tsv(path: Path, chunk_bytes: int) -> Iterator[Batch]:
    dense_columns = list(range(1, 1 + len(CRITEO_DENSE)))
    categorical_columns = list(range(1 + len(CRITEO_DENSE), CRITEO_COLUMNS))
    for block in iter_line_blocks(path, chunk_bytes):
        fields = split_fields(block, b"\t", CRITEO_COLUMNS)
        yield Batch(
            block.first_line,
            parse_labels(fields, 0),
            parse_decimal(fields, dense_columns),
            parse_hex(fields, categorical_columns),
        )


def _criteo_csv(path: Path, chunk_bytes: int) -> Iterator[Batch]:
    header = read_first_line(path)
    columns = header_indices(path, header, b",", ["label", *CRITEO_DENSE, *CRITEO_CATEGORICAL])
    width = header.count(b",") + 1
    label, dense_columns, categorical_columns = columns[0], columns[1:14], columns[14:]
    for block in iter_line_blocks(path, chunk_bytes, skip_lines=1):
        fields = split_fields(block, b",", width)
        yield Batch(
            block.first_line,
            parse_labels(fields, label),
            parse_decimal(fields, dense_columns),
            parse_hex(fields, categorical_columns),
        )


def _avazu(path: Path, chunk_bytes: int) -> Iterator[Batch]:
    header = read_first_line(path)
    columns = header_indices(path, header, b",", ["click", *AVAZU_CATEGORICAL])
    width = header.count(b",") + 1
    for block in iter_line_blocks(path, chunk_bytes, skip_lines=1):
        fields = split_fields(block, b",", width)
        labels = parse_labels(fields, columns[0])
        yield Batch(block.first_line, labels, np.zeros((len(labels), 0)), hash_columns(fields, columns[1:]))
