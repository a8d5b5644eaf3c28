"""Evidence for the one-file portability claim (DESIGN.md section 4): ``python -m export.portability``.

For each ai.robe op, one tiny model holds the op's node AND a model-local function of the same domain and
name. The model is run in onnxruntime twice, without and with the ai.robe library, and for each run the
graph onnxruntime actually executes is saved (``optimized_model_filepath``) and inspected:

- without the library, the executed graph has no ai.robe node left (the function was inlined) and the
  outputs equal ``kernels/reference``;
- with the library, the executed graph still holds the ai.robe node (the kernel took it) and the outputs
  equal the function's bit for bit;
- behavioural check: an invalid id (-1) is rejected with an error by the kernel, while the function,
  which cannot raise, computes something; so the two runs really took different code.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import kernels
from export import functions
from kernels import reference

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Observation:
    """What one run of one op showed.

    Args:
        op: the ai.robe op.
        library: whether the ai.robe library was registered.
        executed_custom_nodes: ai.robe nodes left in the graph onnxruntime executed.
        executed_nodes: all nodes of that graph.
        equals_reference: outputs == kernels/reference.
        invalid_id_rejected: running id -1 raised an error.
    """

    op: str
    library: bool
    executed_custom_nodes: int
    executed_nodes: int
    equals_reference: bool
    invalid_id_rejected: bool


def _cases() -> tuple[list[tuple[str, onnx.ModelProto, np.ndarray]], np.ndarray]:
    """(op, model, expected output) for ids holding the golden edge values."""
    rng = np.random.default_rng(0)
    params = reference.HashParams.from_seed(3, 2, 5)
    hashed_lists = {k: getattr(params, k).tolist() for k in functions.HASH_ATTRIBUTES}
    ids = np.array([[0, 1, (1 << 31) - 1], [1 << 31, (1 << 53) + 1, (1 << 62) - 1], [7, 7, 7]], np.int64)
    memory = np.arange(1000, dtype=np.float32)
    keys = np.array([0, 7, (1 << 31) - 1, 7, (1 << 53) + 1, 7, (1 << 62) - 1], np.int64)
    offsets = np.array([0, 3, 5, 7], np.int64)
    signatures = rng.integers(0, 256, size=(len(keys), reference.DEFAULT_NUM_MINHASHES)).astype(np.uint8)
    hashed: dict[str, Any] = hashed_lists
    robe = helper.make_node("RobeEmbedding", ["ids", "M"], ["out"], domain=functions.DOMAIN,
                            embedding_dim=8, block_size=4, **hashed)
    lma = helper.make_node("LmaEmbedding", ["ids", "M", "keys", "offsets", "signatures"], ["out"],
                           domain=functions.DOMAIN, embedding_dim=8, block_size=4, keys_per_block=2, **hashed)
    vocab = helper.make_node("VocabLookup", ["ids", "keys", "offsets"], ["out"], domain=functions.DOMAIN)
    tables: dict[str, np.ndarray] = {"M": memory, "keys": keys, "offsets": offsets, "signatures": signatures}
    return [
        ("RobeEmbedding", _model(robe, tables, functions.robe_embedding(), TensorProto.FLOAT, 3),
         reference.robe_indices(ids, params, 1000, 8, 4).astype(np.float32)),
        ("LmaEmbedding", _model(lma, tables, functions.lma_embedding(), TensorProto.FLOAT, 3),
         reference.lma_indices(ids, keys, offsets, signatures, params, 1000, 8, 4, 2).astype(np.float32)),
        ("VocabLookup", _model(vocab, tables, functions.vocab_lookup(), TensorProto.INT64, 2),
         reference.vocab_lookup(ids, keys, offsets)),
    ], ids


def _model(node: onnx.NodeProto, tables: dict[str, np.ndarray], function: onnx.FunctionProto, out_type: int,
           rank: int) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(v, k) for k, v in tables.items() if k in node.input]
    graph = helper.make_graph([node], node.op_type, [helper.make_tensor_value_info("ids", TensorProto.INT64,
                                                                                   [None, 3])],
                              [helper.make_tensor_value_info("out", out_type, [None] * rank)], inits)
    opsets = [helper.make_opsetid("", functions.ONNX_OPSET), helper.make_opsetid(functions.DOMAIN,
                                                                                 functions.DOMAIN_VERSION)]
    model = helper.make_model(graph, opset_imports=opsets, functions=[function])
    onnx.checker.check_model(model, full_check=True)
    return model


def observe(op: str, model: onnx.ModelProto, ids: np.ndarray, expected: np.ndarray, library: bool,
            workdir: Path) -> tuple[Observation, np.ndarray]:
    """Run ``model`` once (with or without the library) and record what was executed."""
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the invalid-id run below fails on purpose
    executed = workdir / f"{op}-{'kernel' if library else 'function'}.onnx"
    options.optimized_model_filepath = str(executed)
    if library and not kernels.register(options):
        raise kernels.LibraryNotBuilt("run `make kernels` first")
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out = sess.run(None, {"ids": ids})[0]
    try:
        sess.run(None, {"ids": np.full_like(ids, -1)})
        rejected = False
    except Exception:  # onnxruntime raises its own error types
        rejected = True
    graph = onnx.load(str(executed), load_external_data=False).graph
    custom = sum(1 for n in graph.node if n.domain == functions.DOMAIN)
    matches = bool(np.array_equal(out, expected))
    return Observation(op, library, custom, len(graph.node), matches, rejected), out


def run() -> dict[str, object]:
    """Every observation plus the verdict per op."""
    cases, ids = _cases()
    observations, verdicts = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for op, model, expected in cases:
            plain, by_function = observe(op, model, ids, expected, False, Path(tmp))
            loaded, by_kernel = observe(op, model, ids, expected, True, Path(tmp))
            observations += [asdict(plain), asdict(loaded)]
            verdicts[op] = {
                "function_runs_without_library": plain.executed_custom_nodes == 0 and plain.equals_reference,
                "kernel_takes_precedence": loaded.executed_custom_nodes == 1 and loaded.invalid_id_rejected,
                "function_equals_kernel": bool(np.array_equal(by_function, by_kernel)),
            }
    return {"onnxruntime": ort.__version__, "verdicts": verdicts, "observations": observations}


def main() -> int:
    logging.basicConfig(force=True, level=logging.WARNING)
    print(json.dumps(run(), indent=2))  # noqa: T201 (CLI output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
