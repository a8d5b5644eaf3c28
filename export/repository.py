"""The model repository on disk (DESIGN.md section 5): version directories, model.json, sha256.

::

    models/<name>/<version>/model.onnx        (+ model.onnx.data when weights exceed 2 GB)
    models/<name>/<version>/model.json
    models/<name>/<version>/verify.npz        held-out rows + torch's outputs (``python -m export.verify``)

A version is written into a hidden temporary directory beside its final place and renamed only once it
is complete and verified, so a service polling the repository never sees half a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
DATA_FILE = "model.onnx.data"
CARD_FILE = "model.json"
VERIFY_FILE = "verify.npz"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RepositoryError(ValueError):
    """A bad model name, version or repository layout."""


class Task(StrEnum):
    CTR = "ctr"
    LOCALIZATION = "localization"


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the Open Inference Protocol describes it.

    Args:
        name: tensor name in the ONNX graph.
        datatype: v2 datatype string ("FP32", "INT64").
        shape: dimensions, -1 for the batch.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in ("FP32", "INT64"):
            raise ValueError(f"unsupported datatype {self.datatype!r}")


def check_name(name: str) -> str:
    """Return ``name`` when it is a valid model name (letters, digits, ``.``, ``_``, ``-``)."""
    if not _NAME.match(name):
        raise RepositoryError(f"invalid model name {name!r}: use letters, digits, '.', '_' and '-'")
    return name


def versions(repository: Path, name: str) -> list[int]:
    """Existing numeric versions of ``name``, sorted."""
    folder = repository / name
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def resolve_version(repository: Path, name: str, version: int | None) -> int:
    """The version to write: ``version`` when free, else the next one after the existing versions."""
    existing = versions(repository, check_name(name))
    if version is None:
        return (existing[-1] + 1) if existing else 1
    if version < 1:
        raise RepositoryError(f"version must be a positive integer, got {version}")
    if version in existing:
        raise RepositoryError(f"{repository / name / str(version)} already exists; pick another --version")
    return version


def staging_dir(repository: Path, name: str, version: int) -> Path:
    """A fresh hidden directory beside the final version directory (same file system: rename is atomic)."""
    folder = repository / check_name(name) / f".{version}.partial"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def publish(staging: Path, repository: Path, name: str, version: int) -> Path:
    """Move a complete, verified staging directory to ``repository/name/version``."""
    final = repository / name / str(version)
    if final.exists():
        raise RepositoryError(f"{final} appeared while exporting; not overwriting it")
    staging.rename(final)
    return final


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_card(name: str, version: int, model_dir: Path, task: Task | str,
               inputs: list[TensorSpec | dict[str, Any]], outputs: list[TensorSpec | dict[str, Any]],
               **fields: Any) -> dict[str, Any]:
    """model.json content: the DESIGN.md section 5 keys, in that order, then ``fields``.

    ``fields`` must hold ``embedding``, ``parameter_bytes``, ``metrics``, ``dataset`` and ``custom_ops``;
    extra keys (``preprocessing``, ``verification``, ...) follow them.
    """
    required = ("embedding", "parameter_bytes", "metrics", "dataset", "custom_ops")
    missing = [key for key in required if key not in fields]
    if missing:
        raise ValueError(f"model card needs {missing}")
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "task": Task(task).value,
        "inputs": [_spec(s) for s in inputs],
        "outputs": [_spec(s) for s in outputs],
        **{key: fields.pop(key) for key in required[:4]},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "onnx_sha256": sha256_file(model_dir / MODEL_FILE),
        "custom_ops": fields.pop("custom_ops"),
    }
    data = model_dir / DATA_FILE
    if data.exists():
        card["onnx_data_sha256"] = sha256_file(data)
    card.update(fields)
    return card


def _spec(spec: TensorSpec | dict[str, Any]) -> dict[str, Any]:
    if isinstance(spec, dict):
        spec = TensorSpec(spec["name"], spec["datatype"], tuple(spec["shape"]))
    out = asdict(spec)
    out["shape"] = list(spec.shape)
    return out


def write_card(model_dir: Path, card: dict[str, Any]) -> Path:
    path = model_dir / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path


def read_card(model_dir: Path) -> dict[str, Any]:
    path = model_dir / CARD_FILE
    if not path.is_file():
        raise RepositoryError(f"{path} not found: {model_dir} is not a model version directory")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RepositoryError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict):
        raise RepositoryError(f"{path} must hold a JSON object")
    return card
