"""Synthetic repository entries built with ``onnx.helper`` (standard ops only, random weights).

Used by the service tests (tiny models) and by ``python -m loadtest.service_bench`` (a DLRM-sized MLP). Needs
the ``onnx`` package, which the service itself never imports. Tensor names follow the repository
convention shared with ``export/``: CTR ``dense``/``categorical`` -> ``probability``; localization
``rssi`` -> ``longitude``, ``latitude``, ``floor``, ``building``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from service.repository import file_sha256

OPSET = 17
IR_VERSION = 8


@dataclass(frozen=True)
class CtrShape:
    """Sizes of a synthetic CTR model (a DLRM-like MLP over hashed embedding rows).

    Args:
        num_dense: dense features.
        num_categorical: categorical features.
        rows: rows of the shared embedding table (ids are taken modulo ``rows``).
        embedding_dim: embedding width.
        bottom: hidden widths of the dense MLP (its last width joins the embeddings).
        top: hidden widths of the top MLP before the single logit.
    """

    num_dense: int = 13
    num_categorical: int = 26
    rows: int = 1000
    embedding_dim: int = 4
    bottom: tuple[int, ...] = (8,)
    top: tuple[int, ...] = (8,)

    def __post_init__(self) -> None:
        if min(self.num_dense, self.num_categorical, self.rows, self.embedding_dim) < 1:
            raise ValueError("every CtrShape size must be >= 1")
        if not self.bottom or min(self.bottom + self.top, default=1) < 1:
            raise ValueError("bottom needs at least one width and all widths must be >= 1")

    @property
    def parameter_count(self) -> int:
        widths_bottom = (self.num_dense, *self.bottom)
        widths_top = (self.bottom[-1] + self.num_categorical * self.embedding_dim, *self.top, 1)
        mlp = sum(a * b + b for widths in (widths_bottom, widths_top) for a, b in pairwise(widths))
        return self.rows * self.embedding_dim + mlp


def _mlp(
    nodes: list[Any],
    inits: list[Any],
    x: str,
    widths: tuple[int, ...],
    prefix: str,
    rng: np.random.Generator,
    last_relu: bool,
) -> str:
    for layer, (fan_in, fan_out) in enumerate(pairwise(widths)):
        weight = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(np.float32)
        inits += [
            numpy_helper.from_array(weight, f"{prefix}{layer}_w"),
            numpy_helper.from_array(np.zeros(fan_out, np.float32) + 0.01, f"{prefix}{layer}_b"),
        ]
        nodes.append(helper.make_node("MatMul", [x, f"{prefix}{layer}_w"], [f"{prefix}{layer}_mm"]))
        nodes.append(
            helper.make_node("Add", [f"{prefix}{layer}_mm", f"{prefix}{layer}_b"], [f"{prefix}{layer}_z"])
        )
        x = f"{prefix}{layer}_z"
        if last_relu or layer < len(widths) - 2:
            nodes.append(helper.make_node("Relu", [x], [f"{prefix}{layer}_a"]))
            x = f"{prefix}{layer}_a"
    return x


def ctr_model(shape: CtrShape, seed: int = 0, probability_2d: bool = False) -> onnx.ModelProto:
    """``dense`` FP32 [B, D], ``categorical`` INT64 [B, F] -> ``probability`` FP32 [B] (or [B, 1])."""
    rng = np.random.default_rng(seed)
    table = (rng.standard_normal((shape.rows, shape.embedding_dim)) * 0.1).astype(np.float32)
    nodes: list[Any] = []
    inits: list[Any] = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array(shape.rows, np.int64), "rows"),
        numpy_helper.from_array(np.array([0, shape.num_categorical * shape.embedding_dim], np.int64), "flat"),
        numpy_helper.from_array(np.array([-1] if not probability_2d else [-1, 1], np.int64), "out_shape"),
    ]
    nodes += [
        helper.make_node("Mod", ["categorical", "rows"], ["row_ids"]),
        helper.make_node("Gather", ["table", "row_ids"], ["emb"]),  # (B, F, d)
        helper.make_node("Reshape", ["emb", "flat"], ["emb_flat"]),  # (B, F*d)
    ]
    bottom = _mlp(nodes, inits, "dense", (shape.num_dense, *shape.bottom), "bottom", rng, last_relu=True)
    nodes.append(helper.make_node("Concat", [bottom, "emb_flat"], ["joined"], axis=1))
    width = shape.bottom[-1] + shape.num_categorical * shape.embedding_dim
    logit = _mlp(nodes, inits, "joined", (width, *shape.top, 1), "top", rng, last_relu=False)
    nodes += [
        helper.make_node("Sigmoid", [logit], ["sigmoid"]),
        helper.make_node("Reshape", ["sigmoid", "out_shape"], ["probability"]),
    ]
    graph = helper.make_graph(
        nodes,
        "ctr",
        [
            helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", shape.num_dense]),
            helper.make_tensor_value_info("categorical", TensorProto.INT64, ["batch", shape.num_categorical]),
        ],
        [
            helper.make_tensor_value_info(
                "probability", TensorProto.FLOAT, ["batch"] + ([1] if probability_2d else [])
            )
        ],
        inits,
    )
    return _finish(graph)


def localization_model(num_aps: int = 520, hidden: int = 16, seed: int = 0) -> onnx.ModelProto:
    """``rssi`` FP32 [B, N] -> ``longitude``, ``latitude`` FP32 [B], ``floor``, ``building`` INT64 [B]."""
    rng = np.random.default_rng(seed)
    nodes: list[Any] = []
    inits: list[Any] = [
        numpy_helper.from_array(np.array(110.0, np.float32), "offset"),
        numpy_helper.from_array(np.array(1 / 210.0, np.float32), "scale"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
    ]
    nodes += [
        helper.make_node("Add", ["rssi", "offset"], ["shifted"]),
        helper.make_node("Mul", ["shifted", "scale"], ["scaled"]),
    ]
    features = _mlp(nodes, inits, "scaled", (num_aps, hidden), "body", rng, last_relu=True)
    outputs = []
    for name, size in (("longitude", 1), ("latitude", 1), ("floor", 5), ("building", 3)):
        head = _mlp(nodes, inits, features, (hidden, size), f"{name}_head", rng, last_relu=False)
        if size == 1:
            nodes.append(helper.make_node("Reshape", [head, "flat"], [name]))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"]))
        else:
            nodes.append(helper.make_node("ArgMax", [head], [name], axis=1, keepdims=0))
            outputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, ["batch"]))
    graph = helper.make_graph(
        nodes,
        "localization",
        [helper.make_tensor_value_info("rssi", TensorProto.FLOAT, ["batch", num_aps])],
        outputs,
        inits,
    )
    return _finish(graph)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _tensor_entries(values: Any) -> list[dict[str, Any]]:
    entries = []
    for value in values:
        dims = [-1 if dim.dim_param else dim.dim_value for dim in value.type.tensor_type.shape.dim]
        datatype = {TensorProto.FLOAT: "FP32", TensorProto.INT64: "INT64"}[value.type.tensor_type.elem_type]
        entries.append({"name": value.name, "datatype": datatype, "shape": dims})
    return entries


def write_entry(
    root: Path, name: str, version: str, model: onnx.ModelProto, task: str, **fields: Any
) -> Path:
    """Write ``root/name/version/{model.onnx,model.json}`` (model.json last) and return the directory."""
    directory = root / name / version
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "model.onnx"))
    weights = sum(numpy_helper.to_array(init).nbytes for init in model.graph.initializer)
    document = {
        "name": name,
        "version": version,
        "task": task,
        "inputs": _tensor_entries(model.graph.input),
        "outputs": _tensor_entries(model.graph.output),
        "embedding": {"method": "hash", "parameters": {}, "bytes": 0},
        "parameter_bytes": int(weights),
        "metrics": {},
        "dataset": "synthetic",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "onnx_sha256": file_sha256(directory / "model.onnx"),
        "custom_ops": False,
        **fields,
    }
    (directory / "model.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return directory
