"""Embedding modules against kernels.reference: golden vectors, property tests, gradients, sizing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import reference as ref
from training.dlrm import hashing
from training.dlrm.budget import BudgetError, full_table_bytes, hash_table_rows, parse_size
from training.dlrm.embeddings import (
    FullConfig,
    FullEmbedding,
    HashConfig,
    HashEmbedding,
    LmaConfig,
    LmaEmbedding,
    Method,
    RobeConfig,
    RobeEmbedding,
    Signatures,
    build_vocabulary,
)
from training.dlrm.factory import (
    EmbeddingSpec,
    build_embedding,
    embedding_from_state,
    embedding_state,
    full_bytes,
)
from training.dlrm.signatures import SignatureSampleError, learn_signatures

GOLDEN = json.loads((Path(__file__).parents[1] / "golden" / "hash_golden.json").read_text())
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device"))]


def _params(case: dict[str, Any]) -> ref.HashParams:
    return ref.HashParams.from_dict(case["params"])


def _robe(params: ref.HashParams, m: int, dim: int, block_size: int) -> RobeEmbedding:
    config = RobeConfig(params.num_features, dim, memory_size=m, block_size=block_size, seed=params.seed)
    module = RobeEmbedding(replace(config, memory_size=config.block_size))  # golden m reaches 2^31 floats
    module.config = config  # indices only: the small memory is never read
    features, blocks = hashing.coefficient_tensors(params)
    module.coefficients.copy_(features)
    module.block_coefficients.copy_(blocks)
    return module


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GOLDEN["robe"], ids=lambda c: c["name"])
def test_robe_indices_match_golden(case: dict[str, Any], device: str) -> None:
    module = _robe(_params(case), case["m"], case["embedding_dim"], case["block_size"]).to(device)
    ids = torch.tensor(case["ids"], device=device)
    assert module.block_offsets(ids).tolist() == case["offsets"]
    assert module.indices(ids).tolist() == case["indices"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GOLDEN["hash"], ids=lambda c: c["name"])
def test_hash_blocks_match_golden(case: dict[str, Any], device: str) -> None:
    features, blocks = (t.to(device) for t in hashing.coefficient_tensors(_params(case)))
    got = hashing.hash_blocks(torch.tensor(case["ids"], device=device), features, blocks)
    assert got.tolist() == case["h"]


@pytest.mark.parametrize("case", GOLDEN["hash_rows"], ids=lambda c: c["name"])
def test_hash_rows_match_golden(case: dict[str, Any]) -> None:
    features, blocks = hashing.coefficient_tensors(_params(case))
    got = hashing.hash_rows(torch.tensor(case["ids"]), features, blocks, torch.tensor(case["rows"]))
    assert got.tolist() == case["out"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GOLDEN["vocab"], ids=lambda c: c["name"])
def test_vocab_lookup_matches_golden(case: dict[str, Any], device: str) -> None:
    keys, offsets = np.asarray(case["keys"], np.int64), np.asarray(case["offsets"], np.int64)
    module = FullEmbedding(FullConfig(len(offsets) - 1, 2), keys, offsets).to(device)
    assert module.indices(torch.tensor(case["ids"], device=device)).tolist() == case["rows"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", GOLDEN["lma"], ids=lambda c: c["name"])
def test_lma_indices_match_golden(case: dict[str, Any], device: str) -> None:
    params = _params(case)
    signatures = Signatures(np.asarray(case["keys"], np.int64), np.asarray(case["offsets"], np.int64),
                            np.asarray(case["signatures"], np.uint8))
    config = LmaConfig(params.num_features, case["embedding_dim"], memory_size=case["m"],
                       block_size=case["block_size"], seed=params.seed, keys_per_block=case["keys_per_block"],
                       num_minhashes=case["num_minhashes"])
    small = LmaConfig(**{**config.__dict__, "memory_size": config.block_size})  # golden m reaches 2^31 floats
    module = LmaEmbedding(small, signatures)
    module.config = config  # indices only: the small memory is never read
    module = module.to(device)
    ids = torch.tensor(case["ids"], device=device)
    assert module.block_offsets(ids).tolist() == case["block_offsets"]
    assert module.indices(ids).tolist() == case["indices"]


@pytest.mark.parametrize("case", GOLDEN["minhash"], ids=lambda c: c["name"])
def test_golden_minhash_is_current(case: dict[str, Any]) -> None:
    values, rows = np.asarray(case["values"]), np.asarray(case["rows"])
    unique, signatures = ref.minhash_signatures(values, rows, case["seed"], case["num_minhashes"],
                                                case["bits"])
    assert unique.tolist() == case["unique"] and signatures.tolist() == case["signatures"]


def test_golden_file_is_current() -> None:
    from importlib import util

    path = Path(__file__).parents[1] / "golden" / "make_golden.py"
    spec = util.spec_from_file_location("make_golden", path)
    assert spec is not None and spec.loader is not None
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert json.loads(module.render(module.build_golden())) == GOLDEN


EDGE_IDS = st.sampled_from(GOLDEN["special_ids"]) | st.integers(0, ref.ID_LIMIT - 1) | st.integers(0, 2**33)


@st.composite
def robe_shapes(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    block_size = draw(st.integers(1, 8))
    dim = block_size * draw(st.integers(1, 4))
    m = draw(st.integers(block_size, 2**40))
    return draw(st.integers(1, 5)), dim, block_size, m, draw(st.integers(0, 2**32))


@settings(max_examples=60, deadline=None)
@given(shape=robe_shapes(), data=st.data())
def test_robe_and_hash_match_reference(shape: tuple[int, int, int, int, int], data: st.DataObject) -> None:
    num_features, dim, block_size, m, seed = shape
    ids = np.asarray(data.draw(st.lists(st.lists(EDGE_IDS, min_size=num_features, max_size=num_features),
                                        min_size=1, max_size=4)), dtype=np.int64)
    params = ref.HashParams.from_seed(num_features, dim // block_size, seed)
    module = _robe(params, m, dim, block_size)
    np.testing.assert_array_equal(module.indices(torch.from_numpy(ids)).numpy(),
                                  ref.robe_indices(ids, params, m, dim, block_size))
    counts = st.lists(st.integers(1, 2**40), min_size=num_features, max_size=num_features)
    rows = np.asarray(data.draw(counts))
    features, blocks = hashing.coefficient_tensors(params)
    got = hashing.hash_rows(torch.from_numpy(ids), features, blocks, torch.from_numpy(rows))
    np.testing.assert_array_equal(got.numpy(), ref.hash_rows(ids, params, rows))


@settings(max_examples=40, deadline=None)
@given(shape=robe_shapes(), keys_per_block=st.integers(1, 6), extra=st.integers(0, 10), data=st.data())
def test_lma_matches_reference(shape: tuple[int, int, int, int, int], keys_per_block: int, extra: int,
                               data: st.DataObject) -> None:
    num_features, dim, block_size, m, seed = shape
    ids = np.asarray(data.draw(st.lists(st.lists(EDGE_IDS, min_size=num_features, max_size=num_features),
                                        min_size=1, max_size=4)), dtype=np.int64)
    known = [sorted(set(ids[::2, f].tolist())) for f in range(num_features)]
    keys = np.asarray([k for feature in known for k in feature], dtype=np.int64)
    offsets = np.cumsum([0] + [len(k) for k in known]).astype(np.int64)
    num_minhashes = keys_per_block + extra
    sig = np.random.default_rng(seed).integers(0, 4, size=(len(keys), num_minhashes)).astype(np.uint8)
    params = ref.HashParams.from_seed(num_features, dim // block_size, seed)
    config = LmaConfig(num_features, dim, memory_size=min(m, 10_000), block_size=block_size, seed=seed,
                       keys_per_block=keys_per_block, num_minhashes=num_minhashes)
    module = LmaEmbedding(config, Signatures(keys, offsets, sig))
    expected = ref.lma_indices(ids, keys, offsets, sig, params, config.memory_size, dim, block_size,
                               keys_per_block)
    np.testing.assert_array_equal(module.indices(torch.from_numpy(ids)).numpy(), expected)


@pytest.mark.parametrize("bad", GOLDEN["invalid_ids"][:2])
def test_invalid_ids_are_rejected(bad: int) -> None:
    module = RobeEmbedding(RobeConfig(2, 4, memory_size=16, block_size=2))
    with pytest.raises(ref.InvalidIdError):
        module(torch.tensor([[0, bad]]))


def test_id_at_limit_is_rejected() -> None:
    with pytest.raises(ref.InvalidIdError, match="2\\^62"):
        hashing.check_ids(torch.tensor([ref.ID_LIMIT]))


@pytest.mark.parametrize("block_size", [1, 4, 8])
def test_robe_forward_and_backward_match_numpy(block_size: int) -> None:
    module = RobeEmbedding(RobeConfig(3, 8, memory_size=50, block_size=block_size, seed=3))
    ids = np.asarray([[0, 1, 2**62 - 1], [2**31, 5, 5], [0, 0, 0]], dtype=np.int64)
    out = module(torch.from_numpy(ids))
    memory = module.memory.detach().numpy()
    params = module.hash_params()
    assert params is not None
    np.testing.assert_array_equal(out.detach().numpy(), ref.robe_lookup(ids, memory, params, 8, block_size))
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * upstream).sum().backward()
    expected = np.zeros_like(memory)
    np.add.at(expected, ref.robe_indices(ids, params, 50, 8, block_size).ravel(), upstream.numpy().ravel())
    assert module.memory.grad is not None and module.memory.grad.layout == torch.strided
    np.testing.assert_allclose(module.memory.grad.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_full_embedding_vocabulary_and_oov() -> None:
    categorical = np.asarray([[5, 7], [5, 9], [6, 9], [5, 2**62 - 1]], dtype=np.int64)
    module = FullEmbedding.from_data(FullConfig(2, 4, min_count=2), categorical)
    assert module.keys.tolist() == [5, 9] and module.offsets.tolist() == [0, 1, 2]
    ids = np.asarray([[5, 9], [6, 7], [2**62 - 1, 0]], dtype=np.int64)
    rows = module.indices(torch.from_numpy(ids)).numpy()
    np.testing.assert_array_equal(rows, ref.vocab_lookup(ids, [5, 9], [0, 1, 2]))
    assert rows.tolist() == [[0, 2], [1, 3], [1, 3]]  # OOV rows: offsets[f+1] + f
    assert module.weight.shape == (4, 4)
    assert module.parameter_bytes() == 4 * 4 * 4 + 2 * 8 + 3 * 8


def test_hash_embedding_sparse_gradient() -> None:
    module = HashEmbedding(HashConfig(2, 4, rows=(3, 5), seed=1))
    module.sparse_grad = True
    module(torch.tensor([[1, 2], [3, 4]])).sum().backward()
    assert module.weight.grad is not None and module.weight.grad.is_sparse
    assert module.indices(torch.tensor([[1, 2]])).max() < 8


def _categorical(rows: int = 3000, features: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    columns = [rng.zipf(1.3, size=rows) % (50 * (f + 1)) for f in range(features)]
    return np.stack(columns, axis=1).astype(np.int64)


@pytest.mark.parametrize("method", [Method.HASH, Method.ROBE, Method.LMA])
@pytest.mark.parametrize("budget", [300, 2000, 20_000])
def test_built_embedding_fits_budget(method: Method, budget: int) -> None:
    categorical = _categorical()
    spec = EmbeddingSpec(method, block_size=2)
    module = build_embedding(spec, 8, categorical, budget)
    assert module.parameter_bytes() <= budget
    assert module.parameter_bytes() > budget * 0.8
    assert module.array_bytes() <= module.parameter_bytes()
    assert module(torch.from_numpy(categorical[:5])).shape == (5, 4, 8)


def test_budget_errors() -> None:
    categorical = _categorical()
    with pytest.raises(BudgetError, match="smaller than one block"):
        build_embedding(EmbeddingSpec(Method.ROBE, block_size=8), 8, categorical, 100)
    with pytest.raises(ValueError, match="must divide"):
        build_embedding(EmbeddingSpec(Method.ROBE, block_size=3), 8, categorical, 10_000)
    with pytest.raises(BudgetError):
        parse_size("2 parsecs")
    assert parse_size("2MB") == 2_000_000 and parse_size("1.5KiB") == 1536 and parse_size("64") == 64


def test_hash_rows_water_filling() -> None:
    assert hash_table_rows([2, 1000, 1000], 100) == (3, 48, 49)
    assert sum(hash_table_rows([10**6] * 26, 10**5)) <= 10**5
    assert full_bytes(_categorical(), 8) == full_table_bytes(len(build_vocabulary(_categorical())[0]), 4, 8)


def test_learned_signatures_match_reference() -> None:
    categorical = _categorical(rows=500)
    sig = learn_signatures(categorical, max_tokens=40, sample_size=500, seed=1, minhash_seed=2,
                           num_minhashes=6, bits=7)
    assert len(sig.keys) <= 40 and sig.offsets[-1] == len(sig.keys)
    assert sig.signatures.shape == (len(sig.keys), 6)
    values = categorical[:, 0]
    mask = np.isin(values, sig.keys[sig.offsets[0]:sig.offsets[1]])
    unique, expected = ref.minhash_signatures(values[mask], np.arange(500)[mask], 2, 6, 7)
    assert unique.tolist() == sig.keys[:sig.offsets[1]].tolist()
    assert expected.tolist() == sig.signatures[:sig.offsets[1]].tolist()


def test_aliased_tokens_of_different_features_share_memory() -> None:
    """Feature 1 copies feature 0 (an alias): the tokens' row sets are equal, so every block is shared."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 30, size=2000)
    categorical = np.stack([base, base + 1000, rng.integers(0, 30, size=2000)], axis=1).astype(np.int64)
    module = build_embedding(EmbeddingSpec(Method.LMA, block_size=1), 8, categorical, 50_000)
    assert isinstance(module, LmaEmbedding) and module.keys.numel() == 90
    starts = module.block_offsets(torch.tensor([[3, 1003, 3]]))[0]
    assert starts[0].tolist() == starts[1].tolist()  # aliases: one embedding
    assert (starts[0] != starts[2]).sum() >= 6  # unrelated token of feature 2: ~1/m shared blocks


def test_lma_at_equal_array_bytes_gets_robes_array_and_the_tables_on_top() -> None:
    """The LMA paper's accounting: M as large as ROBE-Z's at the budget, keys and signatures on top (and
    counted in parameter_bytes); the default accounting keeps every serving byte within the budget."""
    categorical, budget = _categorical(), 20_000
    robe = build_embedding(EmbeddingSpec(Method.ROBE, block_size=1), 8, categorical, budget)
    serving = build_embedding(EmbeddingSpec(Method.LMA, block_size=1), 8, categorical, budget)
    array_spec = EmbeddingSpec(Method.LMA, block_size=1, lma_budget="array")
    array = build_embedding(array_spec, 8, categorical, budget)
    assert isinstance(serving, LmaEmbedding) and isinstance(array, LmaEmbedding)
    assert array.array_bytes() == robe.array_bytes() > serving.array_bytes()
    assert array.keys.tolist() == serving.keys.tolist()  # the same signature table
    tables = array.parameter_bytes() - robe.parameter_bytes()
    assert tables == array.keys.numel() * 8 + (4 + 1) * 8 + array.signatures.numel() > 0
    assert serving.parameter_bytes() <= budget < array.parameter_bytes()
    with pytest.raises(ValueError, match="lma_budget must be one of serving, array, got 'disk'"):
        EmbeddingSpec(Method.LMA, lma_budget="disk")


def test_tokens_above_the_max_share_get_no_signature_and_keep_robe_locations() -> None:
    categorical = _categorical(rows=2000)
    share = np.array([np.mean(categorical[:, f] == v) for f, v in [(0, 1), (1, 1)]])
    assert (share > 0.05).all()  # zipf: value 1 is in far more than 5% of the rows
    every = learn_signatures(categorical, 10_000, sample_size=2000, seed=0, minhash_seed=0)
    capped = learn_signatures(categorical, 10_000, sample_size=2000, seed=0, minhash_seed=0, max_share=0.05)
    for f in range(categorical.shape[1]):
        values, counts = np.unique(categorical[:, f], return_counts=True)
        kept = capped.keys[capped.offsets[f]:capped.offsets[f + 1]].tolist()
        assert kept == values[counts <= 0.05 * 2000].tolist()
        assert every.keys[every.offsets[f]:every.offsets[f + 1]].tolist() == values.tolist()
    module = build_embedding(EmbeddingSpec(Method.LMA, block_size=1, max_token_share=0.05), 8, categorical,
                             50_000)
    robe = RobeEmbedding(RobeConfig(4, 8, memory_size=module.config.memory_size, block_size=1))
    ids = torch.tensor([[1, 1, 1, 1]])
    assert module.block_offsets(ids).tolist() == robe.block_offsets(ids).tolist()  # head: ROBE-Z
    with pytest.raises(ValueError, match="max_token_share must be in \\(0, 1\\], got 0"):
        EmbeddingSpec(Method.LMA, max_token_share=0)


def test_signature_sample_below_125k_rows_is_refused_when_the_data_has_more() -> None:
    categorical = np.zeros((130_000, 2), dtype=np.int64)
    with pytest.raises(SignatureSampleError, match="100,000 rows is below the 125,000"):
        learn_signatures(categorical, 10, sample_size=100_000, seed=0, minhash_seed=0)
    small = _categorical(rows=500)
    assert len(learn_signatures(small, 10, sample_size=500, seed=0, minhash_seed=0).keys) == 10


def test_k_larger_than_the_minhashes_is_refused() -> None:
    with pytest.raises(ValueError,
                       match="keys_per_block k=9 must be in \\[1, 6\\] and at most the 8 minhashes"):
        EmbeddingSpec(Method.LMA, keys_per_block=9, num_minhashes=8)
    with pytest.raises(ValueError, match="at most the 2 minhashes"):
        EmbeddingSpec(Method.LMA, keys_per_block=3, num_minhashes=2)


def test_checkpoint_state_with_another_hash_version_is_refused() -> None:
    module = build_embedding(EmbeddingSpec(Method.ROBE), 4, _categorical(), 5000)
    state = embedding_state(module)
    with pytest.raises(ref.HashVersionError, match="hash version 1"):
        embedding_from_state({**state, "hash_version": 1})


@pytest.mark.parametrize("method", list(Method))
def test_state_round_trip(method: Method) -> None:
    categorical = _categorical()
    module = build_embedding(EmbeddingSpec(method), 4, categorical, None if method is Method.FULL else 5000)
    rebuilt = embedding_from_state(embedding_state(module))
    rebuilt.load_state_dict(module.state_dict())
    ids = torch.from_numpy(categorical[:20])
    torch.testing.assert_close(rebuilt(ids), module(ids), rtol=0, atol=0)
    assert rebuilt.parameter_bytes() == module.parameter_bytes()
