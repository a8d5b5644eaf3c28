"""UJIIndoorLoc WiFi fingerprints (Torres-Sospedra et al., 2014): trainingData.csv, validationData.csv.

Comma-separated with a header: ``WAP001..WAP520`` (RSSI in dBm, -104..0; 100 = access point not seen),
``LONGITUDE, LATITUDE`` (UTM metres), ``FLOOR``, ``BUILDINGID``, ``SPACEID``, ``RELATIVEPOSITION``,
``USERID``, ``PHONEID``, ``TIMESTAMP``. Gzip or plain; read in blocks like the click logs.

Example:
    >>> data = load_uji(Path("../shared/data/ujiindoorloc/trainingData.csv.gz"))  # doctest: +SKIP
    >>> data.rssi.shape
    (19937, 520)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training.data.errors import BadNumberError
from training.data.parse import parse_decimal
from training.data.text import Fields, header_indices, iter_line_blocks, read_first_line, split_fields

logger = logging.getLogger(__name__)

NUM_ACCESS_POINTS = 520
NOT_SEEN_DBM = 100
ACCESS_POINTS = tuple(f"WAP{i:03d}" for i in range(1, NUM_ACCESS_POINTS + 1))
INTEGER_COLUMNS = ("FLOOR", "BUILDINGID", "SPACEID", "RELATIVEPOSITION", "USERID", "PHONEID", "TIMESTAMP")
CHUNK_BYTES = 4 << 20  # ~2,000 rows of 520 fields per block

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class UjiData:
    """One UJIIndoorLoc file, one row per fingerprint.

    Args:
        rssi: float32 [N, 520], raw dBm; 100 means the access point was not seen.
        longitude: float64 [N], UTM metres.
        latitude: float64 [N], UTM metres.
        floor: int64 [N], 0-4.
        building: int64 [N], 0-2.
        space_id: int64 [N].
        relative_position: int64 [N], 1 = inside the space, 2 = outside in front of the door.
        user_id: int64 [N].
        phone_id: int64 [N].
        timestamp: int64 [N], UNIX seconds.
    """

    rssi: npt.NDArray[np.float32]
    longitude: FloatArray
    latitude: FloatArray
    floor: IntArray
    building: IntArray
    space_id: IntArray
    relative_position: IntArray
    user_id: IntArray
    phone_id: IntArray
    timestamp: IntArray

    def __len__(self) -> int:
        return int(self.rssi.shape[0])


def load_uji(path: Path) -> UjiData:
    """Read a UJIIndoorLoc CSV (gzip or plain); a bad row raises MalformedRowError naming its line."""
    header = read_first_line(path)
    names = [*ACCESS_POINTS, "LONGITUDE", "LATITUDE", *INTEGER_COLUMNS]
    columns = header_indices(path, header, b",", names)
    width = header.count(b",") + 1
    chunks = [np.zeros((0, len(names)))]
    for block in iter_line_blocks(path, CHUNK_BYTES, skip_lines=1):
        fields = split_fields(block, b",", width)
        rssi, place = columns[:NUM_ACCESS_POINTS], columns[NUM_ACCESS_POINTS:]
        values = np.concatenate(
            [parse_decimal(fields, rssi), parse_decimal(fields, place[:2]), parse_decimal(fields, place[2:])],
            axis=1,
        )  # (rows, 529), NaN where empty
        _check_complete(fields, values, names)
        _check_integral(fields, values[:, NUM_ACCESS_POINTS + 2 :])
        chunks.append(values)
    table = np.concatenate(chunks)
    logger.info("read %d fingerprints from %s", table.shape[0], path)
    integers = table[:, NUM_ACCESS_POINTS + 2 :].astype(np.int64)
    return UjiData(
        table[:, :NUM_ACCESS_POINTS].astype(np.float32),
        table[:, NUM_ACCESS_POINTS],
        table[:, NUM_ACCESS_POINTS + 1],
        *(integers[:, k].copy() for k in range(len(INTEGER_COLUMNS))),
    )


def _check_complete(fields: Fields, values: FloatArray, names: list[str]) -> None:
    empty = np.isnan(values)
    if empty.any():
        row, column = divmod(int(np.flatnonzero(empty)[0]), len(names))
        raise BadNumberError(fields.block.path, fields.line_of(row), f"{names[column]} is empty")


def _check_integral(fields: Fields, values: FloatArray) -> None:
    integral = values == np.round(values)
    if not integral.all():
        row, column = divmod(int(np.flatnonzero(~integral)[0]), len(INTEGER_COLUMNS))
        raise BadNumberError(
            fields.block.path,
            fields.line_of(row),
            f"{INTEGER_COLUMNS[column]} is not an integer: {values[row, column]!r}",
        )
