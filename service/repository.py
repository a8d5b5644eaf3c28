"""The model repository on disk (DESIGN.md section 5): ``<root>/<name>/<version>/model.{onnx,json}``.

This module only reads and checks files; loading sessions and serving are elsewhere. Directory names are
authoritative: ``model.json`` must agree with them. Names starting with ``.`` or ``_`` are ignored, so a
writer can stage a version under ``.tmp`` and rename it into place (or simply write ``model.json`` last).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from service.tensors import Datatype, datatype_from_name

logger = logging.getLogger(__name__)

MANIFEST = "model.json"
MODEL_FILE = "model.onnx"
MAX_ID = 2**62


class ManifestError(ValueError):
    """A ``model.json`` that cannot be served, with the reason in its message."""


class Task(StrEnum):
    """What a model predicts; decides the domain predict endpoint's record format."""

    CTR = "ctr"
    LOCALIZATION = "localization"


class Preprocessing(StrEnum):
    """Named transforms the service applies to an input before the graph sees it.

    ``log1p_clip0``: ``x -> log(1 + max(x, 0))``, the usual Criteo dense-feature transform.
    """

    NONE = "none"
    LOG1P_CLIP0 = "log1p_clip0"


@dataclass(frozen=True)
class TensorSpec:
    """An input or output as ``model.json`` declares it; ``shape[0] == -1`` is the batch.

    Args:
        name: tensor name in the ONNX graph.
        datatype: v2 datatype.
        shape: dimensions, ``-1`` for variable ones.
    """

    name: str
    datatype: Datatype
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.shape or self.shape[0] != -1:
            raise ManifestError(
                f"tensor '{self.name}': shape must start with -1 (batch), got {list(self.shape)}"
            )
        if any(dim < -1 for dim in self.shape):
            raise ManifestError(f"tensor '{self.name}': bad shape {list(self.shape)}")

    @property
    def sample_size(self) -> int | None:
        """Elements per sample when every non-batch dimension is fixed, else None."""
        rest = self.shape[1:]
        return None if any(dim < 0 for dim in rest) else math.prod(rest)


@dataclass(frozen=True)
class ModelManifest:
    """A parsed and checked ``model.json``.

    Args:
        name: model name (the directory name).
        version: version (the directory name).
        task: ``ctr`` or ``localization``.
        inputs: graph inputs.
        outputs: graph outputs.
        onnx_sha256: expected SHA-256 of ``model.onnx``.
        custom_ops: whether the graph uses ``ai.robe`` operators.
        parameter_bytes: bytes of everything the model needs at serving time.
        preprocessing: input name -> transform applied by the service.
        document: the whole ``model.json`` (embedding, metrics, dataset, created, ...).
    """

    name: str
    version: str
    task: Task
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    onnx_sha256: str
    custom_ops: bool
    parameter_bytes: int
    preprocessing: dict[str, Preprocessing] = field(default_factory=dict)
    document: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.preprocessing) - {spec.name for spec in self.inputs}
        if unknown:
            raise ManifestError(f"preprocessing names unknown inputs: {sorted(unknown)}")
        _check_task_tensors(self)

    def input(self, name: str) -> TensorSpec | None:
        """The input called ``name``, if any."""
        return next((spec for spec in self.inputs if spec.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        """The output called ``name``, if any."""
        return next((spec for spec in self.outputs if spec.name == name), None)

    @property
    def method(self) -> str | None:
        """Embedding method (``full``, ``hash``, ``robe``, ``lma``, ...) when the manifest says."""
        embedding = self.document.get("embedding")
        return str(embedding.get("method")) if isinstance(embedding, dict) and "method" in embedding else None


_TASK_TENSORS: dict[Task, tuple[dict[str, tuple[Datatype, ...]], dict[str, tuple[Datatype, ...]]]] = {
    Task.CTR: ({"categorical": (Datatype.INT64,)}, {"probability": (Datatype.FP32, Datatype.FP64)}),
    Task.LOCALIZATION: (
        {"rssi": (Datatype.FP32,)},
        {
            "longitude": (Datatype.FP32, Datatype.FP64),
            "latitude": (Datatype.FP32, Datatype.FP64),
            "floor": (Datatype.INT64, Datatype.INT32),
            "building": (Datatype.INT64, Datatype.INT32),
        },
    ),
}


def _check_task_tensors(manifest: ModelManifest) -> None:
    needed_inputs, needed_outputs = _TASK_TENSORS[manifest.task]
    for kind, needed, present in (
        ("input", needed_inputs, manifest.inputs),
        ("output", needed_outputs, manifest.outputs),
    ):
        by_name = {spec.name: spec for spec in present}
        for name, datatypes in needed.items():
            spec = by_name.get(name)
            if spec is None or spec.datatype not in datatypes:
                wanted = "/".join(datatype.value for datatype in datatypes)
                raise ManifestError(f"task '{manifest.task.value}' needs {kind} '{name}' of {wanted}")
    dense = manifest.input("dense")
    if manifest.task is Task.CTR and dense is not None and dense.datatype is not Datatype.FP32:
        raise ManifestError("input 'dense' must be FP32")


def _tensor_specs(document: dict[str, Any], key: str) -> tuple[TensorSpec, ...]:
    entries = document.get(key)
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"'{key}' must be a non-empty list")
    specs = []
    for entry in entries:
        try:
            specs.append(
                TensorSpec(
                    str(entry["name"]), datatype_from_name(str(entry["datatype"])), tuple(entry["shape"])
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"bad entry in '{key}': {exc}") from None
    return tuple(specs)


def _preprocessing(document: dict[str, Any]) -> dict[str, Any]:
    """``preprocessing``: input name -> transform. A string only describes what the graph itself does."""
    value = document.get("preprocessing") or {}
    if isinstance(value, str):
        return {}
    if not isinstance(value, dict):
        raise ManifestError("'preprocessing' must map input names to transforms")
    return value


def read_manifest(version_dir: Path) -> ModelManifest:
    """Parse and check ``version_dir/model.json``; raises ManifestError with a readable reason."""
    path = version_dir / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestError(f"{path} is not a JSON object")
    name, version = version_dir.parent.name, version_dir.name
    if str(document.get("name")) != name or str(document.get("version")) != version:
        raise ManifestError(
            f"model.json says {document.get('name')!r} version {document.get('version')!r} "
            f"but lives in {name}/{version}/"
        )
    try:
        task = Task(str(document.get("task")))
        preprocessing = {key: Preprocessing(value) for key, value in _preprocessing(document).items()}
        sha = str(document["onnx_sha256"]).lower()
    except (ValueError, KeyError, AttributeError) as exc:
        raise ManifestError(f"bad model.json field: {exc}") from None
    if len(sha) != 64 or any(char not in "0123456789abcdef" for char in sha):
        raise ManifestError("onnx_sha256 must be 64 hex digits")
    return ModelManifest(
        name=name,
        version=version,
        task=task,
        inputs=_tensor_specs(document, "inputs"),
        outputs=_tensor_specs(document, "outputs"),
        onnx_sha256=sha,
        custom_ops=bool(document.get("custom_ops", False)),
        parameter_bytes=int(document.get("parameter_bytes") or 0),
        preprocessing=preprocessing,
        document=document,
    )


def version_sort_key(version: str) -> tuple[int, int, str]:
    """Numeric versions sort by value and after non-numeric ones."""
    return (1, int(version), "") if version.isdigit() else (0, 0, version)


def scan_repository(root: Path) -> dict[str, list[str]]:
    """Model name -> its versions (oldest first) that have both ``model.json`` and ``model.onnx``."""
    models: dict[str, list[str]] = {}
    if not root.is_dir():
        return models
    for model_dir in sorted(root.iterdir()):
        if not model_dir.is_dir() or model_dir.name.startswith((".", "_")):
            continue
        versions = [
            version_dir.name
            for version_dir in model_dir.iterdir()
            if version_dir.is_dir()
            and not version_dir.name.startswith((".", "_"))
            and (version_dir / MANIFEST).is_file()
            and (version_dir / MODEL_FILE).is_file()
        ]
        if versions:
            models[model_dir.name] = sorted(versions, key=version_sort_key)
    return models


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(version_dir: Path) -> tuple[tuple[int, int], ...]:
    """(mtime, size) of the version's files: a failed version is retried only when this changes."""
    stats = []
    for name in (MANIFEST, MODEL_FILE):
        try:
            stat = (version_dir / name).stat()
            stats.append((stat.st_mtime_ns, stat.st_size))
        except OSError:
            stats.append((0, -1))
    return tuple(stats)
