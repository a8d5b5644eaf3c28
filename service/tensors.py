"""Tensors on the wire: v2 datatypes, JSON ``data`` lists and the binary tensor data extension.

The binary extension (Triton's HTTP client uses it by default) sends a JSON header of
``Inference-Header-Content-Length`` bytes followed by each binary tensor's raw little-endian, row-major
bytes; BYTES elements are each prefixed by their length as a 4-byte little-endian integer.
"""

from __future__ import annotations

import math
import struct
from enum import StrEnum
from typing import Any

import numpy as np

from service.errors import InvalidInput

BINARY_HEADER = "Inference-Header-Content-Length"


class Datatype(StrEnum):
    """Tensor element types of the Open Inference Protocol."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


NUMPY_DTYPES: dict[Datatype, np.dtype] = {
    Datatype.BOOL: np.dtype(np.bool_),
    Datatype.UINT8: np.dtype(np.uint8),
    Datatype.UINT16: np.dtype(np.uint16),
    Datatype.UINT32: np.dtype(np.uint32),
    Datatype.UINT64: np.dtype(np.uint64),
    Datatype.INT8: np.dtype(np.int8),
    Datatype.INT16: np.dtype(np.int16),
    Datatype.INT32: np.dtype(np.int32),
    Datatype.INT64: np.dtype(np.int64),
    Datatype.FP16: np.dtype(np.float16),
    Datatype.FP32: np.dtype(np.float32),
    Datatype.FP64: np.dtype(np.float64),
    Datatype.BYTES: np.dtype(object),
}
_ORT_NAMES = {
    "bool": Datatype.BOOL,
    "uint8": Datatype.UINT8,
    "uint16": Datatype.UINT16,
    "uint32": Datatype.UINT32,
    "uint64": Datatype.UINT64,
    "int8": Datatype.INT8,
    "int16": Datatype.INT16,
    "int32": Datatype.INT32,
    "int64": Datatype.INT64,
    "float16": Datatype.FP16,
    "float": Datatype.FP32,
    "float32": Datatype.FP32,
    "double": Datatype.FP64,
    "float64": Datatype.FP64,
    "string": Datatype.BYTES,
}
_FLOATS = {Datatype.FP16, Datatype.FP32, Datatype.FP64}


def datatype_from_name(name: str) -> Datatype:
    """Accept a v2 name (``FP32``), an onnxruntime type (``tensor(float)``) or a NumPy name (``float32``)."""
    text = name.strip()
    if text.startswith("tensor(") and text.endswith(")"):
        text = text[len("tensor(") : -1]
    if text.upper() in Datatype.__members__:
        return Datatype(text.upper())
    if text.lower() in _ORT_NAMES:
        return _ORT_NAMES[text.lower()]
    raise ValueError(f"unknown datatype {name!r}")


def element_count(shape: list[int]) -> int:
    """Number of elements of a tensor of this shape."""
    return math.prod(shape)


def _flatten(values: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(values)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _check_kind(array: np.ndarray, datatype: Datatype, name: str) -> None:
    kind = array.dtype.kind
    if array.size == 0:
        return
    if datatype is Datatype.BOOL:
        ok = kind == "b"
    elif datatype in _FLOATS:
        ok = kind in "iuf"
    else:
        ok = kind in "iu"
    if not ok:
        wanted = "booleans" if datatype is Datatype.BOOL else "numbers" if datatype in _FLOATS else "integers"
        raise InvalidInput(f"input '{name}': datatype {datatype.value} needs {wanted} in data")


def _cast(array: np.ndarray, datatype: Datatype, name: str) -> np.ndarray:
    target = NUMPY_DTYPES[datatype]
    if target.kind in "iu" and array.size:
        info = np.iinfo(target)
        if int(array.min()) < info.min or int(array.max()) > info.max:
            raise InvalidInput(f"input '{name}': values out of range for {datatype.value}")
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(target, copy=False)


def _big_integers(data: list[Any], datatype: Datatype, name: str, array: np.ndarray) -> np.ndarray:
    """JSON integers beyond int64 make NumPy fall back to float64 or objects: range-check them exactly."""
    flat = _flatten(data)
    if not flat or not all(type(item) is int for item in flat):
        return array
    info = np.iinfo(NUMPY_DTYPES[datatype])
    if min(flat) < info.min or max(flat) > info.max:
        raise InvalidInput(f"input '{name}': values out of range for {datatype.value}")
    return np.array(flat, dtype=NUMPY_DTYPES[datatype])


def decode_json_data(data: list[Any], datatype: Datatype, shape: list[int], name: str) -> np.ndarray:
    """Turn a JSON ``data`` list (flat or nested) into an array of ``shape``; 400 on any mismatch."""
    expected = element_count(shape)
    if datatype is Datatype.BYTES:
        flat = _flatten(data)
        if not all(isinstance(item, str) for item in flat):
            raise InvalidInput(f"input '{name}': BYTES data must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"input '{name}': data is not a regular array ({exc})") from None
        if array.dtype.kind in "fO" and NUMPY_DTYPES[datatype].kind in "iu":
            array = _big_integers(data, datatype, name, array)
        if array.dtype.kind == "O":
            raise InvalidInput(f"input '{name}': data holds nulls or mixed types")
        _check_kind(array, datatype, name)
        array = _cast(array, datatype, name)
    if array.size != expected:
        raise InvalidInput(f"input '{name}': {array.size} values for shape {shape} (needs {expected})")
    return array.reshape(shape)


def decode_binary_data(raw: bytes, datatype: Datatype, shape: list[int], name: str) -> np.ndarray:
    """Turn binary tensor bytes into an array of ``shape``; 400 when the byte count does not fit."""
    expected = element_count(shape)
    if datatype is Datatype.BYTES:
        items = _split_length_prefixed(raw, name)
        if len(items) != expected:
            raise InvalidInput(f"input '{name}': {len(items)} BYTES elements for shape {shape}")
        array = np.empty(len(items), dtype=object)
        array[:] = [item.decode("utf-8", errors="replace") for item in items]
        return array.reshape(shape)
    dtype = NUMPY_DTYPES[datatype].newbyteorder("<")
    if len(raw) != expected * dtype.itemsize:
        raise InvalidInput(
            f"input '{name}': {len(raw)} bytes for shape {shape} of {datatype.value} "
            f"(needs {expected * dtype.itemsize})"
        )
    array = np.frombuffer(raw, dtype=dtype).astype(NUMPY_DTYPES[datatype], copy=False)
    if datatype is Datatype.BOOL and array.size and np.any(np.frombuffer(raw, dtype=np.uint8) > 1):
        raise InvalidInput(f"input '{name}': BOOL bytes must be 0 or 1")
    return array.reshape(shape)


def _split_length_prefixed(raw: bytes, name: str) -> list[bytes]:
    items, position = [], 0
    while position < len(raw):
        if position + 4 > len(raw):
            raise InvalidInput(f"input '{name}': truncated BYTES length prefix")
        (length,) = struct.unpack_from("<I", raw, position)
        position += 4
        if position + length > len(raw):
            raise InvalidInput(f"input '{name}': truncated BYTES element")
        items.append(raw[position : position + length])
        position += length
    return items


def encode_json_data(array: np.ndarray) -> list[Any]:
    """Row-major flat list of an output, BYTES as text."""
    if array.dtype.kind in "OSU":
        return [
            item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
            for item in array.ravel()
        ]
    return array.ravel().tolist()


def encode_binary_data(array: np.ndarray) -> bytes:
    """Raw little-endian bytes of an output (BYTES length-prefixed)."""
    if array.dtype.kind in "OSU":
        parts = []
        for item in array.ravel():
            blob = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(blob)) + blob)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def split_binary_body(body: bytes, header_length: str) -> tuple[bytes, bytes]:
    """Split a binary-extension body into (JSON header, tensor bytes)."""
    try:
        length = int(header_length)
    except ValueError:
        raise InvalidInput(f"{BINARY_HEADER} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise InvalidInput(f"{BINARY_HEADER} {length} does not fit a body of {len(body)} bytes")
    return body[:length], body[length:]
