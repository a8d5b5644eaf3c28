"""Every bad attribute or input of the ai.robe ops is an ORT error naming the problem, never a crash."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kernel_models import embedding_attrs, lma_model, robe_model, session, vocab_model
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from kernels import reference as ref

PARAMS = ref.HashParams.from_seed(3, 2, 0)
IDS = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64)
MEMORY = np.arange(100, dtype=np.float32)
KEYS = np.array([1, 4, 2, 3], dtype=np.int64)  # feature 0: [1, 4], feature 1: [], feature 2: [2, 3]
OFFSETS = np.array([0, 2, 2, 4], dtype=np.int64)
SIGNATURES = np.array([[255, 5], [7, 0], [11, 3], [1, 2]], dtype=np.uint8)
INVALID_IDS = [-1, -(2**31), 2**62, 2**62 + 1, 2**63 - 1]


def _attrs(**changes: Any) -> dict[str, Any]:
    attrs = embedding_attrs(PARAMS, 8, 4)
    attrs.update(changes)
    return {k: v for k, v in attrs.items() if v is not None}


ATTRIBUTE_ERRORS = [
    ({"a1": None}, "attribute 'a1' \\(ints\\) is required"),
    ({"embedding_dim": None}, "attribute 'embedding_dim' \\(int\\) is required"),
    ({"a2": [1, 2]}, "attribute 'a2' has 2 values, expected 3"),
    ({"g1": [5]}, "attribute 'g1' has 1 values, expected 2 \\(one per block"),
    ({"g2": None}, "attribute 'g2' \\(ints\\) is required"),
    ({"g2": [0, 1]}, "attribute 'g2' holds 0, outside \\[1, 2\\^31 - 2\\]"),
    ({"c": [1, 1, 2**31 - 1]}, "attribute 'c' holds 2147483647"),
    ({"block_size": 3}, "block_size 3 must be >= 1 and divide embedding_dim 8"),
    ({"block_size": 0}, "block_size 0 must be"),
    ({"embedding_dim": 0, "block_size": 1}, "must be >= 1 and divide embedding_dim 0"),
    ({"a1": [], "a2": [], "c": []}, "(attribute 'a1' \\(ints\\) is required|got none)"),
]


@pytest.mark.parametrize(("changes", "message"), ATTRIBUTE_ERRORS)
@pytest.mark.parametrize("make_model", [robe_model, lma_model], ids=["robe", "lma"])
def test_bad_attributes_fail_session_creation(
    robe_library: Path, make_model: Callable[..., bytes], changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        session(make_model(_attrs(**changes)), robe_library)


@pytest.mark.parametrize("keys_per_block", [0, 7])
def test_lma_keys_per_block_range(robe_library: Path, keys_per_block: int) -> None:
    with pytest.raises(Exception, match="keys_per_block must be in \\[1, 6\\]"):
        session(lma_model(_attrs(keys_per_block=keys_per_block)), robe_library)


def _robe_feeds(**changes: Any) -> dict[str, Any]:
    return {"ids": IDS, "M": MEMORY, **changes}


def _lma_feeds(**changes: Any) -> dict[str, Any]:
    return {"ids": IDS, "M": MEMORY, "keys": KEYS, "offsets": OFFSETS, "signatures": SIGNATURES, **changes}


def _vocab_feeds(**changes: Any) -> dict[str, Any]:
    return {"ids": IDS, "keys": KEYS, "offsets": OFFSETS, **changes}


RUN_ERRORS = [
    ("robe", _robe_feeds(ids=IDS[0]), "ids must be int64 \\[batch, 3\\].*got \\[3\\]"),
    ("robe", _robe_feeds(ids=IDS[:, :2]), "ids must be int64 \\[batch, 3\\].*got \\[2, 2\\]"),
    ("robe", _robe_feeds(ids=IDS[None]), "got \\[1, 2, 3\\]"),
    ("robe", _robe_feeds(M=MEMORY.reshape(10, 10)), "M must be a float vector"),
    ("robe", _robe_feeds(M=MEMORY[:3]), "M holds 3 floats, fewer than one block of 4"),
    ("lma", _lma_feeds(M=MEMORY[:0]), "M holds 0 floats"),
    ("lma", _lma_feeds(offsets=OFFSETS[:3]), "offsets must be 4 non-decreasing values from 0 to 4"),
    ("lma", _lma_feeds(offsets=OFFSETS + 1), "offsets must be"),
    ("lma", _lma_feeds(offsets=np.array([0, 3, 2, 4])), "offsets must be"),
    ("lma", _lma_feeds(offsets=np.array([0, 2, 2, 5])), "offsets must be"),
    ("lma", _lma_feeds(offsets=np.array([0, 2, 2, 99])), "offsets must be"),
    ("lma", _lma_feeds(signatures=SIGNATURES[:3]), "signatures must be uint8 \\[4, S\\].*got \\[3, 2\\]"),
    ("lma", _lma_feeds(signatures=SIGNATURES[:, 0]), "signatures must be uint8 \\[4, S\\]"),
    ("lma", _lma_feeds(signatures=SIGNATURES[:, :1]),
     "signatures hold 1 minhashes per token; keys_per_block 2"),
    ("lma", _lma_feeds(keys=KEYS.reshape(2, 2)), "keys must be a vector"),
    ("vocab", _vocab_feeds(offsets=OFFSETS[:1]), "offsets must hold F \\+ 1 >= 2 values"),
    ("vocab", _vocab_feeds(offsets=np.array([0, 2, 4])), "ids must be int64 \\[batch, 2\\]"),
    ("vocab", _vocab_feeds(offsets=np.array([0, 2, 1, 4])), "offsets must be"),
    ("vocab", _vocab_feeds(offsets=np.array([1, 2, 2, 4])), "offsets must be"),
    ("vocab", _vocab_feeds(keys=KEYS[:3]), "from 0 to 3"),
]
MODELS: dict[str, Callable[[], bytes]] = {
    "robe": lambda: robe_model(_attrs()),
    "lma": lambda: lma_model(_attrs()),
    "vocab": vocab_model,
}


@pytest.mark.parametrize(("op", "feeds", "message"), RUN_ERRORS)
def test_bad_inputs_are_invalid_argument(
    robe_library: Path, op: str, feeds: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        session(MODELS[op](), robe_library).run(None, feeds)


@pytest.mark.parametrize("op", ["robe", "lma", "vocab"])
def test_invalid_ids_are_invalid_argument(robe_library: Path, golden: dict[str, Any], op: str) -> None:
    sess = session(MODELS[op](), robe_library)
    feeds = {"robe": _robe_feeds, "lma": _lma_feeds, "vocab": _vocab_feeds}[op]()
    for bad in golden["invalid_ids"]:
        ids = IDS.copy()
        ids[1, 2] = bad
        with pytest.raises(InvalidArgument, match=f"id {bad} at \\[1, 2\\] is outside \\[0, 2\\^62\\)"):
            sess.run(None, {**feeds, "ids": ids})


def test_wrong_input_type_is_an_ort_error(robe_library: Path) -> None:
    with pytest.raises(Exception, match=r"(?i)type"):
        session(robe_model(_attrs()), robe_library).run(None, _robe_feeds(ids=IDS.astype(np.int32)))


def test_session_works_after_errors(robe_library: Path) -> None:
    sess = session(robe_model(_attrs()), robe_library)
    with pytest.raises(InvalidArgument):
        sess.run(None, _robe_feeds(ids=-IDS))
    out = sess.run(None, _robe_feeds())[0]
    np.testing.assert_array_equal(out, ref.robe_lookup(IDS, MEMORY, PARAMS, 8, 4))
