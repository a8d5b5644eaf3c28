"""UJIIndoorLoc reader: the real files' documented facts and malformed input."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from training.data.errors import BadNumberError, ColumnCountError, HeaderError
from training.data.uji import ACCESS_POINTS, NOT_SEEN_DBM, load_uji

TAIL = [
    "LONGITUDE",
    "LATITUDE",
    "FLOOR",
    "BUILDINGID",
    "SPACEID",
    "RELATIVEPOSITION",
    "USERID",
    "PHONEID",
    "TIMESTAMP",
]
HEADER = ",".join([*ACCESS_POINTS, *TAIL])


def uji_row(rssi: str = "100", longitude: str = "-7541.2643", floor: str = "2") -> str:
    return ",".join(
        [rssi] * len(ACCESS_POINTS)
        + [longitude, "4864920.7782000005", floor, "1", "106", "2", "2", "23", "1371713733"]
    )


def test_training_file_facts(shared_data: Path) -> None:
    path = shared_data / "ujiindoorloc" / "trainingData.csv.gz"
    data = load_uji(path)
    assert len(data) == 19937
    assert data.rssi.shape == (19937, 520) and data.rssi.dtype == np.float32
    assert data.longitude.dtype == np.float64 and data.floor.dtype == np.int64
    seen = data.rssi[data.rssi != NOT_SEEN_DBM]
    assert seen.min() >= -104 and seen.max() <= 0
    assert int((data.rssi == NOT_SEEN_DBM).all(axis=0).sum()) == 55  # access points never seen in training
    assert set(np.unique(data.building)) == {0, 1, 2}
    assert len(np.unique(np.stack([data.building, data.floor], axis=1), axis=0)) == 13
    assert len(np.unique(np.stack([data.longitude, data.latitude], axis=1), axis=0)) == 692
    with gzip.open(path, "rt") as stream:
        first = stream.readlines()[1].strip().split(",")
    assert data.longitude[0] == float(first[520]) and data.latitude[0] == float(first[521])
    assert (data.space_id[0], data.user_id[0], data.phone_id[0], data.timestamp[0]) == tuple(
        int(first[i]) for i in (524, 526, 527, 528)
    )


def test_validation_file(shared_data: Path) -> None:
    data = load_uji(shared_data / "ujiindoorloc" / "validationData.csv.gz")
    assert len(data) == 1111 and data.rssi.shape == (1111, 520)
    assert set(np.unique(data.floor)) <= set(range(5))


def test_plain_file_and_values(write_text) -> None:
    data = load_uji(write_text("u.csv", f"{HEADER}\n{uji_row(rssi='-71')}\n{uji_row(floor='0')}\n"))
    assert len(data) == 2
    np.testing.assert_array_equal(data.rssi[0], np.full(520, -71, np.float32))
    assert data.latitude[0] == 4864920.7782000005 and data.longitude[1] == -7541.2643
    np.testing.assert_array_equal(data.floor, [2, 0])


@pytest.mark.parametrize(
    ("body", "error", "line"),
    [
        (f"{uji_row()}\n{uji_row(rssi='x')}\n", BadNumberError, 3),
        (f"{uji_row()}\n{uji_row(floor='2.5')}\n", BadNumberError, 3),
        (f"{uji_row(longitude='')}\n", BadNumberError, 2),
        (f"{uji_row()},1\n", ColumnCountError, 2),
    ],
    ids=["bad-rssi", "fractional-floor", "empty-longitude", "extra-field"],
)
def test_malformed_rows(write_text, body: str, error: type, line: int) -> None:
    with pytest.raises(error, match=f"line {line}:"):
        load_uji(write_text("bad.csv", f"{HEADER}\n{body}"))


def test_missing_column(write_text) -> None:
    with pytest.raises(HeaderError, match="PHONEID"):
        load_uji(write_text("h.csv", HEADER.replace("PHONEID", "PHONE") + "\n"))
