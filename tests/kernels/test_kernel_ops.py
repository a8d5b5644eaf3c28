"""The CPU kernels of the ai.robe ops, bit-exact against kernels.reference (golden vectors and hypothesis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kernel_models import embedding_attrs, lma_model, robe_model, session, vocab_model

from kernels import reference as ref

# M[i] = float32(i) turns a lookup into its indices, exact below 2^24.
EXACT_FLOATS = 1 << 24
SPECIAL_IDS = np.asarray([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 3 * 2**31 - 1, 2**62 - 1], dtype=np.int64)
HYPOTHESIS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _params(case: dict[str, Any]) -> ref.HashParams:
    return ref.HashParams.from_dict(case["params"])


def _ids(rng: np.random.Generator, batch: int, features: int) -> np.ndarray:
    """Ids [B, F] < 2^62 mixing special values and uniform ones."""
    ids = rng.integers(0, ref.ID_LIMIT, size=(batch, features), dtype=np.int64)
    special = rng.choice(SPECIAL_IDS, size=ids.shape)
    return np.where(rng.random(ids.shape) < 0.4, special, ids)


def _vocabulary(rng: np.random.Generator, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys per feature (some of the ids, some random; feature 1 empty) and offsets [F + 1]."""
    keys, offsets = [], [0]
    for f in range(ids.shape[1]):
        known = ids[: len(ids) // 2, f] if f != 1 else np.zeros(0, np.int64)
        extra = rng.integers(0, 2**40, size=int(rng.integers(0, 4)), dtype=np.int64) if f != 1 else known
        keys.append(np.unique(np.concatenate([known, extra])))
        offsets.append(offsets[-1] + len(keys[-1]))
    return np.concatenate(keys).astype(np.int64), np.asarray(offsets, dtype=np.int64)


def _reference(fn: Any, ids: np.ndarray, *args: Any) -> np.ndarray:
    return np.asarray(fn(ids, *args))


def _golden_cases(golden: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    cases = [case for case in golden[kind] if case["m"] <= EXACT_FLOATS]
    assert cases, f"no {kind} golden case small enough to materialise M"
    return cases


def test_robe_matches_golden_vectors(robe_library: Path, golden: dict[str, Any]) -> None:
    for case in _golden_cases(golden, "robe"):
        attrs = embedding_attrs(_params(case), case["embedding_dim"], case["block_size"])
        memory = np.arange(case["m"], dtype=np.float32)
        out = session(robe_model(attrs), robe_library).run(
            None, {"ids": np.asarray(case["ids"]), "M": memory}
        )[0]
        np.testing.assert_array_equal(out.astype(np.int64), np.asarray(case["indices"]), err_msg=case["name"])


def test_lma_matches_golden_vectors(robe_library: Path, golden: dict[str, Any]) -> None:
    for case in _golden_cases(golden, "lma"):
        attrs = embedding_attrs(
            _params(case), case["embedding_dim"], case["block_size"], keys_per_block=case["keys_per_block"]
        )
        feeds = {
            "ids": np.asarray(case["ids"]),
            "M": np.arange(case["m"], dtype=np.float32),
            **{k: np.asarray(case[k], dtype=np.int64) for k in ("keys", "offsets")},
            "signatures": np.asarray(case["signatures"], dtype=np.uint8),
        }
        out = session(lma_model(attrs), robe_library).run(None, feeds)[0]
        np.testing.assert_array_equal(out.astype(np.int64), np.asarray(case["indices"]), err_msg=case["name"])


def test_vocab_matches_golden_vectors(robe_library: Path, golden: dict[str, Any]) -> None:
    sess = session(vocab_model(), robe_library)
    for case in golden["vocab"]:
        feeds = {k: np.asarray(case[k], dtype=np.int64) for k in ("ids", "keys", "offsets")}
        np.testing.assert_array_equal(
            sess.run(None, feeds)[0], np.asarray(case["rows"]), err_msg=case["name"]
        )


@st.composite
def embedding_shapes(draw: st.DrawFn) -> tuple[int, int, int, int, int, int]:
    """(features, dim, block_size in {1, 4, dim}, m not a power of two, batch incl. 0 and 1, seed)."""
    dim = draw(st.sampled_from([1, 2, 3, 4, 6, 8, 12, 16, 32]))
    block = draw(st.sampled_from(sorted({1, dim} | ({4} if dim % 4 == 0 else set()))))
    m = draw(st.integers(block, block + 3000).filter(lambda n: n & (n - 1) != 0))
    batch = draw(st.sampled_from([0, 1]) | st.integers(2, 40))
    return draw(st.integers(1, 5)), dim, block, m, batch, draw(st.integers(0, 2**32 - 1))


@HYPOTHESIS
@given(shape=embedding_shapes())
def test_robe_matches_reference(robe_library: Path, shape: tuple[int, ...]) -> None:
    features, dim, block, m, batch, seed = shape
    rng = np.random.default_rng(seed)
    params = ref.HashParams.from_seed(features, dim // block, seed)
    ids, memory = _ids(rng, batch, features), rng.standard_normal(m).astype(np.float32)
    out = session(robe_model(embedding_attrs(params, dim, block)), robe_library).run(
        None, {"ids": ids, "M": memory}
    )[0]
    assert out.shape == (batch, features, dim)
    np.testing.assert_array_equal(out, _reference(ref.robe_lookup, ids, memory, params, dim, block))


@HYPOTHESIS
@given(shape=embedding_shapes(), keys_per_block=st.integers(1, 6), extra=st.integers(0, 12))
def test_lma_matches_reference(robe_library: Path, shape: tuple[int, ...], keys_per_block: int,
                               extra: int) -> None:
    features, dim, block, m, batch, seed = shape
    rng = np.random.default_rng(seed)
    params = ref.HashParams.from_seed(features, dim // block, seed)
    ids, memory = _ids(rng, batch, features), rng.standard_normal(m).astype(np.float32)
    keys, offsets = _vocabulary(rng, ids)
    signatures = rng.integers(0, 256, size=(len(keys), keys_per_block + extra)).astype(np.uint8)
    attrs = embedding_attrs(params, dim, block, keys_per_block=keys_per_block)
    feeds = {"ids": ids, "M": memory, "keys": keys, "offsets": offsets, "signatures": signatures}
    out = session(lma_model(attrs), robe_library).run(None, feeds)[0]
    idx = _reference(ref.lma_indices, ids, keys, offsets, signatures, params, m, dim, block, keys_per_block)
    np.testing.assert_array_equal(out, memory[idx])


@HYPOTHESIS
@given(
    features=st.integers(1, 6),
    batch=st.sampled_from([0, 1]) | st.integers(2, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_vocab_matches_reference(robe_library: Path, features: int, batch: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = _ids(rng, batch, features)
    keys, offsets = _vocabulary(rng, ids)
    rows = session(vocab_model(), robe_library).run(None, {"ids": ids, "keys": keys, "offsets": offsets})[0]
    np.testing.assert_array_equal(rows, ref.vocab_lookup(ids, keys, offsets))


def test_thread_pool_splits_work_and_reports_the_first_bad_id(robe_library: Path) -> None:
    rng = np.random.default_rng(3)
    params = ref.HashParams.from_seed(3, 4, 3)
    ids, memory = _ids(rng, 1000, 3), rng.standard_normal(5001).astype(np.float32)  # 3000 lookups: 3 tasks
    sess = session(robe_model(embedding_attrs(params, 16, 4)), robe_library, threads=2)
    np.testing.assert_array_equal(
        sess.run(None, {"ids": ids, "M": memory})[0], ref.robe_lookup(ids, memory, params, 16, 4)
    )
    ids[900, 2], ids[400, 1] = -5, 2**62  # lookups 2702 (third task) and 1201 (second task)
    with pytest.raises(
        ort.capi.onnxruntime_pybind11_state.InvalidArgument, match=r"id 4611686018427387904 at \[400, 1\]"
    ):
        sess.run(None, {"ids": ids, "M": memory})


def test_memory_of_exactly_one_block(robe_library: Path) -> None:
    params = ref.HashParams.from_seed(2, 1, 0)
    ids, memory = _ids(np.random.default_rng(0), 7, 2), np.arange(8, dtype=np.float32)
    out = session(robe_model(embedding_attrs(params, 8, 8)), robe_library).run(
        None, {"ids": ids, "M": memory}
    )[0]
    np.testing.assert_array_equal(out, np.broadcast_to(memory, (7, 2, 8)))


@pytest.mark.parametrize("op", ["robe", "lma", "vocab"])
def test_static_shape_inference(robe_library: Path, op: str) -> None:
    params = ref.HashParams.from_seed(3, 2, 0)
    attrs = embedding_attrs(params, 8, 4)
    model = {
        "robe": lambda: robe_model(attrs, ["batch", 3]),
        "lma": lambda: lma_model(attrs, ["batch", 3]),
        "vocab": lambda: vocab_model(["batch", 3]),
    }[op]()
    output = session(model, robe_library).get_outputs()[0]
    assert output.shape == (["batch", 3] if op == "vocab" else ["batch", 3, 8])
    assert output.type == ("tensor(int64)" if op == "vocab" else "tensor(float)")


def test_version_1_nodes_are_refused(robe_library: Path) -> None:
    """A node with version 1's coefficient 'b' is refused, naming the version (the opset import of a
    version-1 model is refused before any session by export.verify and the service)."""
    params = ref.HashParams.from_seed(3, 2, 0)
    v1_attrs = {**embedding_attrs(params, 8, 4), "b": [1, 2, 3]}
    with pytest.raises(Exception, match=r"hash version 1 coefficients \(attribute 'b'\).*version 2"):
        session(robe_model(v1_attrs), robe_library)
