"""Wire formats of tensors: JSON data (flat or nested) and binary data, per datatype."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from service.errors import InvalidInput
from service.tensors import (
    NUMPY_DTYPES,
    Datatype,
    datatype_from_name,
    decode_binary_data,
    decode_json_data,
    encode_binary_data,
    encode_json_data,
    split_binary_body,
)

NUMERIC = [datatype for datatype in Datatype if datatype is not Datatype.BYTES]


def arrays_of(datatype: Datatype) -> st.SearchStrategy[np.ndarray]:
    dtype = NUMPY_DTYPES[datatype]
    elements = None
    if dtype.kind == "f":
        elements = st.floats(-1e4, 1e4, allow_nan=False, width={2: 16, 4: 32, 8: 64}[dtype.itemsize])  # type: ignore[arg-type]
    return hnp.arrays(dtype, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4), elements=elements)


@pytest.mark.parametrize("datatype", NUMERIC, ids=lambda d: d.value)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_json_and_binary_round_trip(datatype: Datatype, data: st.DataObject) -> None:
    array = data.draw(arrays_of(datatype))
    shape = list(array.shape)
    flat = decode_json_data(encode_json_data(array), datatype, shape, "x")
    nested = decode_json_data(array.tolist(), datatype, shape, "x")
    binary = decode_binary_data(encode_binary_data(array), datatype, shape, "x")
    for decoded in (flat, nested, binary):
        assert decoded.dtype == NUMPY_DTYPES[datatype] and decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(max_size=6), min_size=1, max_size=6))
def test_bytes_round_trip(items: list[str]) -> None:
    array = np.array(items, dtype=object)
    assert decode_json_data(items, Datatype.BYTES, [len(items)], "s").tolist() == items
    assert decode_binary_data(encode_binary_data(array), Datatype.BYTES, [len(items)], "s").tolist() == items


@pytest.mark.parametrize(
    ("data", "datatype", "shape", "message"),
    [
        ([1, 2, 3], Datatype.FP32, [2, 2], "3 values for shape [2, 2]"),
        ([1.5], Datatype.INT64, [1], "needs integers"),
        ([True], Datatype.FP32, [1], "needs numbers"),
        ([1], Datatype.BOOL, [1], "needs booleans"),
        ([300], Datatype.UINT8, [1], "out of range"),
        ([2**63], Datatype.INT64, [1], "out of range"),
        ([None], Datatype.FP32, [1], "nulls"),
        ([[1, 2], [3]], Datatype.FP32, [2, 2], "not a regular array"),
        ([1], Datatype.BYTES, [1], "must be strings"),
    ],
)
def test_json_errors(data: list[object], datatype: Datatype, shape: list[int], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        decode_json_data(data, datatype, shape, "x")


def test_binary_errors() -> None:
    with pytest.raises(InvalidInput, match="12 bytes"):
        decode_binary_data(b"\0" * 12, Datatype.FP32, [2, 2], "x")
    with pytest.raises(InvalidInput, match="truncated"):
        decode_binary_data(struct.pack("<I", 5) + b"abc", Datatype.BYTES, [1], "x")
    with pytest.raises(InvalidInput, match="0 or 1"):
        decode_binary_data(b"\x02", Datatype.BOOL, [1], "x")
    assert split_binary_body(b'{"a": 1}xyz', "8") == (b'{"a": 1}', b"xyz")
    for bad in ("-1", "0", "99", "x"):
        with pytest.raises(InvalidInput):
            split_binary_body(b'{"a": 1}xyz', bad)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("FP32", Datatype.FP32),
        ("tensor(float)", Datatype.FP32),
        ("int64", Datatype.INT64),
        ("tensor(string)", Datatype.BYTES),
        ("double", Datatype.FP64),
        ("tensor(bool)", Datatype.BOOL),
    ],
)
def test_datatype_names(name: str, expected: Datatype) -> None:
    assert datatype_from_name(name) is expected


def test_unknown_datatype_name() -> None:
    with pytest.raises(ValueError, match="unknown datatype"):
        datatype_from_name("tensor(bfloat16)")
