"""Small ONNX models around one ai.robe op, and sessions with the custom-op library, for the kernel tests.

Inputs are declared without shapes unless asked, so the op itself (not ONNX Runtime) meets bad shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from kernels.op_version import OP_VERSION
from kernels.reference import HashParams

DOMAIN = "ai.robe"
INT64, FLOAT = TensorProto.INT64, TensorProto.FLOAT

ort.set_default_logger_severity(3)  # the error tests would otherwise log every expected failure


def hash_attrs(params: HashParams) -> dict[str, list[int]]:
    return {name: getattr(params, name).tolist() for name in ("a1", "a2", "c", "g1", "g2")}


def _model(
    op: str,
    inputs: Sequence[tuple[str, int, Sequence[Any] | None]],
    out_type: int | None,
    attrs: dict[str, Any],
) -> bytes:
    node = helper.make_node(op, [name for name, _, _ in inputs], ["out"], domain=DOMAIN)
    for key, value in attrs.items():  # lists are ints attributes, even when empty
        kind = onnx.AttributeProto.INTS if isinstance(value, list) else None
        node.attribute.append(helper.make_attribute(key, value, attr_type=kind))
    graph_inputs = [helper.make_tensor_value_info(name, dtype, shape) for name, dtype, shape in inputs]
    # An output without a declared type takes the op's inferred type and shape.
    output = (
        helper.make_tensor_value_info("out", out_type, None) if out_type else onnx.ValueInfoProto(name="out")
    )
    graph = helper.make_graph([node], op, graph_inputs, [output])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, OP_VERSION)]
    )
    return model.SerializeToString()


def robe_model(attrs: dict[str, Any], ids_shape: Sequence[Any] | None = None) -> bytes:
    return _model(
        "RobeEmbedding", [("ids", INT64, ids_shape), ("M", FLOAT, None)], None if ids_shape else FLOAT, attrs
    )


def lma_model(attrs: dict[str, Any], ids_shape: Sequence[Any] | None = None) -> bytes:
    inputs = [
        ("ids", INT64, ids_shape),
        ("M", FLOAT, None),
        ("keys", INT64, None),
        ("offsets", INT64, None),
        ("signatures", TensorProto.UINT8, None),
    ]
    return _model("LmaEmbedding", inputs, None if ids_shape else FLOAT, attrs)


def vocab_model(ids_shape: Sequence[Any] | None = None) -> bytes:
    inputs = [("ids", INT64, ids_shape), ("keys", INT64, None), ("offsets", INT64, None)]
    return _model("VocabLookup", inputs, None if ids_shape else INT64, {})


def embedding_attrs(params: HashParams, dim: int, block_size: int, **extra: Any) -> dict[str, Any]:
    return {"embedding_dim": dim, "block_size": block_size, **hash_attrs(params), **extra}


def session(model: bytes, library: Path, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.register_custom_ops_library(str(library))
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
