"""Run directory -> verified model repository entry (DESIGN.md sections 4 and 5).

``export_run`` loads the checkpoint, exports the client-facing model with the dynamo exporter (each
embedding lookup one ``ai.robe`` node, see ``export.ops``), attaches the standard-op fallback functions,
writes ``model.onnx`` (+ ``model.onnx.data`` above the protobuf limit), ``verify.npz`` and
``model.json`` into a staging directory, verifies it (``export.verify``) and only then publishes it
as ``repository/name/version``. A failed verification leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from export import dlrm as export_dlrm
from export import graph, ops
from export.functions import ONNX_OPSET
from export.repository import (
    DATA_FILE,
    MODEL_FILE,
    VERIFY_FILE,
    RepositoryError,
    Task,
    TensorSpec,
    check_name,
    model_card,
    publish,
    resolve_version,
    staging_dir,
    write_card,
)
from export.verify import VerificationError, verify_model_dir
from training.dlrm.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from training.dlrm.model import DLRM

logger = logging.getLogger(__name__)

EXTERNAL_DATA_BYTES = (1 << 31) - (64 << 20)  # protobuf's 2 GiB limit, with room for the graph itself
HELD_OUT_ROWS = 256


class ExportError(Exception):
    """The run cannot be exported (bad input, failed conversion or failed verification)."""


@dataclass(frozen=True)
class ExportOptions:
    """Where and how to export.

    Args:
        repository: the model repository root.
        name: the model name.
        version: the version to write (None: the next free one).
        portable: write standard ONNX ops only (no ai.robe nodes; any onnxruntime, slower lookups).
        external_data_bytes: weights above this size go to ``model.onnx.data``.
        held_out_rows: rows compared between torch and onnxruntime.
    """

    repository: Path
    name: str
    version: int | None = None
    portable: bool = False
    external_data_bytes: int = EXTERNAL_DATA_BYTES
    held_out_rows: int = HELD_OUT_ROWS

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.held_out_rows < 1:
            raise ValueError(f"held_out_rows must be >= 1, got {self.held_out_rows}")
        if self.external_data_bytes < 0:
            raise ValueError("external_data_bytes must be >= 0")


def checkpoint_kind(run_dir: Path) -> str:
    """``dlrm`` or ``noble``: the ``kind`` of RUN_DIR/checkpoint.pt."""
    path = run_dir / "checkpoint.pt"
    if not run_dir.is_dir():
        raise ExportError(f"run directory {run_dir} does not exist")
    if not path.is_file():
        raise ExportError(f"{path} not found: is {run_dir} a training run directory?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ExportError(f"cannot read {path}: {exc}") from exc
    kind = state.get("kind") if isinstance(state, dict) else None
    if kind not in ("dlrm", "noble"):
        raise ExportError(f"{path} has kind {kind!r}; expected 'dlrm' or 'noble'")
    return str(kind)


def export_run(run_dir: Path, options: ExportOptions) -> Path:
    """Export ``run_dir`` into the repository and return the published version directory."""
    kind = checkpoint_kind(run_dir)
    try:
        version = resolve_version(options.repository, options.name, options.version)
    except RepositoryError as exc:
        raise ExportError(str(exc)) from exc
    staging = staging_dir(options.repository, options.name, version)
    try:
        if kind == "noble":
            card_fields = _export_noble(run_dir, staging)
        else:
            card_fields = _export_dlrm(run_dir, staging, options)
        card = model_card(options.name, version, staging, **card_fields)
        write_card(staging, card)
        try:
            report = verify_model_dir(staging)
        except VerificationError as exc:
            raise ExportError(f"verification failed, nothing published: {exc}") from exc
        card["verification"] = report.summary()
        write_card(staging, card)
        final = publish(staging, options.repository, options.name, version)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("published %s (sha256 %s)", final, card["onnx_sha256"])
    return final


def _export_noble(run_dir: Path, staging: Path) -> dict[str, Any]:
    try:
        from export.noble import export_noble  # the NObLe helper's module
    except ImportError as exc:
        raise ExportError(f"cannot export NObLe checkpoints: {exc}") from exc
    fields = dict(export_noble(run_dir, staging))
    fields.setdefault("task", Task.LOCALIZATION.value)
    return fields


def _export_dlrm(run_dir: Path, staging: Path, options: ExportOptions) -> dict[str, Any]:
    try:
        state = load_checkpoint(run_dir)
        model = model_from_checkpoint(state)
    except (CheckpointError, KeyError, RuntimeError, ValueError) as exc:
        raise ExportError(f"cannot load the DLRM checkpoint in {run_dir}: {exc}") from exc
    inputs = held_out_inputs(state, model, options.held_out_rows)
    proto = export_onnx(model, inputs, staging)
    if options.portable:
        proto = graph.portable(proto)
    save_model(proto, staging, options.external_data_bytes)
    reference = export_dlrm.ctr_model(model, exportable=False)
    with torch.no_grad():
        probability = reference(*(torch.from_numpy(v) for v in inputs.values())).numpy()
    bundle: dict[str, Any] = {f"input/{k}": v for k, v in inputs.items()}
    bundle.update({"output/probability": probability, "probe/ids": inputs["categorical"]})
    np.savez(staging / VERIFY_FILE, **bundle)
    return dlrm_card_fields(state, model, proto, options.portable)


def export_onnx(model: DLRM, inputs: dict[str, np.ndarray], model_dir: Path) -> onnx.ModelProto:
    """Export ``model`` with a dynamic batch; return the finalized ModelProto (ai.robe nodes + fallback
    functions) whose big weights stay in ``model_dir/model.onnx.data`` (never serialized with the graph)."""
    ops.register_schemas()
    module = export_dlrm.ctr_model(model, exportable=True)
    example = tuple(torch.from_numpy(v[:4].copy()) for v in inputs.values())
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet():
            program = torch.onnx.export(
                module, example, dynamo=True, opset_version=ONNX_OPSET, input_names=list(inputs),
                output_names=["probability"], dynamic_shapes=tuple({0: batch} for _ in inputs),
                custom_translation_table=ops.TRANSLATIONS, verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; its first line names the problem
        logger.debug("torch.onnx.export failed", exc_info=True)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"torch.onnx.export failed: {first_line}") from exc
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    program.save(model_dir / MODEL_FILE, external_data=True)
    return graph.finalize(onnx.load(str(model_dir / MODEL_FILE), load_external_data=False))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's progress prints and warnings (logged at debug level instead)."""
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(_DebugStream()):
            warnings.simplefilter("ignore")
            yield
    finally:
        torch_logger.setLevel(level)


class _DebugStream:
    def write(self, text: str) -> int:
        if text.strip():
            logger.debug("torch.onnx: %s", text.strip())
        return len(text)

    def flush(self) -> None:
        pass


def save_model(proto: onnx.ModelProto, model_dir: Path, external_data_bytes: int) -> None:
    """Write ``model.onnx``; the weights stay in ``model.onnx.data`` only above ``external_data_bytes``.

    ``proto`` references ``model_dir/model.onnx.data`` (as ``export_onnx`` left it).
    """
    data = model_dir / DATA_FILE
    weight_bytes = data.stat().st_size if data.exists() else 0
    if weight_bytes > external_data_bytes:
        logger.info("%.2f GB of weights: keeping them in %s", weight_bytes / 1e9, DATA_FILE)
    else:
        if data.exists():
            onnx.load_external_data_for_model(proto, str(model_dir))
            data.unlink()
    onnx.save_model(proto, str(model_dir / MODEL_FILE))


def held_out_inputs(state: dict[str, Any], model: DLRM, rows: int) -> dict[str, np.ndarray]:
    """Raw model inputs of ``rows`` held-out rows: the test split of the training data when readable,
    else ids drawn from the model's vocabulary plus random ids (logged)."""
    num_dense = model.config.num_dense
    split = _test_split(state.get("data") or {})
    if split is not None and len(split[1]):
        dense, categorical = split[0][:rows], split[1][:rows]
    else:
        logger.warning("training data not readable: verifying on synthetic held-out rows")
        dense, categorical = _synthetic_rows(state, model, rows)
    inputs = {"dense": np.array(dense, dtype=np.float32)} if num_dense else {}  # copies: writable
    inputs["categorical"] = np.array(categorical, dtype=np.int64)
    return inputs


def _test_split(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    path = data.get("path")
    if not path or not Path(path).exists():
        return None
    try:
        from training.data.shards import prepare

        shards = prepare(Path(path))  # a shard directory, or the cache the trainer preprocessed into
        split = shards.split("test")
        if not len(split.categorical):
            split = shards.split("val")
        return np.asarray(split.dense[:HELD_OUT_ROWS * 4]), np.asarray(split.categorical[:HELD_OUT_ROWS * 4])
    except Exception as exc:  # any unreadable data only downgrades to synthetic rows
        logger.warning("cannot read held-out rows from %s: %s", path, exc)
        return None


def _synthetic_rows(state: dict[str, Any], model: DLRM, rows: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    num_features = model.config.num_features
    categorical = rng.integers(0, 1 << 62, size=(rows, num_features), dtype=np.int64)
    keys = state["embedding"].get("arrays", {}).get("keys")
    if keys is not None and len(keys):
        known = rng.random((rows, num_features)) < 0.7
        categorical = np.where(known, rng.choice(np.asarray(keys), size=(rows, num_features)), categorical)
    dense = rng.integers(-1, 2000, size=(rows, model.config.num_dense)).astype(np.float32)
    return dense, categorical


def dlrm_card_fields(state: dict[str, Any], model: DLRM, proto: onnx.ModelProto,
                     portable: bool) -> dict[str, Any]:
    """model.json fields of a DLRM (besides name, version, created and sha256)."""
    num_dense, num_features = model.config.num_dense, model.config.num_features
    inputs = [TensorSpec("dense", "FP32", (-1, num_dense))] if num_dense else []
    inputs.append(TensorSpec("categorical", "INT64", (-1, num_features)))
    embedding = state["embedding"]
    embedding_bytes = int(model.compressed_embedding.parameter_bytes())
    array_bytes = int(model.compressed_embedding.array_bytes())
    mlp_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                    if not n.startswith("embedding."))
    data = state.get("data") or {}
    parameters = {**embedding["config"], "hash": embedding.get("hash")}
    return {
        "task": Task.CTR,
        "inputs": inputs,
        "outputs": [TensorSpec("probability", "FP32", (-1,))],
        "embedding": {"method": embedding["method"], "parameters": parameters, "bytes": embedding_bytes,
                      "array_bytes": array_bytes},
        "parameter_bytes": int(embedding_bytes + mlp_bytes),
        "array_bytes": array_bytes,  # the embedding weights alone (table or shared array), as papers count
        "metrics": _metrics(state.get("metrics") or {}),
        "dataset": _dataset_name(data),
        "custom_ops": graph.uses_custom_ops(proto),
        # The service applies ``preprocessing`` before the graph; this graph takes raw values itself.
        "preprocessing": {spec.name: "none" for spec in inputs},
        "in_graph_preprocessing": {"dense": export_dlrm.DENSE_PREPROCESSING} if num_dense else {},
        "model_config": state["model_config"],
        "graph": {"opset": ONNX_OPSET, "portable": portable, **graph.node_counts(proto)},
    }


def _dataset_name(data: dict[str, Any]) -> str:
    meta = data.get("meta") or {}
    return str(data.get("dataset") or meta.get("dataset") or "unknown")


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = ("auc", "logloss", "steps", "samples_per_s", "compression")
    return {k: metrics[k] for k in keys if k in metrics}
