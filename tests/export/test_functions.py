"""The model-local fallback functions (standard ONNX ops) against kernels/reference and the kernels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from export import functions
from export.verify import kernel_library_built, session
from kernels import reference as ref

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "hash_golden.json").read_text())
MAX_TEST_MEMORY = 1 << 22  # golden cases with a bigger M would need gigabytes
PATHS = ["function", pytest.param("kernel", marks=pytest.mark.skipif(
    not kernel_library_built(), reason="ai.robe library not built (make kernels)"))]


def _model(node: onnx.NodeProto, num_features: int, out_type: int, tables: dict[str, np.ndarray],
           function: onnx.FunctionProto) -> bytes:
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["B", num_features])
    rank = 3 if out_type == TensorProto.FLOAT else 2
    out = helper.make_tensor_value_info(node.output[0], out_type, [None] * rank)
    inits = [numpy_helper.from_array(v, k) for k, v in tables.items()]
    graph = helper.make_graph([node], "g", [ids], [out], inits)
    opsets = [helper.make_opsetid("", functions.ONNX_OPSET), helper.make_opsetid(node.domain,
                                                                                 functions.DOMAIN_VERSION)]
    model = helper.make_model(graph, opset_imports=opsets, functions=[function])
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def _hash_attrs(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(params[k]) for k in functions.HASH_ATTRIBUTES}


def robe_output(ids: np.ndarray, memory: np.ndarray, params: dict[str, Any], dim: int, block: int,
                path: str) -> np.ndarray:
    node = helper.make_node("RobeEmbedding", ["ids", "M"], ["emb"], domain=functions.DOMAIN,
                            embedding_dim=dim, block_size=block, **_hash_attrs(params))
    model = _model(node, ids.shape[1], TensorProto.FLOAT, {"M": memory}, functions.robe_embedding())
    out: np.ndarray = session(model, path == "kernel").run(None, {"ids": ids})[0]
    return out


def lma_output(ids: np.ndarray, memory: np.ndarray, case: dict[str, Any], path: str) -> np.ndarray:
    node = helper.make_node("LmaEmbedding", ["ids", "M", "keys", "offsets", "signatures"], ["emb"],
                            domain=functions.DOMAIN, embedding_dim=case["embedding_dim"],
                            block_size=case["block_size"], keys_per_block=case["keys_per_block"],
                            **_hash_attrs(case["params"]))
    tables = {"M": memory, **{k: np.asarray(case[k], np.int64) for k in ("keys", "offsets")},
              "signatures": np.asarray(case["signatures"], np.uint8).reshape(len(case["keys"]), -1)}
    model = _model(node, ids.shape[1], TensorProto.FLOAT, tables, functions.lma_embedding())
    out: np.ndarray = session(model, path == "kernel").run(None, {"ids": ids})[0]
    return out


def vocab_output(ids: np.ndarray, keys: np.ndarray, offsets: np.ndarray, path: str) -> np.ndarray:
    node = helper.make_node("VocabLookup", ["ids", "keys", "offsets"], ["rows"], domain=functions.DOMAIN)
    model = _model(node, ids.shape[1], TensorProto.INT64, {"keys": keys, "offsets": offsets},
                   functions.vocab_lookup())
    out: np.ndarray = session(model, path == "kernel").run(None, {"ids": ids})[0]
    return out


def _index_memory(m: int) -> np.ndarray:
    return np.arange(m, dtype=np.float32)  # exact below 2^24: the lookup returns the indices


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", [c for c in GOLDEN["robe"] if c["m"] <= MAX_TEST_MEMORY],
                         ids=lambda c: c["name"])
def test_robe_matches_golden(case: dict[str, Any], path: str) -> None:
    ids = np.asarray(case["ids"], np.int64)
    memory = _index_memory(case["m"])
    out = robe_output(ids, memory, case["params"], case["embedding_dim"], case["block_size"], path)
    assert out.astype(np.int64).tolist() == case["indices"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", [c for c in GOLDEN["lma"] if c["m"] <= MAX_TEST_MEMORY],
                         ids=lambda c: c["name"])
def test_lma_matches_golden(case: dict[str, Any], path: str) -> None:
    out = lma_output(np.asarray(case["ids"], np.int64), _index_memory(case["m"]), case, path)
    assert out.astype(np.int64).tolist() == case["indices"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", GOLDEN["vocab"], ids=lambda c: c["name"])
def test_vocab_matches_golden(case: dict[str, Any], path: str) -> None:
    rows = vocab_output(np.asarray(case["ids"], np.int64), np.asarray(case["keys"], np.int64),
                        np.asarray(case["offsets"], np.int64), path)
    assert rows.tolist() == case["rows"]


def test_vocab_with_empty_features_and_no_keys() -> None:
    ids = np.array([[0, 5, 7], [3, 9, 2**62 - 1]], np.int64)
    for keys, offsets in ((np.array([5, 9], np.int64), np.array([0, 0, 2, 2])), (np.zeros(0, np.int64),
                                                                              np.zeros(4, np.int64))):
        got = vocab_output(ids, keys, offsets.astype(np.int64), "function")
        assert got.tolist() == ref.vocab_lookup(ids, keys, offsets).tolist()


ids_strategy = st.lists(st.lists(st.integers(0, 2**62 - 1), min_size=3, max_size=3), min_size=1, max_size=8)


@settings(max_examples=25, deadline=None)
@given(ids=ids_strategy, seed=st.integers(0, 2**32 - 1), block=st.sampled_from([1, 2, 4, 8]))
def test_robe_function_property(ids: list[list[int]], seed: int, block: int) -> None:
    params = ref.HashParams.from_seed(3, 8 // block, seed)
    arr = np.asarray(ids, np.int64)
    out = robe_output(arr, _index_memory(997), params.to_dict(), 8, block, "function")
    assert np.array_equal(out.astype(np.int64), ref.robe_indices(arr, params, 997, 8, block))


@settings(max_examples=25, deadline=None)
@given(ids=ids_strategy, known=st.lists(st.integers(0, 2**62 - 1), min_size=0, max_size=12, unique=True),
       seed=st.integers(0, 2**32 - 1), keys_per_block=st.integers(1, 6), extra=st.integers(0, 5))
def test_lma_function_property(ids: list[list[int]], known: list[int], seed: int, keys_per_block: int,
                               extra: int) -> None:
    params = ref.HashParams.from_seed(3, 4, seed)
    arr = np.asarray(ids, np.int64)
    pool = np.concatenate([arr.ravel(), np.asarray(known, np.int64)])  # some ids known, some not
    per_feature = [np.unique(pool[f::3]) for f in range(3)]
    keys = np.concatenate(per_feature).astype(np.int64)
    offsets = np.cumsum([0, *map(len, per_feature)]).astype(np.int64)
    size = (len(keys), keys_per_block + extra)
    signatures = np.random.default_rng(seed).integers(0, 256, size=size).astype(np.uint8)
    case = {"params": params.to_dict(), "embedding_dim": 8, "block_size": 2, "keys_per_block": keys_per_block,
            "keys": keys, "offsets": offsets, "signatures": signatures}
    out = lma_output(arr, _index_memory(501), case, "function")
    want = ref.lma_indices(arr, keys, offsets, signatures, params, 501, 8, 2, keys_per_block)
    assert np.array_equal(out.astype(np.int64), want)


@pytest.mark.skipif(not kernel_library_built(), reason="ai.robe library not built (make kernels)")
def test_function_fallback_equals_kernel_on_trained_memory() -> None:
    """Both halves of the portability claim: same file, plain onnxruntime vs the registered kernel."""
    rng = np.random.default_rng(3)
    params = ref.HashParams.from_seed(4, 4, 11)
    ids = rng.integers(0, 2**62, size=(64, 4), dtype=np.int64)
    memory = rng.standard_normal(5000).astype(np.float32)
    by_function = robe_output(ids, memory, params.to_dict(), 16, 4, "function")
    by_kernel = robe_output(ids, memory, params.to_dict(), 16, 4, "kernel")
    assert np.array_equal(by_function, by_kernel)


@pytest.mark.parametrize("case", GOLDEN["hash_rows"], ids=lambda c: c["name"])
def test_hash_rows_matches_golden(case: dict[str, Any]) -> None:
    """HashRows (inlined into hash models) = row within the feature's table + the table's first row."""
    ids = np.asarray(case["ids"], np.int64)
    rows = [int(r) for r in case["rows"]]
    node = helper.make_node("HashRows", ["ids"], ["rows"], domain=functions.PRIVATE_DOMAIN, rows=rows,
                            **_hash_attrs(case["params"]))
    model = _model(node, ids.shape[1], TensorProto.INT64, {}, functions.hash_rows())
    got = session(model, with_kernels=False).run(None, {"ids": ids})[0]
    base = np.cumsum(rows) - np.asarray(rows)
    assert (got - base).tolist() == case["out"]
