"""Build an embedding from a method, a memory budget and the training ids; rebuild one from a checkpoint.

Sizing (every byte counted by ``parameter_bytes()`` fits the budget):

- full: the whole vocabulary (values seen ``min_count`` times), no budget (it IS the 1x reference).
- hash: ``(budget - hash coefficients - row counts) / (4 d)`` rows, shared by ``budget.hash_table_rows``.
- robe: ``m = (budget - hash coefficients) / 4`` floats.
- lma: at most ``signature_fraction`` of the budget holds the keys and signatures of the most frequent
  sampled tokens (8 + S bytes each), the rest is ``M``. Tokens without a signature hash like ROBE.
  ``lma_budget="array"`` is the LMA paper's accounting instead: ``M`` gets exactly ROBE-Z's floats at the
  same budget and the same key and signature tables come on top (``parameter_bytes`` still counts them,
  so its serving bytes exceed the budget by that much; DESIGN.md section 1 asks for both accountings).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from kernels import reference as ref
from training.dlrm import budget as sizing
from training.dlrm.embeddings import (
    CompressedEmbedding,
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
from training.dlrm.signatures import learn_signatures, token_bytes

logger = logging.getLogger(__name__)

# What an LMA budget bounds: every serving byte (array + keys + signatures), or the array alone (the paper)
LMA_BUDGETS = ("serving", "array")


@dataclass(frozen=True)
class EmbeddingSpec:
    """What to build, before the budget and the data fix the sizes.

    Args:
        method: full, hash, robe or lma.
        block_size: Z for robe and lma (None: robe Z = d, one contiguous read per lookup; lma Z = 1, every
            element its own location, as the LMA paper; measured in ``kernels.reference``'s docstring).
        seed: hash seed (and LMA's sampling seed).
        min_count: full tables' vocabulary threshold (also the reference for ``--compression``).
        init_scale: weights start uniform in [-init_scale, init_scale].
        keys_per_block: LMA's k, minhashes per block code.
        num_minhashes: LMA's S (K in DESIGN.md section 1), minhashes per token.
        minhash_bits: LMA's b, bits kept of each minhash.
        signature_fraction: LMA's largest share of the budget for keys and signatures.
        signature_rows: rows sampled to build LMA's row sets (>= 125K unless the data has fewer).
        lma_budget: what LMA's budget bounds: ``serving`` (every serving byte: array, keys, signatures) or
            ``array`` (the float array alone, equal to ROBE-Z's; the signature tables come on top).
        max_token_share: LMA: tokens in more than this share of the sampled rows get no signature and
            keep their ROBE-Z locations (1.0: any token may get one).
    """

    method: Method
    block_size: int | None = None
    seed: int = 0
    min_count: int = 1
    init_scale: float = 0.05
    keys_per_block: int = ref.DEFAULT_KEYS_PER_BLOCK
    num_minhashes: int = ref.DEFAULT_NUM_MINHASHES
    minhash_bits: int = ref.DEFAULT_MINHASH_BITS
    signature_fraction: float = 0.25
    signature_rows: int = ref.DEFAULT_SIGNATURE_ROWS
    lma_budget: str = "serving"
    max_token_share: float = 1.0

    def __post_init__(self) -> None:
        if self.lma_budget not in LMA_BUDGETS:
            raise ValueError(f"lma_budget must be one of {', '.join(LMA_BUDGETS)}, got {self.lma_budget!r}")
        if not 0 < self.max_token_share <= 1:
            raise ValueError(f"max_token_share must be in (0, 1], got {self.max_token_share}")
        if self.block_size is not None and self.block_size < 1:
            raise ValueError(f"block size must be >= 1, got {self.block_size}")
        if not 0 <= self.signature_fraction < 1:
            raise ValueError(f"signature_fraction must be in [0, 1), got {self.signature_fraction}")
        if self.signature_rows < 1:
            raise ValueError(f"signature_rows must be >= 1, got {self.signature_rows}")
        if self.method is Method.LMA:
            ref.check_lma_shape(self.num_minhashes, self.keys_per_block)
            if not 1 <= self.minhash_bits <= ref.MAX_MINHASH_BITS:
                raise ValueError(f"minhash bits must be in [1, {ref.MAX_MINHASH_BITS}], "
                                 f"got {self.minhash_bits}")


def full_bytes(categorical: np.ndarray, embedding_dim: int, min_count: int = 1) -> int:
    """``FullEmbedding.parameter_bytes()`` for these training ids, without building the table."""
    keys, _ = build_vocabulary(categorical, min_count)
    return sizing.full_table_bytes(len(keys), categorical.shape[1], embedding_dim)


def build_embedding(
    spec: EmbeddingSpec, embedding_dim: int, categorical: np.ndarray, budget_bytes: int | None,
    generator: torch.Generator | None = None,
) -> CompressedEmbedding:
    """The embedding of ``spec.method`` sized to ``budget_bytes`` (ignored, and must be None, for full).

    Raises:
        sizing.BudgetError: the budget cannot hold the embedding.
        ValueError: an invalid shape (e.g. Z not dividing d).
    """
    num_features = categorical.shape[1]
    block_size = spec.block_size if spec.block_size is not None else \
        (1 if spec.method is Method.LMA else embedding_dim)
    if spec.method is Method.FULL:
        if budget_bytes is not None:
            raise sizing.BudgetError("full tables take the whole vocabulary: give no budget")
        full = FullConfig(num_features, embedding_dim, spec.init_scale, spec.min_count)
        return FullEmbedding.from_data(full, categorical, generator)
    if budget_bytes is None:
        raise sizing.BudgetError(f"{spec.method.value} needs --memory or --compression")
    if spec.method in (Method.ROBE, Method.LMA) and embedding_dim % block_size:
        raise ValueError(f"block size Z={block_size} must divide embedding_dim d={embedding_dim}")
    if spec.method is Method.HASH:
        fixed = sizing.hash_param_bytes(num_features, 1)
        cardinalities = [len(np.unique(categorical[:, f])) for f in range(num_features)]
        row_bytes = embedding_dim * sizing.FLOAT_BYTES
        total_rows = (budget_bytes - fixed - num_features * sizing.INT64_BYTES) // row_bytes
        rows = sizing.hash_table_rows(cardinalities, max(total_rows, 0))
        hashed = HashConfig(num_features, embedding_dim, spec.init_scale, rows, spec.seed)
        return HashEmbedding(hashed, generator)
    if spec.method is Method.ROBE:
        fixed = sizing.hash_param_bytes(num_features, embedding_dim // block_size)
        m = sizing.memory_floats(budget_bytes, fixed, block_size)
        robe = RobeConfig(num_features, embedding_dim, spec.init_scale, m, block_size, spec.seed)
        return RobeEmbedding(robe, generator)
    return _build_lma(spec, embedding_dim, block_size, categorical, budget_bytes, generator)


def _build_lma(spec: EmbeddingSpec, embedding_dim: int, block_size: int, categorical: np.ndarray,
               budget_bytes: int, generator: torch.Generator | None) -> LmaEmbedding:
    num_features = categorical.shape[1]
    fixed = sizing.hash_param_bytes(num_features, embedding_dim // block_size) \
        + (num_features + 1) * sizing.INT64_BYTES
    sizing.memory_floats(budget_bytes, fixed, block_size)  # raises when not even one block fits
    max_tokens = int(spec.signature_fraction * (budget_bytes - fixed)) // token_bytes(spec.num_minhashes)
    signatures = learn_signatures(categorical, max_tokens, spec.signature_rows, spec.seed, spec.seed,
                                  spec.num_minhashes, spec.minhash_bits, spec.max_token_share)
    tables = len(signatures.keys) * sizing.INT64_BYTES + signatures.signatures.size  # offsets are in fixed
    if spec.lma_budget == "array":  # ROBE-Z's array at this budget; the tables above come on top
        robe_fixed = sizing.hash_param_bytes(num_features, embedding_dim // block_size)
        m = sizing.memory_floats(budget_bytes, robe_fixed, block_size)
    else:
        m = sizing.memory_floats(budget_bytes, fixed + tables, block_size)
    config = LmaConfig(num_features, embedding_dim, spec.init_scale, m, block_size, spec.seed,
                       spec.keys_per_block, spec.num_minhashes, spec.minhash_bits, spec.seed)
    return LmaEmbedding(config, signatures, generator)


def embedding_state(module: CompressedEmbedding) -> dict[str, Any]:
    """The checkpoint's ``embedding`` section (see ``training.dlrm.checkpoint``)."""
    params = module.hash_params()
    return {
        "hash_version": ref.HASH_VERSION,
        "method": module.method.value,
        "config": asdict(module.config),
        "hash": params.to_dict() if params is not None else None,
        "arrays": module.export_arrays(),
    }


def embedding_from_state(state: dict[str, Any]) -> CompressedEmbedding:
    """Rebuild a module (with freshly initialised weights: load the state dict next) from its section."""
    ref.check_hash_version(state.get("hash_version", 1), "the checkpoint's embedding")
    if state.get("hash") is not None:
        ref.HashParams.from_dict(state["hash"], "the checkpoint's hash parameters")
    method = Method(state["method"])
    config = dict(state["config"])
    arrays = state["arrays"]
    if method is Method.FULL:
        return FullEmbedding(FullConfig(**config), arrays["keys"], arrays["offsets"])
    if method is Method.HASH:
        config["rows"] = tuple(config["rows"])
        return HashEmbedding(HashConfig(**config))
    if method is Method.ROBE:
        return RobeEmbedding(RobeConfig(**config))
    signatures = Signatures(arrays["keys"], arrays["offsets"], arrays["signatures"])
    return LmaEmbedding(LmaConfig(**config), signatures)
