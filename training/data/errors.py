"""Typed errors of the data readers: each names the file and, for a bad row, its 1-based line number."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file that cannot be read as asked (missing, unknown format, bad header or bad row)."""


class UnknownFormatError(DataError):
    """The format of a file cannot be told from its name or first line."""


class HeaderError(DataError):
    """A header line that lacks the columns its format needs.

    Args:
        path: the file.
        message: what is wrong with the header.
    """

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: line 1: {message}")


class MalformedRowError(DataError):
    """A row that does not parse; ``line`` counts physical lines from 1 (a header is line 1).

    Args:
        path: the file.
        line: 1-based line number of the bad row.
        message: what is wrong with it.
    """

    def __init__(self, path: Path, line: int, message: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}: line {line}: {message}")


class ColumnCountError(MalformedRowError):
    """A row with more or fewer fields than its format has columns."""


class BadHexError(MalformedRowError):
    """A categorical field that should be hexadecimal but is not (or is longer than 15 digits)."""


class BadNumberError(MalformedRowError):
    """A numeric field (label, count, coordinate) that is not a number of the expected kind."""
