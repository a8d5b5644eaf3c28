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


def u_python(params: ref.HashParams, f: int, v: int) -> int:
    """u(f, v) with Python integers (no overflow possible), straight from DESIGN.md section 3."""
    lo, hi = v % (1 << 31), v // (1 << 31)
    a1, a2, cc = (int(getattr(params, name)[f]) for name in ("a1", "a2", "c"))
    return ((a1 * lo) % P + (a2 * hi) % P + cc) % P


def h_python(params: ref.HashParams, f: int, c: int, v: int) -> int:
    """h(f, c, v) = (G1[c] u(f, v) + G2[c]) mod P with Python integers."""
    return (int(params.g1[c]) * u_python(params, f, v) + int(params.g2[c])) % P


def test_hash_params_from_seed_follow_the_documented_draws() -> None:
    params = ref.HashParams.from_seed(5, 3, 42)
    rng = np.random.default_rng(42)
    for name, size in (("a1", 5), ("a2", 5), ("c", 5), ("g1", 3), ("g2", 3)):
        np.testing.assert_array_equal(getattr(params, name), rng.integers(1, P, size=size, dtype=np.int64))
    assert ref.HashParams.from_dict(params.to_dict()).to_dict() == params.to_dict()
    assert params.to_dict()["version"] == ref.HASH_VERSION == 2


@pytest.mark.parametrize("version", [None, 1, 3, "2"])
def test_other_hash_versions_are_refused(version: object) -> None:
    data = ref.HashParams.from_seed(2, 2, 0).to_dict()
    if version is None:
        del data["version"]  # version 1 files had no version key
    else:
        data["version"] = version
    expected = f"hash version {version if version else 1} is not supported"
    with pytest.raises(ref.HashVersionError, match=expected):
        ref.HashParams.from_dict(data)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(IDS, min_size=3, max_size=3), seed=st.integers(0, 2**32), block=st.integers(0, 15))
def test_hash_matches_python_integers(ids: list[int], seed: int, block: int) -> None:
    params = ref.HashParams.from_seed(3, 16, seed)
    got = ref.hash_ids(np.asarray([ids], dtype=np.int64), block, params)
    assert got[0].tolist() == [h_python(params, f, block, v) for f, v in enumerate(ids)]
    assert ref.hash_blocks(np.asarray([ids]), params)[0, :, block].tolist() == got[0].tolist()


def test_blocks_of_colliding_keys_collide_independently() -> None:
    """Version 2's point: a collision on block 0 says nothing about the other blocks (~1/m each)."""
    m, blocks = 997, 16
    params = ref.HashParams.from_seed(1, blocks, 5)
    ids = np.arange(200_000, dtype=np.int64)[:, None]
    offsets = ref.robe_offsets(ids, params, m, blocks, 1)[:, 0, :]  # (N, blocks)
    order = np.argsort(offsets[:, 0], kind="stable")
    first, rest = offsets[order, 0], offsets[order, 1:]
    pairs = first[1:] == first[:-1]  # neighbours colliding on block 0
    recur = (rest[1:][pairs] == rest[:-1][pairs]).mean()
    assert recur < 3 / m, recur


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
    params = ref.HashParams.from_seed(1, 2, 0)
    ids = np.asarray([[bad]], dtype=np.uint64 if bad >= 2**63 else np.int64)
    with pytest.raises(ref.InvalidIdError):
        ref.robe_indices(ids, params, 100, 4, 2)
    with pytest.raises(ref.InvalidIdError):
        ref.check_ids(np.asarray([0.5]))


def test_offsets_stay_inside_memory_without_wrap_around() -> None:
    ids = np.asarray([GOLDEN["special_ids"][:4], GOLDEN["special_ids"][3:]], dtype=np.int64)
    for m, dim, z in [(8, 8, 8), (9, 8, 4), (1000, 16, 1)]:
        params = ref.HashParams.from_seed(4, dim // z, 3)
        idx = ref.robe_indices(ids, params, m, dim, z)
        assert idx.min() >= 0 and idx.max() < m
        assert (np.diff(idx.reshape(*idx.shape[:-1], dim // z, z), axis=-1) == 1).all()  # contiguous blocks
    with pytest.raises(ValueError, match="must divide"):
        ref.robe_offsets(ids, params, 100, 8, 3)
    with pytest.raises(ValueError, match="smaller than one block"):
        ref.robe_offsets(ids, params, 0, 16, 1)
    with pytest.raises(ValueError, match="hash parameters have 16 blocks"):
        ref.robe_offsets(ids, params, 100, 16, 4)


def test_vocab_numbering_and_oov_rows() -> None:
    keys, offsets = np.asarray([3, 9, 4]), np.asarray([0, 2, 2, 3])
    rows = ref.vocab_lookup(np.asarray([[9, 1, 4], [3, 0, 5]]), keys, offsets)
    assert rows.tolist() == [[1, 3, 4], [0, 3, 5]]  # known p + f; unknown offsets[f+1] + f


@pytest.mark.parametrize("case", GOLDEN["lma_selection"], ids=lambda c: str(c["sel"])[:20])
def test_selection_is_c_k_plus_t_mod_s(case: dict) -> None:
    blocks, k, s = case["num_blocks"], case["keys_per_block"], case["num_minhashes"]
    assert case["sel"] == [[(c * k + t) % s for t in range(k)] for c in range(blocks)]


def test_minhash_is_the_min_over_each_tokens_rows() -> None:
    values = np.asarray([7, 7, 9, 7, 9])
    rows = np.asarray([10, 3, 5, 8, 2**31 + 4])  # rows are read mod 2^31
    unique, signatures = ref.minhash_signatures(values, rows, seed=5, num_minhashes=6, bits=5)
    ga, gb = ref.minhash_params(5, 6)
    assert signatures.dtype == np.uint8 and signatures.shape == (2, 6)
    for i, v in enumerate(unique.tolist()):
        r = [int(x) % (1 << 31) for x in rows[values == v]]
        expected = [min((int(ga[s]) * x + int(gb[s])) % P for x in r) % 32 for s in range(6)]
        assert signatures[i].tolist() == expected


@pytest.mark.parametrize("case", GOLDEN["lma"], ids=lambda c: c["name"])
def test_golden_lma_against_python_integers(case: dict) -> None:
    """Sampled tokens: h(0, c, sum_t sig[sel(c, t)] 256^t); others: h(f, c, v), read from the docs."""
    params = ref.HashParams.from_dict(case["params"])
    m, dim, z, k = case["m"], case["embedding_dim"], case["block_size"], case["keys_per_block"]
    keys, offsets, sig = case["keys"], case["offsets"], case["signatures"]
    s = case["num_minhashes"]
    for row, out in zip(case["ids"], case["block_offsets"], strict=True):
        for f, v in enumerate(row):
            own = keys[offsets[f]:offsets[f + 1]]
            expected = []
            for c in range(dim // z):
                if v in own:
                    signature = sig[offsets[f] + own.index(v)]
                    code = sum(signature[(c * k + t) % s] << (8 * t) for t in range(k))
                    expected.append(h_python(params, 0, c, code) % (m - z + 1))
                else:
                    expected.append(h_python(params, f, c, v) % (m - z + 1))
            assert out[f] == expected


def test_tokens_with_equal_signatures_share_every_block_across_features() -> None:
    params = ref.HashParams.from_seed(3, 4, 1)
    keys, offsets = np.asarray([5, 11, 2**40]), np.asarray([0, 1, 2, 3])
    signatures = np.asarray([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 5]], dtype=np.uint8)
    starts = ref.lma_offsets(np.asarray([[5, 11, 2**40]]), keys, offsets, signatures, params, 10_000, 8, 2)
    assert starts[0, 0].tolist() == starts[0, 1].tolist()  # same signature in features 0 and 1
    # k = 2 of S = 4: blocks 0 and 2 read minhashes (0, 1), equal; blocks 1 and 3 read (2, 3), not equal
    assert starts[0, 2, [0, 2]].tolist() == starts[0, 0, [0, 2]].tolist()
    assert starts[0, 2, 1] != starts[0, 0, 1]
    unknown = ref.lma_offsets(np.asarray([[6, 11, 7]]), keys, offsets, signatures, params, 10_000, 8, 2)
    robe = ref.robe_offsets(np.asarray([[6, 11, 7]]), params, 10_000, 8, 2)
    assert unknown[0, 0].tolist() == robe[0, 0].tolist() and unknown[0, 2].tolist() == robe[0, 2].tolist()


def test_share_probability_follows_jaccard_to_the_k() -> None:
    p = ref.share_probability(np.asarray([0.0, 0.5, 1.0]), keys_per_block=2, bits=8, m=10**6)
    assert p[2] == pytest.approx(1.0) and p[1] == pytest.approx((0.5 + 0.5 / 256) ** 2, rel=1e-3)
    assert p[0] == pytest.approx(2.0**-16 + 1e-6, rel=1e-2)


def test_batch_shape_does_not_change_offsets() -> None:
    params = ref.HashParams.from_seed(2, 2, 0)
    ids = np.asarray([[1, 2], [3, 4]])
    whole = ref.robe_offsets(ids, params, 1000, 4, 2)
    rows = np.concatenate([ref.robe_offsets(ids[i : i + 1], params, 1000, 4, 2) for i in range(2)])
    np.testing.assert_array_equal(whole, rows)


@pytest.mark.parametrize(("num_minhashes", "keys_per_block"), [(4, 5), (8, 7), (8, 0), (0, 1), (256, 2)])
def test_lma_shape_limits(num_minhashes: int, keys_per_block: int) -> None:
    """k <= min(S, 6) keeps codes below 2^48 (exact in float64); S <= 255."""
    with pytest.raises(ValueError, match=r"keys_per_block|minhashes"):
        ref.check_lma_shape(num_minhashes, keys_per_block)
