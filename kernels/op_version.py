"""Which ai.robe operator version an ONNX file imports, read without the onnx package (the service has none).

DESIGN.md section 4: ai.robe version 2 implements hash version 2; a model importing another version of
the domain is refused, with an error naming the version. ``model_op_version`` scans only the top-level
fields of the ``ModelProto`` (``opset_import`` is field 8, each ``OperatorSetIdProto`` a ``domain`` string
(field 1) and a ``version`` varint (field 2)) and seeks over the others, the graph and its weights included.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from kernels.reference import HASH_VERSION

DOMAIN = "ai.robe"
OP_VERSION = HASH_VERSION
_OPSET_IMPORT = 8
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class OpVersionError(ValueError):
    """A model imports ai.robe at a version this build does not implement, or is no readable ONNX file."""


def _varint(data: BinaryIO) -> int | None:
    value, shift = 0, 0
    while True:
        byte = data.read(1)
        if not byte:
            if shift:
                raise OpVersionError("truncated varint")
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise OpVersionError("malformed varint")


def _opset(payload: bytes) -> tuple[str, int]:
    """(domain, version) of one serialized OperatorSetIdProto."""
    import io

    data, domain, version = io.BytesIO(payload), "", 1
    while (tag := _varint(data)) is not None:
        field, kind = tag >> 3, tag & 7
        if kind == _VARINT:
            value = _varint(data) or 0
            version = value if field == 2 else version
        elif kind == _LENGTH:
            raw = data.read(_varint(data) or 0)
            domain = raw.decode("utf-8", "replace") if field == 1 else domain
        else:
            raise OpVersionError(f"unexpected wire type {kind} in an opset import")
    return domain, version


def model_op_version(path: Path) -> int | None:
    """The ai.robe version ``path`` imports, or None when it imports no ai.robe operator."""
    with path.open("rb") as data:
        while (tag := _varint(data)) is not None:
            field, kind = tag >> 3, tag & 7
            if kind == _VARINT:
                _varint(data)
            elif kind == _FIXED64:
                data.seek(8, 1)
            elif kind == _FIXED32:
                data.seek(4, 1)
            elif kind == _LENGTH:
                length = _varint(data) or 0
                if field == _OPSET_IMPORT:
                    domain, version = _opset(data.read(length))
                    if domain == DOMAIN:
                        return version
                else:
                    data.seek(length, 1)
            else:
                raise OpVersionError(f"{path} is not an ONNX model (wire type {kind})")
    return None


def check_model_op_version(path: Path) -> None:
    """Raise OpVersionError when ``path`` imports ai.robe at a version other than ``OP_VERSION``."""
    version = model_op_version(path)
    if version is not None and version != OP_VERSION:
        raise OpVersionError(
            f"model uses ai.robe operators version {version} (hash version {version}); this build implements "
            f"version {OP_VERSION}: export the model again")
