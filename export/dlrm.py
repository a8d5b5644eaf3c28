"""DLRM checkpoint -> exportable torch module whose embedding lookup is ONE robeserve custom op.

The exported graph takes what a client has: RAW Criteo dense counts (the graph applies
``log(max(x, 0) + 1)``, the transform the shards were preprocessed with) and raw categorical ids
(int64, 0 <= id < 2^62, 0 = missing); it returns the click probability.

==========  ==============================================================
input       ``dense`` float32 [B, num_dense] raw counts (absent when num_dense == 0)
input       ``categorical`` int64 [B, F]
output      ``probability`` float32 [B]
==========  ==============================================================
"""

from __future__ import annotations

import copy
import logging

import torch
import torch.nn.functional as F
from torch import nn

from export import ops  # registers the robeserve:: torch ops
from training.dlrm.embeddings import (
    CompressedEmbedding,
    FullEmbedding,
    HashConfig,
    HashEmbedding,
    LmaEmbedding,
    RobeEmbedding,
)
from training.dlrm.model import DLRM

logger = logging.getLogger(__name__)

DENSE_PREPROCESSING = "log1p_clip0"  # log(1 + max(x, 0)), named as the service names it


def dense_transform(dense: torch.Tensor) -> torch.Tensor:
    """Raw counts -> model inputs, exactly as the shards were preprocessed (negative counts clip to 0)."""
    return torch.log1p(torch.clamp(dense, min=0.0))


class _HashArgs(nn.Module):
    """Holds the hash coefficients of an embedding as plain int lists (they become node attributes)."""

    def __init__(self, embedding: CompressedEmbedding) -> None:
        super().__init__()
        params = embedding.hash_params()
        if params is None:
            raise ValueError(f"{type(embedding).__name__} has no hash parameters")
        self.hash = tuple(getattr(params, name).tolist() for name in ("a1", "a2", "c", "g1", "g2"))


class RobeLookup(_HashArgs):
    """``robeserve::robe_embedding`` over the trained shared array."""

    def __init__(self, embedding: RobeEmbedding) -> None:
        super().__init__(embedding)
        self.memory = embedding.memory
        self.geometry = (embedding.config.embedding_dim, embedding.config.block_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ops.robe_embedding(ids, self.memory, *self.geometry, *self.hash)  # (B, F, d)


class LmaLookup(_HashArgs):
    """``robeserve::lma_embedding`` over the trained shared array and learned signatures."""

    def __init__(self, embedding: LmaEmbedding) -> None:
        super().__init__(embedding)
        self.memory = embedding.memory
        for name in ("keys", "offsets", "signatures"):
            self.register_buffer(name, embedding.get_buffer(name).clone())
        self.geometry = (embedding.config.embedding_dim, embedding.config.block_size)
        self.keys_per_block = embedding.config.keys_per_block

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return ops.lma_embedding(ids, self.memory, self.keys, self.offsets, self.signatures, *self.geometry,
                                 *self.hash, self.keys_per_block)  # (B, F, d)


class FullLookup(nn.Module):
    """``robeserve::vocab_lookup`` then a plain Gather of the concatenated table."""

    def __init__(self, embedding: FullEmbedding) -> None:
        super().__init__()
        self.weight = embedding.weight
        self.register_buffer("keys", embedding.get_buffer("keys").clone())
        self.register_buffer("offsets", embedding.get_buffer("offsets").clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ops.vocab_lookup(ids, self.keys, self.offsets), self.weight)  # (B, F, d)


class HashLookup(_HashArgs):
    """``robeserve::hash_rows`` (inlined into standard ops) then a Gather of the concatenated tables."""

    def __init__(self, embedding: HashEmbedding) -> None:
        super().__init__(embedding)
        self.weight = embedding.weight
        config = embedding.config
        assert isinstance(config, HashConfig)
        self.rows = list(config.rows)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ops.hash_rows(ids, *self.hash, self.rows), self.weight)  # (B, F, d)


def lookup_module(embedding: nn.Module) -> nn.Module:
    """The export twin of a trained embedding module (shares its weights)."""
    if isinstance(embedding, LmaEmbedding):  # before RobeEmbedding, its base class
        return LmaLookup(embedding)
    if isinstance(embedding, RobeEmbedding):
        return RobeLookup(embedding)
    if isinstance(embedding, FullEmbedding):
        return FullLookup(embedding)
    if isinstance(embedding, HashEmbedding):
        return HashLookup(embedding)
    raise ValueError(f"cannot export embedding module {type(embedding).__name__}")


class CtrModel(nn.Module):
    """Raw client inputs -> click probability around a DLRM (the graph that gets exported).

    Args:
        dlrm: the trained model; its embedding is used as is (``exportable=False``, the torch reference)
            or replaced by its custom-op twin (``exportable=True``).
        exportable: use the custom-op twin.
    """

    def __init__(self, dlrm: DLRM, exportable: bool) -> None:
        super().__init__()
        self.dlrm = copy.copy(dlrm)  # shallow: shares every weight
        self.dlrm._modules = dict(dlrm._modules)
        if exportable:
            self.dlrm.embedding = lookup_module(dlrm.compressed_embedding)

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Raw dense counts [B, num_dense] and ids [B, F] -> probability [B]."""
        return torch.sigmoid(self.dlrm(dense_transform(dense), categorical))


class CategoricalCtrModel(CtrModel):
    """``CtrModel`` of a dataset without dense features (Avazu): ids [B, F] -> probability [B]."""

    def forward(self, categorical: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        no_dense = torch.zeros((categorical.shape[0], 0), dtype=torch.float32)
        return torch.sigmoid(self.dlrm(no_dense, categorical))


def ctr_model(dlrm: DLRM, exportable: bool) -> CtrModel:
    """The client-facing model: with a ``dense`` input when the DLRM has dense features."""
    cls = CtrModel if dlrm.config.num_dense else CategoricalCtrModel
    return cls(dlrm, exportable).eval()
