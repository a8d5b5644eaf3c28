"""Streaming delimited text: gzip-or-plain files read in blocks of whole lines, split into fields with NumPy.

A block is never more than ``chunk_bytes`` plus one line, so files larger than memory stream through.
Fields are located, not copied: :class:`Fields` holds the block's bytes and the start/end offset of
every field, and the parsers in :mod:`training.data.parse` read them column by column.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from training.data.errors import ColumnCountError, DataError, HeaderError

logger = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_CHUNK_BYTES = 8 << 20
NEWLINE, CARRIAGE_RETURN = 10, 13

IndexArray = npt.NDArray[np.int64]


def open_binary(path: Path) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing when its first bytes are the gzip magic."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def read_first_line(path: Path, limit: int = 1 << 20) -> bytes:
    """The first line of ``path`` without its line ending (at most ``limit`` bytes)."""
    with open_binary(path) as stream:
        line = stream.readline(limit)
    return line.rstrip(b"\r\n")


@dataclass(frozen=True)
class LineBlock:
    """Whole lines of a file, each ending in a newline.

    Args:
        path: the file, for error messages.
        first_line: 1-based line number of the block's first line.
        data: the bytes.
    """

    path: Path
    first_line: int
    data: bytes


def iter_line_blocks(
    path: Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES, skip_lines: int = 0
) -> Iterator[LineBlock]:
    """Yield ``path`` as blocks of about ``chunk_bytes`` of whole lines, skipping the first ``skip_lines``.

    A last line without a newline gets one. Line numbers count every physical line from 1.
    """
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be positive, got {chunk_bytes}")
    line_number = 1
    carry = b""
    with open_binary(path) as stream:
        for _ in range(skip_lines):
            if not stream.readline():
                return
            line_number += 1
        while True:
            piece = stream.read(chunk_bytes)
            if not piece:
                break
            data = carry + piece
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                carry = data
                continue
            carry = data[cut:]
            block = LineBlock(path, line_number, data[:cut])
            line_number += block.data.count(b"\n")
            yield block
    if carry:
        yield LineBlock(path, line_number, carry + b"\n")


def count_lines(path: Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Number of lines in ``path`` (a last line without a newline counts)."""
    return sum(block.data.count(b"\n") for block in iter_line_blocks(path, chunk_bytes))


@dataclass(frozen=True)
class Fields:
    """Field offsets of a block: field ``j`` of row ``i`` is ``buffer[starts[i, j]:ends[i, j]]``.

    Args:
        block: the lines.
        buffer: the block's bytes as uint8.
        starts: int64 [rows, columns].
        ends: int64 [rows, columns], line endings (``\\n``, ``\\r\\n``) excluded.
    """

    block: LineBlock
    buffer: npt.NDArray[np.uint8]
    starts: IndexArray
    ends: IndexArray

    @property
    def num_rows(self) -> int:
        return int(self.starts.shape[0])

    def line_of(self, row: int) -> int:
        """1-based file line number of ``row``."""
        return self.block.first_line + row


def split_fields(block: LineBlock, delimiter: bytes, num_columns: int) -> Fields:
    """Locate the ``num_columns`` fields of every line, raising ColumnCountError on the first bad line."""
    buffer = np.frombuffer(block.data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == NEWLINE)
    delimiters = np.flatnonzero(buffer == ord(delimiter))
    num_rows = newlines.size
    line_starts = np.concatenate(([0], newlines[:-1] + 1))
    per_line = num_columns - 1
    if delimiters.size == num_rows * per_line and num_rows:
        grid = delimiters.reshape(num_rows, per_line)  # (rows, columns - 1) if every line is well formed
        if per_line == 0 or (np.all(grid[:, 0] >= line_starts) and np.all(grid[:, -1] < newlines)):
            return _fields(block, buffer, line_starts, newlines, grid)
    counts = np.bincount(np.searchsorted(newlines, delimiters), minlength=num_rows)[:num_rows] + 1
    bad = np.flatnonzero(counts != num_columns)
    row = int(bad[0]) if bad.size else 0
    raise ColumnCountError(
        block.path, block.first_line + row, f"expected {num_columns} fields, found {int(counts[row])}"
    )


def _fields(
    block: LineBlock,
    buffer: npt.NDArray[np.uint8],
    line_starts: IndexArray,
    newlines: IndexArray,
    grid: IndexArray,
) -> Fields:
    line_ends = newlines - (buffer[newlines - 1] == CARRIAGE_RETURN)  # buffer[-1] is a newline, never CR
    starts = np.concatenate((line_starts[:, None], grid + 1), axis=1)
    ends = np.concatenate((grid, line_ends[:, None]), axis=1)
    return Fields(block, buffer, starts, ends)


def header_indices(path: Path, header: bytes, delimiter: bytes, names: list[str]) -> list[int]:
    """Position of each of ``names`` in a header line; raises HeaderError naming the missing ones."""
    columns = [name.strip().decode("utf-8", "replace") for name in header.split(delimiter)]
    missing = [name for name in names if name not in columns]
    if missing:
        raise HeaderError(path, f"header lacks column(s) {', '.join(missing[:5])}")
    return [columns.index(name) for name in names]
