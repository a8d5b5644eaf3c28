"""Engine benchmark models: one DLRM architecture per method, random weights, through the real export path.

Each method gets the same architecture (the ``training.dlrm.model`` preset of the shape) and a synthetic
vocabulary: feature ``f`` knows the ids ``1 .. rows[f]`` (0 is the missing value). ``full`` keeps a row per
known id; ``hash``, ``robe`` and ``lma`` get the shape's compressed budget (``Shape.robe_bytes``): the hashing
trick as that many floats of table rows, ROBE-Z as one array, LMA as learned signatures for the smallest
(most frequent) ids of each feature plus an array filling the rest of the budget.

``export_model`` writes ``model.onnx`` (+ ``model.onnx.data``) with ``export.exporter`` exactly as
``python -m export`` does, plus two derived graphs beside it: ``embedding.onnx`` (the lookup stage alone,
sharing the external weights file) and ``model.int8.onnx`` (MLPs quantized to int8 with onnxruntime's
dynamic quantization). A ``bench.json`` stamp lets a later run reuse the files. ``to_repository`` links
an exported model into a model repository (``name/1/model.onnx`` + ``model.json``) the service can load.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import ModelProto, helper

from kernels import reference as ref
from loadtest.shapes import NUM_DENSE, Shape
from training.dlrm import budget as sizing
from training.dlrm.embeddings import (
    CompressedEmbedding,
    FullConfig,
    FullEmbedding,
    HashConfig,
    HashEmbedding,
    LmaConfig,
    LmaEmbedding,
    RobeConfig,
    RobeEmbedding,
    Signatures,
)
from training.dlrm.model import DLRM, DLRMConfig
from training.dlrm.signatures import token_bytes

logger = logging.getLogger(__name__)

MODEL_FILE, STAGE_FILE, INT8_FILE = "model.onnx", "embedding.onnx", "model.int8.onnx"
STAMP_FILE = "bench.json"
SIGNATURE_FRACTION = 0.25  # LMA's share of the budget spent on keys and signatures (the trainer's default)


class Method(StrEnum):
    FULL = "full"
    HASH = "hash"
    ROBE = "robe"
    LMA = "lma"


@dataclass(frozen=True)
class ExportedModel:
    """Paths of one method's benchmark models.

    Args:
        method: the embedding method.
        directory: where the files live.
        parameter_bytes: the embedding's ``parameter_bytes()`` (weights + tables served with it).
    """

    method: Method
    directory: Path
    parameter_bytes: int

    @property
    def model(self) -> Path:
        return self.directory / MODEL_FILE

    @property
    def stage(self) -> Path:
        return self.directory / STAGE_FILE

    @property
    def int8(self) -> Path:
        return self.directory / INT8_FILE


def vocabulary(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Keys ``1 .. rows[f]`` of every feature, concatenated, and offsets [F+1]."""
    keys = np.concatenate([np.arange(1, rows + 1, dtype=np.int64) for rows in shape.rows])
    offsets = np.concatenate([[0], np.cumsum(shape.rows)]).astype(np.int64)
    return keys, offsets


def build_embedding(method: Method, shape: Shape, seed: int = 0) -> CompressedEmbedding:
    """The embedding of ``method`` for ``shape`` with random weights."""
    num_features, dim, block = shape.num_features, shape.embedding_dim, shape.block_size
    fixed = sizing.hash_param_bytes(num_features, dim // block)
    if method is Method.FULL:
        keys, offsets = vocabulary(shape)
        return FullEmbedding(FullConfig(num_features, dim), keys, offsets)
    if method is Method.HASH:
        total_rows = (shape.robe_bytes - fixed) // (dim * sizing.FLOAT_BYTES)
        rows = sizing.hash_table_rows(shape.rows, total_rows)
        return HashEmbedding(HashConfig(num_features, dim, rows=rows, seed=seed))
    if method is Method.ROBE:
        return RobeEmbedding(RobeConfig(num_features, dim, memory_size=shape.robe_floats, block_size=block,
                                        seed=seed))
    signature_count = int(SIGNATURE_FRACTION * shape.robe_bytes) // token_bytes(ref.DEFAULT_NUM_MINHASHES)
    signatures = _signatures(shape, signature_count, seed)
    memory = (shape.robe_bytes - signatures.num_bytes - fixed) // sizing.FLOAT_BYTES
    config = LmaConfig(num_features, dim, memory_size=memory, block_size=block, seed=seed)
    return LmaEmbedding(config, signatures)


def _signatures(shape: Shape, count: int, seed: int) -> Signatures:
    """Random signatures for the smallest ids of each feature, ``count`` in all (shared out by rows)."""
    per_feature = sizing.hash_table_rows(shape.rows, max(count, shape.num_features))
    keys = np.concatenate([np.arange(1, n + 1, dtype=np.int64) for n in per_feature])
    offsets = np.concatenate([[0], np.cumsum(per_feature)]).astype(np.int64)
    rng = np.random.default_rng(seed)
    signatures = rng.integers(0, 256, size=(len(keys), ref.DEFAULT_NUM_MINHASHES)).astype(ref.SIGNATURE_DTYPE)
    return Signatures(keys, offsets, signatures)


def build_model(method: Method, shape: Shape, seed: int = 0) -> DLRM:
    torch.manual_seed(seed)
    config = DLRMConfig.preset(shape.name.value, num_dense=NUM_DENSE, num_features=shape.num_features)
    return DLRM(config, build_embedding(method, shape, seed)).eval()


def export_model(method: Method, shape: Shape, directory: Path, quantize: bool = True) -> ExportedModel:
    """Export (or reuse, when ``bench.json`` matches) the model of ``method`` into ``directory``."""
    stamp = {"method": method.value, "shape": asdict(shape), "quantize": quantize}
    stamp_path = directory / STAMP_FILE
    if stamp_path.is_file():
        cached = json.loads(stamp_path.read_text())
        if cached["stamp"] == json.loads(json.dumps(stamp)):
            logger.info("reusing %s", directory)
            return ExportedModel(method, directory, cached["parameter_bytes"])
    from export.exporter import EXTERNAL_DATA_BYTES, export_onnx, save_model

    directory.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s (%s shape) to %s", method.value, shape.name.value, directory)
    model = build_model(method, shape)
    parameter_bytes = model.compressed_embedding.parameter_bytes()
    rng = np.random.default_rng(0)
    inputs: dict[str, np.ndarray] = {"dense": rng.random((8, NUM_DENSE), dtype=np.float32),
                                     "categorical": np.ones((8, shape.num_features), dtype=np.int64)}
    proto = export_onnx(model, inputs, directory)
    del model
    gc.collect()
    save_model(proto, directory, EXTERNAL_DATA_BYTES)
    onnx.save_model(stage_model(proto), str(directory / STAGE_FILE))
    if quantize:
        quantize_mlps(directory / MODEL_FILE, directory / INT8_FILE)
    stamp_path.write_text(json.dumps({"stamp": stamp, "parameter_bytes": parameter_bytes}, indent=2) + "\n")
    return ExportedModel(method, directory, parameter_bytes)


def stage_model(model: ModelProto) -> ModelProto:
    """The embedding stage alone: ``categorical`` -> embeddings [B, F, d] (lookup, plus the table Gather
    of full and hash). Initializers keep their external-data references, so the graph must be saved in
    the model's own directory."""
    from export.graph import EMBEDDING_OUTPUT, ROWS_OUTPUT

    produced = {out: node for node in model.graph.node for out in node.output}
    if EMBEDDING_OUTPUT in produced:
        target = EMBEDDING_OUTPUT
    else:
        gathers = (n for n in model.graph.node if n.op_type == "Gather" and ROWS_OUTPUT in n.input)
        target = next(gathers).output[0]
    seen: set[str] = set()
    kept: set[int] = set()
    pending = [target]
    while pending:
        name = pending.pop()
        node = produced.get(name)
        if node is None or name in seen:
            continue
        seen.add(name)
        kept.add(id(node))
        pending.extend(node.input)
    ordered = [n for n in model.graph.node if id(n) in kept]  # the graph's (topological) order
    inputs = {name for node in ordered for name in node.input}
    graph = helper.make_graph(
        ordered, "embedding_stage", [i for i in model.graph.input if i.name in inputs],
        [helper.make_tensor_value_info(target, onnx.TensorProto.FLOAT, None)],
        initializer=[t for t in model.graph.initializer if t.name in inputs],
    )
    stage = helper.make_model(graph, opset_imports=model.opset_import, functions=model.functions)
    stage.ir_version = model.ir_version
    return stage


def quantize_mlps(source: Path, target: Path) -> None:
    """int8 weights for every MatMul/Gemm (onnxruntime dynamic quantization); lookups stay float."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    external = (source.parent / (source.name + ".data")).exists()
    logging.disable(logging.WARNING)  # the quantizer warns on the root logger about optional pre-processing
    try:
        quantize_dynamic(source, target, op_types_to_quantize=["MatMul", "Gemm"], weight_type=QuantType.QInt8,
                         use_external_data_format=external)
    finally:
        logging.disable(logging.NOTSET)


def to_repository(model: ExportedModel, shape: Shape, repository: Path, name: str) -> Path:
    """``repository/name/1``: hard links to the exported files (copies across file systems) + model.json."""
    from export.repository import DATA_FILE, TensorSpec, model_card, write_card

    version_dir = repository / name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    for source in (model.model, model.directory / DATA_FILE):
        target = version_dir / source.name
        target.unlink(missing_ok=True)  # a re-export writes new files: never keep a stale link
        if source.exists():
            try:
                os.link(source, target)
            except OSError:
                target.write_bytes(source.read_bytes())
    inputs: list[TensorSpec | dict[str, Any]] = [TensorSpec("dense", "FP32", (-1, NUM_DENSE)),
                                                 TensorSpec("categorical", "INT64", (-1, shape.num_features))]
    card = model_card(
        name, 1, version_dir, "ctr", inputs, [TensorSpec("probability", "FP32", (-1,))],
        embedding={"method": model.method.value, "bytes": model.parameter_bytes},
        parameter_bytes=model.parameter_bytes, metrics={}, dataset="random weights (throughput benchmark)",
        custom_ops=True, preprocessing={"dense": "none", "categorical": "none"},
    )  # fmt: skip
    write_card(version_dir, card)
    return version_dir
