"""DLRM parts: presets, shapes with and without dense features, interaction, gradients reach every part."""

from __future__ import annotations

import pytest
import torch

from training.dlrm.embeddings import HashConfig, HashEmbedding, RobeConfig, RobeEmbedding
from training.dlrm.model import DLRM, DLRMConfig, DotInteraction


def test_presets_match_the_design() -> None:
    kaggle = DLRMConfig.preset("kaggle", num_dense=13, num_features=26)
    assert kaggle.embedding_dim == 16
    assert (kaggle.bottom_mlp, kaggle.top_mlp) == ((512, 256, 64, 16), (512, 256, 1))
    terabyte = DLRMConfig.preset("terabyte", num_dense=13, num_features=26)
    assert terabyte.embedding_dim == 128 and terabyte.bottom_mlp == (512, 256, 128)
    assert terabyte.top_mlp == (1024, 1024, 512, 256, 1)
    assert kaggle.interaction_width == 16 + 27 * 26 // 2


def test_unknown_preset_and_bad_shapes() -> None:
    with pytest.raises(ValueError, match="unknown config 'huge'; choose one of tiny, kaggle, terabyte"):
        DLRMConfig.preset("huge", 13, 26)
    with pytest.raises(ValueError, match="must end with embedding_dim"):
        DLRMConfig("x", 13, 26, 16, (64, 8), (1,))
    with pytest.raises(ValueError, match="must end with 1"):
        DLRMConfig("x", 13, 26, 16, (16,), (8,))


def test_dot_interaction_is_the_lower_triangle() -> None:
    vectors = torch.arange(12, dtype=torch.float32).view(1, 3, 4)  # (B, n, d)
    got = DotInteraction(3)(vectors)
    v = vectors[0]
    expected = torch.stack([v[1] @ v[0], v[2] @ v[0], v[2] @ v[1]])
    torch.testing.assert_close(got[0], expected)


@pytest.mark.parametrize("num_dense", [13, 0])
def test_forward_backward_reach_every_part(num_dense: int) -> None:
    torch.manual_seed(0)
    config = DLRMConfig.preset("tiny", num_dense=num_dense, num_features=5)
    model = DLRM(config, RobeEmbedding(RobeConfig(5, config.embedding_dim, memory_size=500, block_size=4)))
    dense = torch.randn(7, num_dense)
    categorical = torch.randint(0, 2**40, (7, 5))
    logits = model(dense, categorical)
    assert logits.shape == (7,)
    logits.sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert (model.dense_arch is None) == (num_dense == 0)


def test_model_is_independent_of_the_embedding_class() -> None:
    config = DLRMConfig.preset("tiny", num_dense=2, num_features=3)
    hashed = DLRM(config, HashEmbedding(HashConfig(3, config.embedding_dim, rows=(4, 4, 4))))
    assert hashed(torch.zeros(2, 2), torch.zeros(2, 3, dtype=torch.int64)).shape == (2,)
