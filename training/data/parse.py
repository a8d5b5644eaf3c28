"""Vectorised field parsers: hexadecimal ids, decimal numbers, 0/1 labels and hashed strings.

Each parser takes :class:`~training.data.text.Fields` and a list of columns, reads every field of those
columns at once (a ``[fields, width]`` byte matrix), and raises a typed error naming the file and line of
the first field it cannot parse. An empty field is missing: id 0, NaN for numbers.

String ids (Avazu) use a stable 64-bit hash, reproducible anywhere from this description::

    h = 0xcbf29ce484222325                      FNV-1a 64 over the field's bytes
    for byte in field: h = ((h ^ byte) * 0x100000001b3) mod 2^64
    h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53; h ^= h >> 33
                                                (murmur3's fmix64 finaliser, mod 2^64)
    id = h >> 2, or 1 when that is 0;  the empty field is id 0.

so every id is in [0, 2^62) as the hash contract (DESIGN.md section 3) requires.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from training.data.errors import BadHexError, BadNumberError, MalformedRowError
from training.data.text import Fields

MAX_HEX_DIGITS = 15  # 16^15 = 2^60 < 2^62
FNV_OFFSET, FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3
FMIX_1, FMIX_2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
MASK_64 = (1 << 64) - 1

_HEX_VALUES = np.full(256, -1, dtype=np.int8)
for _digit, _char in enumerate(b"0123456789abcdef"):
    _HEX_VALUES[_char] = _digit
    _HEX_VALUES[ord(chr(_char).upper())] = _digit
MINUS, DOT, ZERO, NINE = ord("-"), ord("."), ord("0"), ord("9")
HEX_WIDTH = 8  # up to 8 digits (Criteo's 32-bit hashes) decode as the bytes of a big-endian uint32
MAX_NUMBER_CHARS, MAX_LABEL_CHARS, MAX_STRING_CHARS = 64, 8, 1024  # longer fields are errors
MAX_EXACT_DIGITS = 15  # digits of a decimal fraction parsed exactly with NumPy (10^15 < 2^53)
_INT_POWERS_OF_TEN = 10 ** np.arange(MAX_EXACT_DIGITS + 1, dtype=np.int64)

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


class _Chars:
    """The fields of some columns as a byte matrix, row-major: field ``i`` is ``row * len(columns) + k``.

    ``chars`` is uint8 [fields, width] (width = the longest field), zero outside each field; with
    ``right=True`` each field ends at the last position (so position ``j`` has place value ``width - 1 - j``).
    A field longer than ``limit`` raises ``error``.
    """

    def __init__(self, fields: Fields, columns: list[int], limit: int, error: type[MalformedRowError],
                 right: bool = False) -> None:
        starts = fields.starts[:, columns].ravel()
        ends = fields.ends[:, columns].ravel()
        self.lengths = ends - starts
        self.width = width = int(self.lengths.max()) if self.lengths.size else 0
        if width > limit:  # checked first: one huge corrupt field must not make a [fields, huge] matrix
            _raise_first(fields, self.lengths > limit, columns, error, f"is longer than {limit} characters")
        padded = np.concatenate((np.zeros(width, np.uint8), fields.buffer, np.zeros(width, np.uint8)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, max(width, 1))[:, :width]
        positions = np.arange(width)
        if right:
            self.mask = positions >= width - self.lengths[:, None]  # (fields, width)
            self.chars = windows[ends] * self.mask
        else:
            self.mask = positions < self.lengths[:, None]
            self.chars = windows[starts + width] * self.mask


def _raise_first(
    fields: Fields, bad: BoolArray, columns: list[int], error: type[MalformedRowError], problem: str
) -> None:
    """Raise ``error`` for the first True of the flat ``bad`` mask over fields of ``columns``."""
    flat = int(np.flatnonzero(bad)[0])
    row, column = divmod(flat, len(columns))
    start, end = int(fields.starts[row, columns[column]]), int(fields.ends[row, columns[column]])
    text = fields.block.data[start:end][:40].decode("utf-8", "replace")
    raise error(fields.block.path, fields.line_of(row), f"field {columns[column] + 1} {problem}: {text!r}")


def parse_hex(fields: Fields, columns: list[int]) -> npt.NDArray[np.int64]:
    """Hexadecimal ids of ``columns``: int64 [rows, len(columns)]; empty = 0."""
    field = _Chars(fields, columns, MAX_HEX_DIGITS, BadHexError, right=True)
    digits = _HEX_VALUES[field.chars]  # (fields, width), -1 where not a hex digit
    bad = (digits < 0) & field.mask
    if bad.any():
        _raise_first(fields, np.any(bad, axis=1), columns, BadHexError, "is not hex")
    digits[~field.mask] = 0
    if field.width <= HEX_WIDTH:  # 8 digits (left-padded) are the bytes of a big-endian 32-bit value
        if field.width < HEX_WIDTH:
            digits = np.pad(digits, ((0, 0), (HEX_WIDTH - field.width, 0)))
        nibbles = digits.view(np.uint8)
        pairs = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]
        values = np.ascontiguousarray(pairs).view(">u4")[:, 0].astype(np.int64)
    else:
        powers = np.int64(16) ** np.arange(field.width - 1, -1, -1, dtype=np.int64)
        values = digits.astype(np.int64) @ powers
    return values.reshape(-1, len(columns))


def parse_decimal(fields: Fields, columns: list[int]) -> npt.NDArray[np.float64]:
    """Decimal numbers (``-12``, ``260.0``) of ``columns``: float64 [rows, len(columns)], NaN = empty."""
    field = _Chars(fields, columns, MAX_NUMBER_CHARS, BadNumberError, right=True)
    chars, mask, lengths = field.chars, field.mask, field.lengths
    if field.width == 0:
        return np.full((fields.num_rows, len(columns)), np.nan)
    is_digit = (chars >= ZERO) & (chars <= NINE)
    first = np.zeros(mask.shape, bool)
    first[np.arange(lengths.size), (field.width - lengths) % field.width] = lengths > 0
    negative = first & (chars == MINUS)
    is_dot = chars == DOT
    if (mask & ~is_digit & ~negative).any() or (negative.any(axis=1) & (lengths == 1)).any():
        if is_dot.any():
            return _parse_fraction(fields, columns)
        bad = (mask & ~is_digit & ~negative).any(axis=1) | (negative.any(axis=1) & (lengths == 1))
        _raise_first(fields, bad, columns, BadNumberError, "is not a number")
    digits = np.where(is_digit, chars - np.uint8(ZERO), np.uint8(0)).astype(np.float64)
    values = digits @ (10.0 ** np.arange(field.width - 1, -1, -1))  # exact up to 15 digits
    values[negative.any(axis=1)] *= -1.0
    values[lengths == 0] = np.nan
    _reparse_long(fields, columns, values, lengths > MAX_EXACT_DIGITS)
    return values.reshape(-1, len(columns))


def _parse_fraction(fields: Fields, columns: list[int]) -> npt.NDArray[np.float64]:
    """The general path of :func:`parse_decimal`, for fields with a decimal point."""
    field = _Chars(fields, columns, MAX_NUMBER_CHARS, BadNumberError)
    chars, mask, lengths = field.chars, field.mask, field.lengths
    is_digit = mask & (chars >= ZERO) & (chars <= NINE)
    is_dot = mask & (chars == DOT)
    negative = (lengths > 0) & (chars[:, 0] == MINUS)
    allowed = is_digit | is_dot | ~mask
    allowed[:, 0] |= negative
    good = allowed.all(axis=1) & (is_dot.sum(axis=1) <= 1) & (is_digit.any(axis=1) | (lengths == 0))
    if not good.all():
        _raise_first(fields, ~good, columns, BadNumberError, "is not a number")
    num_digits = is_digit.sum(axis=1)
    # mantissa = all digits as one integer, exact below 2^53, divided once by 10^(digits after the dot):
    # one rounding, so the result is the correctly rounded float; longer numbers go through float()
    place = np.clip(num_digits[:, None] - np.cumsum(is_digit, axis=1), 0, MAX_EXACT_DIGITS)
    digits = np.where(is_digit, chars - np.uint8(ZERO), np.uint8(0)).astype(np.int64)
    mantissa = (digits * _INT_POWERS_OF_TEN[place]).sum(axis=1)
    decimals = np.minimum((is_digit & (np.cumsum(is_dot, axis=1) > 0)).sum(axis=1), MAX_EXACT_DIGITS)
    values = mantissa / _INT_POWERS_OF_TEN[decimals]
    values[negative] *= -1.0
    values[lengths == 0] = np.nan
    _reparse_long(fields, columns, values, num_digits > MAX_EXACT_DIGITS)
    return values.reshape(-1, len(columns))


def _reparse_long(fields: Fields, columns: list[int], values: FloatArray, long: BoolArray) -> None:
    """Replace the values of (rare) numbers too long for the exact vectorised paths by Python's float()."""
    for flat in np.flatnonzero(long):
        row, column = divmod(int(flat), len(columns))
        start, end = int(fields.starts[row, columns[column]]), int(fields.ends[row, columns[column]])
        values[flat] = float(fields.block.data[start:end])


def parse_labels(fields: Fields, column: int) -> npt.NDArray[np.int8]:
    """The 0/1 label column: int8 [rows]."""
    field = _Chars(fields, [column], MAX_LABEL_CHARS, BadNumberError)
    lengths = field.lengths
    first = field.chars[:, 0] if field.width else np.zeros(lengths.shape, np.uint8)
    good = (lengths == 1) & ((first == ZERO) | (first == ZERO + 1))
    if not good.all():
        _raise_first(fields, ~good, [column], BadNumberError, "(the label) is not 0 or 1")
    return (first - ZERO).astype(np.int8)


def hash_columns(fields: Fields, columns: list[int]) -> npt.NDArray[np.int64]:
    """Stable 64-bit hash ids (module docstring) of ``columns``: int64 [rows, len(columns)]; empty = 0."""
    hashed = []
    for column in columns:  # one column at a time: widths differ a lot between columns
        field = _Chars(fields, [column], MAX_STRING_CHARS, MalformedRowError)
        hashes = np.full(field.lengths.size, FNV_OFFSET, dtype=np.uint64)
        for position in range(field.width):
            mixed = (hashes ^ field.chars[:, position].astype(np.uint64)) * np.uint64(FNV_PRIME)
            hashes = np.where(field.mask[:, position], mixed, hashes)
        hashed.append(_finish(hashes, field.lengths))
    return np.stack(hashed, axis=1) if hashed else np.zeros((fields.num_rows, 0), np.int64)


def _finish(hashes: npt.NDArray[np.uint64], lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    shift = np.uint64(33)
    hashes = hashes ^ (hashes >> shift)
    hashes = hashes * np.uint64(FMIX_1)
    hashes = hashes ^ (hashes >> shift)
    hashes = hashes * np.uint64(FMIX_2)
    hashes = hashes ^ (hashes >> shift)
    ids = (hashes >> np.uint64(2)).astype(np.int64)
    ids[ids == 0] = 1
    ids[lengths == 0] = 0
    return ids


def hash_string(value: str | bytes) -> int:
    """The id of one string (UTF-8), exactly as :func:`hash_columns` computes it; for callers and tests."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if not data:
        return 0
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK_64
    h ^= h >> 33
    h = (h * FMIX_1) & MASK_64
    h ^= h >> 33
    h = (h * FMIX_2) & MASK_64
    h ^= h >> 33
    return (h >> 2) or 1
