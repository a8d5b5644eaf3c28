"""Compressed embeddings: full tables, the hashing trick, ROBE-Z and LMA, behind one interface.

Every module maps raw ids int64 [B, F] (0 <= id < 2^62, 0 = missing) to float32 [B, F, d], splits the
index computation (``indices(ids)``, bit-exact with ``kernels.reference``) from the gather (``forward``),
counts what it needs at serving time in ``parameter_bytes()`` and keeps its frozen config in ``config``.

Attributes export reads (all plain tensors or ints, documented per class):

- ``FullEmbedding``: ``weight`` [K+F, d] (the parameter ``table.weight``), buffers ``keys`` [K] and
  ``offsets`` [F+1] (``VocabLookup``).
- ``HashEmbedding``: ``weight`` [sum(rows), d] (``table.weight``), buffers ``coefficients`` [3, F] (rows A1,
  A2, C), ``block_coefficients`` [2, 1] (G1, G2 of the one block), ``rows`` [F] and ``row_offsets`` [F]
  (first row of each feature's table), ``config.seed``.
- ``RobeEmbedding``: ``memory`` [m], ``coefficients`` [3, F], ``block_coefficients`` [2, d/Z],
  ``config.block_size``, ``config.seed``.
- ``LmaEmbedding``: as ROBE plus buffers ``keys`` [K], ``offsets`` [F+1], ``signatures`` uint8 [K, S] and
  ``config.keys_per_block``.

``hash_params()`` returns the coefficients as ``kernels.reference.HashParams`` (hash version 2).
``array_bytes()`` counts the weights alone (table or shared array), ``parameter_bytes()`` all serving bytes.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import torch
from torch import nn

from kernels import reference as ref
from training.dlrm import hashing
from training.dlrm.budget import FLOAT_BYTES, INT64_BYTES, full_table_bytes, hash_param_bytes

logger = logging.getLogger(__name__)


class Method(StrEnum):
    FULL = "full"
    HASH = "hash"
    ROBE = "robe"
    LMA = "lma"


@dataclass(frozen=True)
class EmbeddingConfig:
    """Shape shared by every method.

    Args:
        num_features: F, the number of categorical features.
        embedding_dim: d.
        init_scale: weights start uniform in [-init_scale, init_scale].
    """

    num_features: int
    embedding_dim: int
    init_scale: float = 0.05

    def __post_init__(self) -> None:
        if self.num_features < 1 or self.embedding_dim < 1:
            raise ValueError(f"need num_features >= 1 and embedding_dim >= 1, got {self}")
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale}")


@dataclass(frozen=True)
class FullConfig(EmbeddingConfig):
    """Full tables. ``min_count``: values seen fewer times in training share their feature's OOV row."""

    min_count: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")


@dataclass(frozen=True)
class HashConfig(EmbeddingConfig):
    """Hashing trick: feature ``f`` has its own table of ``rows[f]`` rows; ``seed`` draws the hash."""

    rows: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.rows) != self.num_features or min(self.rows) < 1:
            raise ValueError(f"rows must be {self.num_features} positive counts, got {self.rows}")


@dataclass(frozen=True)
class RobeConfig(EmbeddingConfig):
    """ROBE-Z: one shared array of ``memory_size`` floats read in blocks of ``block_size`` (Z | d)."""

    memory_size: int = 0
    block_size: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size < 1 or self.embedding_dim % self.block_size:
            raise ValueError(f"block size Z={self.block_size} must divide "
                             f"embedding_dim d={self.embedding_dim}")
        if self.memory_size < self.block_size:
            raise ValueError(f"memory of {self.memory_size} floats is smaller than "
                             f"one block of {self.block_size}")

    @property
    def num_blocks(self) -> int:
        return self.embedding_dim // self.block_size


@dataclass(frozen=True)
class LmaConfig(RobeConfig):
    """LMA: ROBE-Z whose sampled tokens are addressed by block codes of their minhash signatures.

    Args:
        keys_per_block: k, minhashes combined into each block code (1..6, at most ``num_minhashes``).
        num_minhashes: S (K in DESIGN.md section 1), minhashes per token signature.
        minhash_bits: b, bits kept of each minhash (1..8, stored one uint8 each).
        minhash_seed: seed of the row hashes g_s of ``kernels.reference.minhash_signatures``.
    """

    keys_per_block: int = ref.DEFAULT_KEYS_PER_BLOCK
    num_minhashes: int = ref.DEFAULT_NUM_MINHASHES
    minhash_bits: int = ref.DEFAULT_MINHASH_BITS
    minhash_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        ref.check_lma_shape(self.num_minhashes, self.keys_per_block)
        if not 1 <= self.minhash_bits <= ref.MAX_MINHASH_BITS:
            raise ValueError(f"minhash_bits must be in [1, {ref.MAX_MINHASH_BITS}], got {self.minhash_bits}")


class CompressedEmbedding(nn.Module):
    """Interface of every embedding: ``forward(ids [B, F]) -> [B, F, d]``."""

    method: Method
    config: EmbeddingConfig

    @abstractmethod
    def indices(self, ids: torch.Tensor) -> torch.Tensor:
        """Where each id reads: rows [B, F] of a table, or elements [B, F, d] of a shared array."""

    @abstractmethod
    def parameter_bytes(self) -> int:
        """Bytes needed at serving time: weights plus hash, vocabulary and signature tables."""

    @abstractmethod
    def array_bytes(self) -> int:
        """Bytes of the weights alone (the table, or the shared array M), as the papers count memory."""

    def export_arrays(self) -> dict[str, np.ndarray]:
        """Non-weight tensors a checkpoint must keep to rebuild this module (vocabulary, signatures)."""
        return {}

    def hash_params(self) -> ref.HashParams | None:
        coefficients = getattr(self, "coefficients", None)
        if coefficients is None:
            return None
        return hashing.params_from_tensors(getattr(self.config, "seed", 0), coefficients,
                                           self.get_buffer("block_coefficients"))

    def _register_hash(self, num_features: int, num_blocks: int, seed: int) -> None:
        features, blocks = hashing.coefficient_tensors(ref.HashParams.from_seed(num_features, num_blocks,
                                                                                seed))
        self.register_buffer("coefficients", features)
        self.register_buffer("block_coefficients", blocks)


def _uniform(shape: tuple[int, ...], scale: float, generator: torch.Generator | None) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-scale, scale, generator=generator))


class TableEmbedding(CompressedEmbedding):
    """A [rows, d] ``nn.Embedding`` table; ``sparse_grad`` gives sparse gradients (set it before wrapping in
    DDP, which finds sparse parameters through ``nn.Embedding.sparse``)."""

    def _make_table(self, rows: int, config: EmbeddingConfig, generator: torch.Generator | None) -> None:
        self.table = nn.Embedding(rows, config.embedding_dim)
        self.table.weight = _uniform((rows, config.embedding_dim), config.init_scale, generator)

    @property
    def weight(self) -> torch.Tensor:
        return self.table.weight

    @property
    def sparse_grad(self) -> bool:
        return self.table.sparse

    @sparse_grad.setter
    def sparse_grad(self, sparse: bool) -> None:
        self.table.sparse = sparse

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(self.indices(ids))  # (B, F, d)

    def array_bytes(self) -> int:
        return self.table.weight.numel() * FLOAT_BYTES


class FullEmbedding(TableEmbedding):
    """One row per known value (the vocabulary) plus one OOV row per feature, numbered as ``VocabLookup``.

    Args:
        config: the shape and ``min_count``.
        keys: int64 [K], feature ``f``'s sorted known values at ``keys[offsets[f]:offsets[f+1]]``.
        offsets: int64 [F+1].

    Example:
        >>> emb = FullEmbedding.from_data(FullConfig(2, 4), np.array([[5, 7], [5, 9]]))
        >>> emb(torch.tensor([[5, 9]])).shape
        torch.Size([1, 2, 4])
    """

    method = Method.FULL
    config: FullConfig
    keys: torch.Tensor
    offsets: torch.Tensor

    def __init__(self, config: FullConfig, keys: np.ndarray, offsets: np.ndarray,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("keys", torch.as_tensor(keys, dtype=torch.int64))
        self.register_buffer("offsets", torch.as_tensor(offsets, dtype=torch.int64))
        rows = len(keys) + config.num_features
        self._make_table(rows, config, generator)

    @classmethod
    def from_data(cls, config: FullConfig, categorical: np.ndarray,
                  generator: torch.Generator | None = None) -> FullEmbedding:
        """Build the vocabulary from training ids [N, F]."""
        keys, offsets = build_vocabulary(categorical, config.min_count)
        return cls(config, keys, offsets, generator)

    def indices(self, ids: torch.Tensor) -> torch.Tensor:
        hashing.check_ids(ids)
        return hashing.vocab_lookup(ids, self.keys, self.offsets)  # (B, F)

    def parameter_bytes(self) -> int:
        return full_table_bytes(self.keys.numel(), self.config.num_features, self.config.embedding_dim)

    def export_arrays(self) -> dict[str, np.ndarray]:
        return {"keys": self.keys.cpu().numpy(), "offsets": self.offsets.cpu().numpy()}


def build_vocabulary(categorical: np.ndarray, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys of each feature seen at least ``min_count`` times in ids [N, F], and offsets [F+1]."""
    keys, offsets = [], [0]
    for f in range(categorical.shape[1]):
        values, counts = np.unique(np.asarray(categorical[:, f], dtype=np.int64), return_counts=True)
        kept = values[counts >= min_count]
        keys.append(kept)
        offsets.append(offsets[-1] + len(kept))
    return np.concatenate(keys).astype(np.int64), np.asarray(offsets, dtype=np.int64)


class HashEmbedding(TableEmbedding):
    """The hashing trick: ``row = h(f, 0, v) mod rows[f]`` in feature ``f``'s own table.

    Example:
        >>> emb = HashEmbedding(HashConfig(2, 4, rows=(10, 20)))
        >>> emb(torch.tensor([[5, 2**40]])).shape
        torch.Size([1, 2, 4])
    """

    method = Method.HASH
    config: HashConfig
    coefficients: torch.Tensor
    block_coefficients: torch.Tensor
    rows: torch.Tensor
    row_offsets: torch.Tensor

    def __init__(self, config: HashConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self._register_hash(config.num_features, 1, config.seed)
        self.register_buffer("rows", torch.tensor(config.rows, dtype=torch.int64))
        first_rows = np.cumsum((0, *config.rows[:-1]))
        self.register_buffer("row_offsets", torch.tensor(first_rows, dtype=torch.int64))
        self._make_table(sum(config.rows), config, generator)

    def local_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``reference.hash_rows``: the row within each feature's table, int64 [B, F]."""
        hashing.check_ids(ids)
        return hashing.hash_rows(ids, self.coefficients, self.block_coefficients, self.rows)

    def indices(self, ids: torch.Tensor) -> torch.Tensor:
        return self.local_rows(ids) + self.row_offsets  # (B, F)

    def parameter_bytes(self) -> int:
        table = sum(self.config.rows) * self.config.embedding_dim * FLOAT_BYTES
        hashed = hash_param_bytes(self.config.num_features, 1)
        return table + hashed + self.config.num_features * INT64_BYTES


class RobeEmbedding(CompressedEmbedding):
    """ROBE-Z: every feature reads its d floats from ONE shared array ``memory`` in d/Z hashed blocks.

    Forward is one ``index_select`` of [B*F*d] elements; autograd's backward of ``index_select`` is an
    ``index_add_`` into a dense gradient of ``memory``.

    Example:
        >>> emb = RobeEmbedding(RobeConfig(3, 8, memory_size=1000, block_size=4))
        >>> emb(torch.tensor([[0, 1, 2**62 - 1]])).shape
        torch.Size([1, 3, 8])
    """

    method = Method.ROBE
    config: RobeConfig
    coefficients: torch.Tensor
    block_coefficients: torch.Tensor

    def __init__(self, config: RobeConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        self._register_hash(config.num_features, config.num_blocks, config.seed)
        self.memory = _uniform((config.memory_size,), config.init_scale, generator)

    def block_offsets(self, ids: torch.Tensor) -> torch.Tensor:
        """``reference.robe_offsets``: int64 [B, F, d/Z]."""
        hashing.check_ids(ids)
        hashes = hashing.hash_blocks(ids, self.coefficients, self.block_coefficients)
        return hashing.block_starts(hashes, self.config.memory_size, self.config.block_size)

    def indices(self, ids: torch.Tensor) -> torch.Tensor:
        return hashing.expand_blocks(self.block_offsets(ids), self.config.block_size)  # (B, F, d)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        idx = self.indices(ids)
        return self.memory.index_select(0, idx.reshape(-1)).view(idx.shape)  # (B, F, d)

    def array_bytes(self) -> int:
        return self.config.memory_size * FLOAT_BYTES

    def parameter_bytes(self) -> int:
        return self.array_bytes() + hash_param_bytes(self.config.num_features, self.config.num_blocks)


@dataclass(frozen=True)
class Signatures:
    """Minhash signatures of the sampled tokens: feature ``f``'s values ``keys[offsets[f]:offsets[f+1]]``.

    Args:
        keys: int64 [K], sorted within each feature.
        offsets: int64 [F+1].
        signatures: uint8 [K, S], S b-bit minhashes of each token's row set (``kernels.reference``).
    """

    keys: np.ndarray
    offsets: np.ndarray
    signatures: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        if self.signatures.dtype != ref.SIGNATURE_DTYPE or self.signatures.ndim != 2:
            raise ValueError(f"signatures must be uint8 [K, S], got {self.signatures.dtype} "
                             f"{self.signatures.shape}")
        if len(self.keys) != len(self.signatures) or self.offsets[-1] != len(self.keys):
            raise ValueError("keys, offsets and signatures disagree")

    @property
    def num_minhashes(self) -> int:
        return int(self.signatures.shape[1])

    @property
    def num_bytes(self) -> int:
        """Keys and offsets (int64) plus the signatures (one byte per minhash)."""
        return (len(self.keys) + len(self.offsets)) * INT64_BYTES + self.signatures.size


class LmaEmbedding(RobeEmbedding):
    """LMA (DESIGN.md section 1): tokens that occur in the same rows share memory, across features.

    A sampled token (a key of its feature in ``signatures``, from ``training.dlrm.signatures``) reads
    block ``c`` at ``h(0, c, code_c)``, its code made of ``k`` of its minhashes, through one global hash;
    any other token reads its ROBE-Z locations ``h(f, c, v)``.

    Example:
        >>> sig = Signatures(np.array([5]), np.array([0, 1, 1]), np.zeros((1, 8), np.uint8))
        >>> emb = LmaEmbedding(LmaConfig(2, 8, memory_size=100, block_size=4), sig)
        >>> emb(torch.tensor([[5, 6]])).shape
        torch.Size([1, 2, 8])
    """

    method = Method.LMA
    config: LmaConfig
    keys: torch.Tensor
    offsets: torch.Tensor
    signatures: torch.Tensor
    selection: torch.Tensor

    def __init__(self, config: LmaConfig, signatures: Signatures,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(config, generator)
        if signatures.num_minhashes != config.num_minhashes:
            raise ValueError(f"signatures hold {signatures.num_minhashes} minhashes per token, "
                             f"the config says {config.num_minhashes}")
        self.register_buffer("keys", torch.as_tensor(signatures.keys, dtype=torch.int64))
        self.register_buffer("offsets", torch.as_tensor(signatures.offsets, dtype=torch.int64))
        self.register_buffer("signatures", torch.as_tensor(signatures.signatures))
        selection = ref.lma_selection(config.num_blocks, config.keys_per_block, config.num_minhashes)
        self.register_buffer("selection", torch.as_tensor(selection), persistent=False)

    def block_offsets(self, ids: torch.Tensor) -> torch.Tensor:
        """``reference.lma_offsets``: int64 [B, F, d/Z]."""
        hashing.check_ids(ids)
        hashes = hashing.lma_hashes(ids, self.keys, self.offsets, self.signatures, self.coefficients,
                                    self.block_coefficients, self.selection)
        return hashing.block_starts(hashes, self.config.memory_size, self.config.block_size)

    def parameter_bytes(self) -> int:
        tables = (self.keys.numel() + self.offsets.numel()) * INT64_BYTES + self.signatures.numel()
        return super().parameter_bytes() + tables

    def export_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).cpu().numpy() for name in ("keys", "offsets", "signatures")}
