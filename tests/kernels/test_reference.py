"""The NumPy spec against an independent pure-Python reading of DESIGN.md section 3 and its own invariants."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import reference as ref

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "hash_golden.json").read_text())
P = (1 << 31) - 1
IDS = st.sampled_from(GOLDEN["special_ids"]) | st.integers(0, (1 << 62) - 1)


def h_python(params: ref.HashParams, f: int, c: int, v: int) -> int:
    """h(f, c, v) with Python integers (no overflow possible), straight from DESIGN.md section 3."""
    lo, hi = v % (1 << 31), v // (1 << 31)
    a1, a2, b, cc = (int(getattr(params, name)[f]) for name in ("a1", "a2", "b", "c"))
    return ((a1 * lo) % P + (a2 * hi) % P + b * c + cc) % P


def test_hash_params_from_seed_follow_the_documented_draws() -> None:
    params = ref.HashParams.from_seed(5, 42)
    rng = np.random.default_rng(42)
    for name in ("a1", "a2", "b", "c"):
        np.testing.assert_array_equal(getattr(params, name), rng.integers(1, P, size=5, dtype=np.int64))
    assert ref.HashParams.from_dict(params.to_dict()).to_dict() == params.to_dict()


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(IDS, min_size=3, max_size=3), seed=st.integers(0, 2**32), block=st.integers(0, 128))
def test_hash_matches_python_integers(ids: list[int], seed: int, block: int) -> None:
    params = ref.HashParams.from_seed(3, seed)
    got = ref.hash_ids(np.asarray([ids], dtype=np.int64), block, params)
    assert got[0].tolist() == [h_python(params, f, block, v) for f, v in enumerate(ids)]


@pytest.mark.parametrize("case", GOLDEN["robe"], ids=lambda c: c["name"])
def test_golden_robe_against_python_integers(case: dict) -> None:
    params = ref.HashParams.from_dict(case["params"])
    m, dim, z = case["m"], case["embedding_dim"], case["block_size"]
    for row, out in zip(case["ids"], case["indices"], strict=True):
        for f, v in enumerate(row):
            expected = [h_python(params, f, j // z, v) % (m - z + 1) + j % z for j in range(dim)]
            assert out[f] == expected


@pytest.mark.parametrize("bad", GOLDEN["invalid_ids"])
def test_invalid_ids_raise(bad: int) -> None:
    params = ref.HashParams.from_seed(1, 0)
    ids = np.asarray([[bad]], dtype=np.uint64 if bad >= 2**63 else np.int64)
    with pytest.raises(ref.InvalidIdError):
        ref.robe_indices(ids, params, 100, 4, 2)
    with pytest.raises(ref.InvalidIdError):
        ref.check_ids(np.asarray([0.5]))


def test_offsets_stay_inside_memory_without_wrap_around() -> None:
    params = ref.HashParams.from_seed(4, 3)
    ids = np.asarray([GOLDEN["special_ids"][:4], GOLDEN["special_ids"][3:]], dtype=np.int64)
    for m, dim, z in [(8, 8, 8), (9, 8, 4), (1000, 16, 1)]:
        idx = ref.robe_indices(ids, params, m, dim, z)
        assert idx.min() >= 0 and idx.max() < m
        assert (np.diff(idx.reshape(*idx.shape[:-1], dim // z, z), axis=-1) == 1).all()  # contiguous blocks
    with pytest.raises(ValueError, match="must divide"):
        ref.robe_offsets(ids, params, 100, 8, 3)
    with pytest.raises(ValueError, match="smaller than one block"):
        ref.robe_offsets(ids, params, 3, 8, 4)


def test_vocab_numbering_and_oov_rows() -> None:
    keys, offsets = np.asarray([3, 9, 4]), np.asarray([0, 2, 2, 3])
    rows = ref.vocab_lookup(np.asarray([[9, 1, 4], [3, 0, 5]]), keys, offsets)
    assert rows.tolist() == [[1, 3, 4], [0, 3, 5]]  # known p + f; unknown offsets[f+1] + f


@settings(max_examples=40, deadline=None)
@given(keys=st.lists(st.integers(0, 15), min_size=16, max_size=16))
def test_signature_pack_round_trip(keys: list[int]) -> None:
    packed = ref.pack_signature(np.asarray(keys))
    assert ref.signature_keys(packed).tolist() == keys


def test_key_selection_picks_distinct_keys() -> None:
    sel = ref.lma_key_selection(64, 8)
    assert all(len(set(row)) == 8 for row in sel.tolist())
    assert sel.min() >= 0 and sel.max() < 16


def test_minhash_is_the_min_over_each_values_rows() -> None:
    values = np.asarray([7, 7, 9, 7, 9])
    rows = np.asarray([10, 3, 5, 8, 2**31 + 4])  # rows are read mod 2^31
    unique, signatures = ref.minhash_signatures(values, rows, seed=5)
    ga, gb = ref.minhash_params(5)
    keys = ref.signature_keys(signatures)
    for i, v in enumerate(unique.tolist()):
        r = [int(x) % (1 << 31) for x in rows[values == v]]
        expected = [min((int(ga[t]) * x + int(gb[t])) % P for x in r) % 16 for t in range(16)]
        assert keys[i].tolist() == expected


def test_unknown_lma_values_use_hash_keys() -> None:
    params = ref.HashParams.from_seed(2, 1)
    ids = np.asarray([[5, 2**40], [6, 7], [8, 9]])
    sig = ref.lma_signatures_for(ids, np.asarray([5]), np.asarray([0, 1, 1]), np.asarray([77]), params)
    assert sig[0, 0] == 77
    expected = [h_python(params, 1, t, 2**40) % 16 for t in range(16)]
    assert ref.signature_keys(sig[0, 1]).tolist() == expected


def test_batch_shape_does_not_change_offsets() -> None:
    params = ref.HashParams.from_seed(2, 0)
    ids = np.asarray([[1, 2], [3, 4]])
    whole = ref.robe_offsets(ids, params, 1000, 4, 2)
    rows = np.concatenate([ref.robe_offsets(ids[i : i + 1], params, 1000, 4, 2) for i in range(2)])
    np.testing.assert_array_equal(whole, rows)


def test_sixteen_keys_per_block_overflow_the_id_range() -> None:
    """keys_per_block = 16 would make 64-bit codes outside the id range; 15 is the maximum."""
    params = ref.HashParams.from_seed(1, 0)
    signatures = ref.pack_signature(np.full((1, 1, 16), 15))
    with pytest.raises(ValueError, match="keys_per_block"):
        ref.lma_offsets(signatures, params, 100, 4, 4, keys_per_block=16)
    assert ref.lma_offsets(signatures, params, 100, 4, 4, keys_per_block=15).shape == (1, 1, 1)
