"""DLRM from named parts: DenseArch (bottom MLP), the embedding module passed in, dot interaction, OverArch.

The compression method is the embedding module given to ``DLRM``: the rest of the model never knows it.
Presets (DESIGN.md section 7): ``kaggle`` dim 16, bottom 13-512-256-64-16, top 512-256-1;
``terabyte`` dim 128, bottom 13-512-256-128, top 1024-1024-512-256-1; ``tiny`` (tests, the real samples)
dim 16, bottom 13-64-16, top 64-32-1. Datasets without dense features (Avazu) get no DenseArch: the
interaction then only sees the embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise

import torch
from torch import nn

from training.dlrm.embeddings import CompressedEmbedding


class Preset(StrEnum):
    TINY = "tiny"
    KAGGLE = "kaggle"
    TERABYTE = "terabyte"


_PRESETS: dict[Preset, tuple[int, tuple[int, ...], tuple[int, ...]]] = {
    Preset.TINY: (16, (64, 16), (64, 32, 1)),
    Preset.KAGGLE: (16, (512, 256, 64, 16), (512, 256, 1)),
    Preset.TERABYTE: (128, (512, 256, 128), (1024, 1024, 512, 256, 1)),
}


@dataclass(frozen=True)
class DLRMConfig:
    """The architecture around the embedding.

    Args:
        name: the preset it came from (or any label).
        num_dense: dense inputs (13 for Criteo, 0 for Avazu: no bottom MLP).
        num_features: categorical features F.
        embedding_dim: d, also the bottom MLP's output width.
        bottom_mlp: bottom layer widths after the input, ending with ``embedding_dim``.
        top_mlp: top layer widths after the interaction, ending with 1 (the logit).

    Example:
        >>> DLRMConfig.preset("tiny", num_dense=13, num_features=26).top_mlp
        (64, 32, 1)
    """

    name: str
    num_dense: int
    num_features: int
    embedding_dim: int
    bottom_mlp: tuple[int, ...]
    top_mlp: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.num_dense < 0 or self.num_features < 1 or self.embedding_dim < 1:
            raise ValueError(f"invalid DLRM shape: {self}")
        if self.num_dense and (not self.bottom_mlp or self.bottom_mlp[-1] != self.embedding_dim):
            raise ValueError(f"bottom MLP {self.bottom_mlp} must end with embedding_dim {self.embedding_dim}")
        widths = (*self.bottom_mlp, *self.top_mlp)
        if not self.top_mlp or self.top_mlp[-1] != 1 or min(widths) < 1:
            raise ValueError(f"top MLP {self.top_mlp} must end with 1 and all widths be positive")

    @classmethod
    def preset(cls, name: str, num_dense: int, num_features: int) -> DLRMConfig:
        """A named preset (raises ValueError naming the choices when unknown)."""
        try:
            preset = Preset(name)
        except ValueError:
            choices = ", ".join(p.value for p in Preset)
            raise ValueError(f"unknown config {name!r}; choose one of {choices}") from None
        dim, bottom, top = _PRESETS[preset]
        return cls(preset.value, num_dense, num_features, dim, bottom, top)

    @property
    def num_vectors(self) -> int:
        """Vectors entering the interaction: F embeddings plus the dense one when present."""
        return self.num_features + (1 if self.num_dense else 0)

    @property
    def interaction_width(self) -> int:
        """OverArch input: the pairwise dots, plus the dense vector when present."""
        pairs = self.num_vectors * (self.num_vectors - 1) // 2
        return pairs + (self.embedding_dim if self.num_dense else 0)


def mlp(widths: tuple[int, ...], final_activation: bool) -> nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]`` with ReLU between (and after, if asked)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(pairwise(widths)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(widths) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DenseArch(nn.Module):
    """Bottom MLP: dense features [B, num_dense] -> [B, d]."""

    def __init__(self, num_dense: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.mlp = mlp((num_dense, *widths), final_activation=True)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        return self.mlp(dense)


class DotInteraction(nn.Module):
    """Pairwise dot products of the vectors [B, n, d] (each pair once, no self-dots): [B, n(n-1)/2]."""

    rows: torch.Tensor
    cols: torch.Tensor

    def __init__(self, num_vectors: int) -> None:
        super().__init__()
        rows, cols = torch.tril_indices(num_vectors, num_vectors, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(vectors, vectors.transpose(1, 2))  # (B, n, n)
        return gram[:, self.rows, self.cols]  # (B, n(n-1)/2)


class OverArch(nn.Module):
    """Top MLP: interaction features -> one logit per sample [B]."""

    def __init__(self, in_features: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.mlp = mlp((in_features, *widths), final_activation=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features).squeeze(-1)


class DLRM(nn.Module):
    """DLRM around any embedding module with ``forward(ids [B, F]) -> [B, F, d]``.

    Args:
        config: the architecture.
        embedding: the (compressed) embedding of the categorical features.

    Example:
        >>> from training.dlrm.embeddings import RobeConfig, RobeEmbedding
        >>> cfg = DLRMConfig.preset("tiny", num_dense=13, num_features=26)
        >>> model = DLRM(cfg, RobeEmbedding(RobeConfig(26, 16, memory_size=1000, block_size=16)))
        >>> model(torch.zeros(2, 13), torch.zeros(2, 26, dtype=torch.int64)).shape
        torch.Size([2])
    """

    def __init__(self, config: DLRMConfig, embedding: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.dense_arch = DenseArch(config.num_dense, config.bottom_mlp) if config.num_dense else None
        self.embedding = embedding
        self.interaction = DotInteraction(config.num_vectors)
        self.over_arch = OverArch(config.interaction_width, config.top_mlp)

    @property
    def compressed_embedding(self) -> CompressedEmbedding:
        """The embedding as a ``CompressedEmbedding`` (checkpoints and export need its attributes)."""
        if not isinstance(self.embedding, CompressedEmbedding):
            raise TypeError(f"{type(self.embedding).__name__} is not a CompressedEmbedding")
        return self.embedding

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Logits [B] from dense [B, num_dense] float and categorical ids [B, F] int64."""
        sparse = self.embedding(categorical)  # (B, F, d)
        if self.dense_arch is None:
            return self.over_arch(self.interaction(sparse))
        dense_vector = self.dense_arch(dense)  # (B, d)
        vectors = torch.cat([dense_vector[:, None, :], sparse], dim=1)  # (B, F+1, d)
        return self.over_arch(torch.cat([dense_vector, self.interaction(vectors)], dim=1))
