"""Post-processing of exported ONNX graphs: fallback functions, inlining, node counts, lookup probes.

Everything here works on a ModelProto whose big initializers may still live in an external file
(``onnx.load(..., load_external_data=False)``), so a model above the 2 GB protobuf limit is never
serialized in one piece.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
from onnx import ModelProto, NodeProto, TensorProto, helper, numpy_helper
from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

from export.functions import DOMAIN, DOMAIN_VERSION, PRIVATE_DOMAIN, all_functions, hash_rows

logger = logging.getLogger(__name__)

ROWS_OUTPUT = "lookup_rows"  # full and hash: the table row of every id, int64 [B, F]
EMBEDDING_OUTPUT = "lookup_embedding"  # robe and lma: the embedding, float [B, F, d]
TABLE_ROLES = {  # the lookup node's inputs, renamed to "lookup_<role>" so they can be found after inlining
    "RobeEmbedding": ("ids", "memory"),
    "LmaEmbedding": ("ids", "memory", "keys", "offsets", "signatures"),
    "VocabLookup": ("ids", "keys", "offsets"),
    "HashRows": ("ids",),
}
LOOKUP_OPS = {"RobeEmbedding": EMBEDDING_OUTPUT, "LmaEmbedding": EMBEDDING_OUTPUT, "VocabLookup": ROWS_OUTPUT,
              "HashRows": ROWS_OUTPUT}


def lookup_nodes(model: ModelProto) -> list[NodeProto]:
    """The embedding lookup nodes (ai.robe ops and the private HashRows) of the main graph."""
    return [n for n in model.graph.node if n.domain in (DOMAIN, PRIVATE_DOMAIN) and n.op_type in LOOKUP_OPS]


def finalize(model: ModelProto) -> ModelProto:
    """Give each lookup output its well-known name, attach the fallback functions, inline HashRows.

    The result holds ai.robe nodes (each with a model-local function of the same domain and name) and
    standard ops; the private domain is gone.
    """
    nodes = lookup_nodes(model)
    if len(nodes) != 1:
        raise ValueError(f"expected exactly one embedding lookup node, found {len(nodes)}")
    lookup = nodes[0]
    renames = {lookup.output[0]: LOOKUP_OPS[lookup.op_type]}
    renames.update({name: table_name(role) for role, name in zip(TABLE_ROLES[lookup.op_type], lookup.input,
                                                                   strict=True) if role != "ids"})
    taken = {name for node in model.graph.node for name in node.output}
    taken |= {tensor.name for tensor in model.graph.initializer}
    if taken & set(renames.values()):
        raise ValueError(f"the exported graph already uses one of the names {sorted(renames.values())}")
    for old, new in renames.items():
        _rename_value(model.graph, old, new)
    used = {n.op_type for n in model.graph.node if n.domain == DOMAIN}
    del model.functions[:]
    functions = all_functions()
    model.functions.extend(functions[name] for name in sorted(used))
    if any(n.domain == PRIVATE_DOMAIN for n in model.graph.node):
        model.functions.append(hash_rows())
        model = onnx.inliner.inline_selected_functions(model, [(PRIVATE_DOMAIN, "HashRows")])
    _set_opsets(model, with_custom=bool(used))
    return model


def portable(model: ModelProto) -> ModelProto:
    """The same model in standard ops only: every model-local function inlined, no ai.robe import."""
    inlined = onnx.inliner.inline_local_functions(model)
    del inlined.functions[:]
    _set_opsets(inlined, with_custom=False)
    return inlined


def _set_opsets(model: ModelProto, with_custom: bool) -> None:
    kept = [o for o in model.opset_import if o.domain not in (DOMAIN, PRIVATE_DOMAIN)]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    if with_custom:
        model.opset_import.append(helper.make_opsetid(DOMAIN, DOMAIN_VERSION))


def table_name(role: str) -> str:
    """Name of the lookup's ``memory`` / ``keys`` / ``offsets`` / ``signatures`` in a finalized graph."""
    return f"lookup_{role}"


def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    for tensor in graph.initializer:
        if tensor.name == old:
            tensor.name = new
    for node in graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for value in graph.value_info:
        if value.name == old:
            value.name = new


def uses_custom_ops(model: ModelProto) -> bool:
    return any(n.domain == DOMAIN for n in model.graph.node)


def node_counts(model: ModelProto) -> dict[str, int]:
    """Top-level nodes as stored, and nodes once every function is inlined (what a runtime executes)."""
    stored = len(model.graph.node)
    flat = onnx.inliner.inline_local_functions(model) if model.functions else model
    return {"nodes": stored, "nodes_inlined": _count_all(flat.graph.node)}


def _count_all(nodes: Iterable[NodeProto]) -> int:
    total = 0
    for node in nodes:
        total += 1
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                total += _count_all(attr.g.node)
    return total


def lookup_probe(model: ModelProto, model_dir: Path, memory: np.ndarray | None = None) -> ModelProto:
    """A small model from ``categorical`` to the lookup output (rows or embedding) of ``model``.

    Only the nodes the lookup depends on are kept. Small initializers (keys, offsets, signatures) are
    read from ``model_dir`` when external; the shared memory ``M`` (input 1 of a Robe/Lma node) is
    replaced by ``memory`` when given, so a probe can reveal the exact index every element reads.
    """
    target = next(name for name in (EMBEDDING_OUTPUT, ROWS_OUTPUT) if _produced(model, name))
    nodes = _backward_slice(model.graph.node, target)
    needed = {name for node in nodes for name in node.input}
    memory_name = table_name("memory")
    initializers = []
    for tensor in model.graph.initializer:
        if tensor.name not in needed:
            continue
        if tensor.name == memory_name and memory is not None:
            initializers.append(numpy_helper.from_array(memory.astype(np.float32), tensor.name))
            continue
        copy = TensorProto()
        copy.CopyFrom(tensor)
        if uses_external_data(copy):
            load_external_data_for_tensor(copy, str(model_dir))
            copy.data_location = TensorProto.DEFAULT
            del copy.external_data[:]
        initializers.append(copy)
    inputs = [i for i in model.graph.input if i.name in needed]
    elem = TensorProto.FLOAT if target == EMBEDDING_OUTPUT else TensorProto.INT64
    output = helper.make_tensor_value_info(target, elem, [None] * (3 if target == EMBEDDING_OUTPUT else 2))
    graph = helper.make_graph(nodes, "lookup_probe", inputs, [output], initializers)
    probe = helper.make_model(graph, opset_imports=list(model.opset_import), functions=list(model.functions))
    probe.ir_version = model.ir_version
    return probe


def _produced(model: ModelProto, name: str) -> bool:
    return any(name in node.output for node in model.graph.node)


def _backward_slice(nodes: Iterable[NodeProto], target: str) -> list[NodeProto]:
    ordered = list(nodes)
    wanted, keep = {target}, []
    for node in reversed(ordered):
        if wanted.intersection(node.output):
            keep.append(node)
            wanted.update(node.input)
            for attr in node.attribute:  # values a subgraph reads from the outer scope
                if attr.type == onnx.AttributeProto.GRAPH:
                    wanted.update(i for sub in attr.g.node for i in sub.input)
    return list(reversed(keep))

