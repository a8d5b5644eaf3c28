"""The PyTorch DLRM variants of the GPU benchmark, checked on the CPU against kernels.reference."""

from __future__ import annotations

import numpy as np
import torch

from kernels import reference as ref
from loadtest.shapes import get_shape
from loadtest.torch_models import (
    FullTables,
    IdDistribution,
    Variant,
    build_model,
    input_count,
    make_inputs,
    torch_lookup,
)

CPU = torch.device("cpu")


def test_torch_lookup_is_bit_exact_with_the_reference() -> None:
    params = ref.HashParams.from_seed(3, num_blocks=2, seed=7)
    memory = torch.randn(1000)
    ids = torch.tensor([[0, 1, 2**62 - 1], [2**31 - 1, 2**31, 12345]])
    got = torch_lookup(params, dim=8, block_size=4, device=CPU)(ids, memory)
    want = ref.robe_lookup(ids.numpy(), memory.numpy(), params, dim=8, block_size=4)
    np.testing.assert_array_equal(got.numpy(), want)


def test_full_tables_read_each_feature_from_its_own_rows() -> None:
    tables = FullTables((3, 5), dim=4, device=CPU)
    out = tables(torch.tensor([[2, 0], [0, 4]]))
    np.testing.assert_array_equal(out[0, 0], tables.weight[2].detach())
    np.testing.assert_array_equal(out[0, 1], tables.weight[3].detach())  # feature 1 starts at row 3
    np.testing.assert_array_equal(out[1, 1], tables.weight[7].detach())


def test_inputs_stay_in_range_and_zipf_ids_are_skewed() -> None:
    shape = get_shape("tiny")
    rows = torch.tensor(shape.rows)
    uniform = make_inputs(shape, 4096, 1, IdDistribution.UNIFORM, CPU)[0][1]
    zipf = make_inputs(shape, 4096, 1, IdDistribution.ZIPF, CPU)[0][1]
    for ids in (uniform, zipf):
        assert ids.dtype == torch.int64 and bool((ids >= 0).all()) and bool((ids < rows).all())
    big = int(np.argmax(shape.rows))
    assert (zipf[:, big] < shape.rows[big] // 10).float().mean() > 0.5  # log-uniform: most ids are small
    assert (uniform[:, big] < shape.rows[big] // 10).float().mean() < 0.2


def test_input_pool_is_bigger_than_a_gpu_cache() -> None:
    terabyte = get_shape("terabyte")
    assert input_count(terabyte, 512) * 512 * 26 * 128 * 4 >= 1 << 28
    assert input_count(terabyte, 16384) == 4


def test_variants_share_the_architecture_and_differ_in_the_embedding() -> None:
    shape = get_shape("tiny")
    dense, ids = make_inputs(shape, 8, 1, IdDistribution.UNIFORM, CPU)[0]
    with torch.inference_mode():
        full = build_model(Variant.FULL, shape, CPU)
        robe = build_model(Variant.ROBE_TORCH, shape, CPU)
        assert full(dense, ids).shape == robe(dense, ids).shape == (8,)
    layers = [type(m).__name__ for m in full.over_arch.modules()]
    assert layers == [type(m).__name__ for m in robe.over_arch.modules()]
    assert sum(p.numel() for p in robe.embedding.parameters()) == shape.robe_floats
