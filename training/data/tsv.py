"""Vectorised writer of Criteo's original TSV lines (``label, I1..I13, C1..C26``; empty = missing).

The bytes are assembled in one NumPy buffer, column by column: each field is written as a fixed-width
window at its start offset (digits first, then padding that a later column or a separator overwrites),
and the separators go in last. That is ~20x faster than formatting the fields one by one in Python.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

TAB, NEWLINE, MINUS, ZERO = ord("\t"), ord("\n"), ord("-"), ord("0")
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# the two hex digits of each byte value, packed so that a little-endian uint16 holds them in text order
_BYTE_HEX = HEX_DIGITS[np.arange(256) >> 4].astype("<u2") | HEX_DIGITS[np.arange(256) & 15].astype("<u2") << 8
HEX_WIDTH = 8
MAX_ID = 1 << 32
_POWERS_OF_TEN = 10 ** np.arange(19, dtype=np.int64)

U8Array = npt.NDArray[np.uint8]
IntArray = npt.NDArray[np.int64]


def format_criteo_rows(
    labels: npt.NDArray[np.int8], dense: npt.NDArray[np.float64], categorical: IntArray
) -> bytes:
    """TSV bytes of rows: labels int8 [N] (0/1), dense integer-valued float64 [N, 13] (NaN = missing),
    categorical int64 [N, 26] in [0, 2^32) (0 = missing, else 8 lowercase hex digits)."""
    if categorical.size and (categorical.min() < 0 or categorical.max() >= MAX_ID):
        raise ValueError("categorical ids must be in [0, 2^32) to be written as 8 hex digits")
    dense_chars, dense_lengths = _decimal_chars(dense)  # 13 x (N, W_c), (N, 13)
    hex_lengths = np.where(categorical != 0, HEX_WIDTH, 0)
    lengths = np.concatenate((np.ones((len(labels), 1), np.int64), dense_lengths, hex_lengths), axis=1)
    separators = np.cumsum(lengths + 1, axis=1)  # (N, 40): one past each field's separator, within its row
    row_starts = np.concatenate(([0], np.cumsum(separators[:, -1])[:-1]))
    field_ends = row_starts[:, None] + separators - 1  # offset of the tab/newline after each field
    starts = field_ends - lengths
    total = int(field_ends[-1, -1]) + 1 if len(labels) else 0
    width = max(HEX_WIDTH, *(chars.shape[1] for chars in dense_chars))
    buffer = np.zeros(total + width, dtype=np.uint8)
    buffer[starts[:, 0]] = labels.astype(np.uint8) + ZERO
    for column, chars in enumerate(dense_chars):
        windows = np.lib.stride_tricks.sliding_window_view(buffer, chars.shape[1], writeable=True)
        windows[starts[:, 1 + column]] = chars
    hex_windows = np.lib.stride_tricks.sliding_window_view(buffer, HEX_WIDTH, writeable=True)
    present = categorical != 0
    hex_starts = starts[:, 1 + len(dense_chars) :]
    hex_windows[hex_starts[present]] = _hex_chars(categorical[present])
    buffer[field_ends.ravel()] = TAB
    buffer[field_ends[:, -1]] = NEWLINE
    return buffer[:total].tobytes()


def _decimal_chars(values: npt.NDArray[np.float64]) -> tuple[list[U8Array], IntArray]:
    """Left-aligned decimal digits of integer-valued floats [N, C] (NaN = missing): per column a uint8
    [N, W_c] matrix (W_c = the column's longest field, positions past a field's end hold junk), and
    the lengths int64 [N, C] (0 where missing)."""
    missing = np.isnan(values)
    integers = np.where(missing, 0, values).astype(np.int64)
    negative = integers < 0
    magnitude = np.abs(integers)
    num_digits = np.maximum(np.searchsorted(_POWERS_OF_TEN, magnitude, side="right"), 1)
    lengths = np.where(missing, 0, num_digits + negative)
    columns = []
    for column in range(values.shape[1]):
        length = lengths[:, column]
        width = max(int(length.max(initial=0)), 1)
        right = np.empty((len(length), width), dtype=np.uint8)  # right-aligned digits
        quotient = magnitude[:, column].copy()
        for position in range(width - 1, -1, -1):
            next_quotient = quotient // 10  # a scalar divisor: NumPy's fast path
            right[:, position] = quotient - next_quotient * 10 + ZERO
            quotient = next_quotient
        signs = np.flatnonzero(negative[:, column])
        right[signs, width - length[signs]] = MINUS
        shift = np.minimum(np.arange(width) + (width - length)[:, None], width - 1)  # (N, W)
        columns.append(np.take_along_axis(right, shift, axis=1))
    return columns, lengths


def _hex_chars(ids: IntArray) -> U8Array:
    """8 lowercase hex digits of each id in [0, 2^32): uint8 [K, 8]."""
    octets = ids.astype(">u4").view(np.uint8).reshape(-1, 4)  # big-endian bytes of each id
    return _BYTE_HEX[octets].view(np.uint8).reshape(-1, HEX_WIDTH)
