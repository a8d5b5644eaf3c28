"""The DLRM variants of the GPU benchmark, in PyTorch: one architecture, only the embedding differs.

- ``FullTables``: every feature's table in ONE concatenated [sum(rows), d] tensor, read with
  ``F.embedding`` (the ids given are row numbers: the full model gets its vocabulary lookup for free).
- ``RobeArray`` with ``kernel_lookup``: ROBE-Z through the project's CUDA kernel (``kernels.torch_ext``).
- ``RobeArray`` with ``torch_lookup``: ROBE-Z in plain PyTorch ops (``training.dlrm.hashing`` +
  ``index_select``), the fallback when the kernel is missing, and a reference point beside it.

Weights are random (throughput does not depend on their values) and created on the target device, so a
96 GB table is never written to host memory or disk.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from kernels import reference as ref
from loadtest.shapes import NUM_DENSE, Shape
from training.dlrm import hashing
from training.dlrm.model import DLRM, DLRMConfig

if TYPE_CHECKING:
    from kernels.torch_ext import CudaOps

INIT_SCALE = 0.05

# (ids [B, F] int64, memory [m] float32) -> [B, F, d]; hash parameters, d and Z are bound in.
RobeLookup = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Variant(StrEnum):
    FULL = "full"
    ROBE = "robe"  # the CUDA kernel
    ROBE_TORCH = "robe-torch"  # PyTorch ops


class IdDistribution(StrEnum):
    UNIFORM = "uniform"
    ZIPF = "zipf"  # log-uniform rows: P(row < r) = log(r + 1) / log(rows + 1), Zipf-like with s = 1


def _random_uniform(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.empty(shape, device=device).uniform_(-INIT_SCALE, INIT_SCALE)


class FullTables(nn.Module):
    """Full tables: one [sum(rows), d] tensor; feature ``f``'s row ``r`` is row ``row_offsets[f] + r``.

    Args:
        rows: rows of each feature's table.
        dim: embedding dimension d.
        device: where the table is created.
    """

    row_offsets: torch.Tensor

    def __init__(self, rows: tuple[int, ...], dim: int, device: torch.device) -> None:
        super().__init__()
        self.weight = nn.Parameter(_random_uniform((sum(rows), dim), device), requires_grad=False)
        starts = [0, *torch.tensor(rows[:-1]).cumsum(0).tolist()]
        self.register_buffer("row_offsets", torch.tensor(starts, dtype=torch.int64, device=device))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids + self.row_offsets, self.weight)  # (B, F, d)


class RobeArray(nn.Module):
    """ROBE-Z over one shared array of ``memory_size`` floats, read by ``lookup``.

    Args:
        memory_size: floats in the shared array.
        lookup: ``kernel_lookup(...)`` or ``torch_lookup(...)``, bound to the hash and the block shape.
        device: where the array is created.
    """

    def __init__(self, memory_size: int, lookup: RobeLookup, device: torch.device) -> None:
        super().__init__()
        self.lookup = lookup
        self.memory = nn.Parameter(_random_uniform((memory_size,), device), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lookup(ids, self.memory)  # (B, F, d)


def kernel_lookup(ops: CudaOps, params: ref.HashParams, dim: int, block_size: int) -> RobeLookup:
    """ROBE-Z through the project's CUDA kernel (``kernels.torch_ext``), its launch plan made once."""
    plan = ops.robe_plan(params, dim, block_size)

    def lookup(ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return plan(ids, memory)

    return lookup


def torch_lookup(params: ref.HashParams, dim: int, block_size: int, device: torch.device) -> RobeLookup:
    """ROBE-Z in PyTorch ops, bit-exact with ``kernels.reference.robe_lookup`` (ids are trusted valid)."""
    features, blocks = (t.to(device) for t in hashing.coefficient_tensors(params))

    def lookup(ids: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        hashes = hashing.hash_blocks(ids, features, blocks)  # (B, F, d/Z)
        starts = hashing.block_starts(hashes, memory.numel(), block_size)
        idx = hashing.expand_blocks(starts, block_size)  # (B, F, d)
        return memory.index_select(0, idx.reshape(-1)).view(idx.shape)

    return lookup


def build_model(variant: Variant, shape: Shape, device: torch.device, ops: CudaOps | None = None,
                seed: int = 0) -> DLRM:
    """The DLRM of ``shape`` with the embedding of ``variant``, random weights, eval mode on ``device``.

    ``ops`` (from ``kernels.torch_ext.load()``) is required by ``Variant.ROBE``.
    """
    torch.manual_seed(seed)
    config = DLRMConfig.preset(shape.name.value, num_dense=NUM_DENSE, num_features=shape.num_features)
    dim, block_size = shape.embedding_dim, shape.block_size
    params = ref.HashParams.from_seed(shape.num_features, dim // block_size, seed)
    embedding: nn.Module
    if variant is Variant.FULL:
        embedding = FullTables(shape.rows, dim, device)
    elif variant is Variant.ROBE:
        if ops is None:
            raise ValueError("the robe variant needs the CUDA kernel (kernels.torch_ext.load())")
        embedding = RobeArray(shape.robe_floats, kernel_lookup(ops, params, dim, block_size), device)
    else:
        embedding = RobeArray(shape.robe_floats, torch_lookup(params, dim, block_size, device), device)
    # The embedding already lives on the device, so .to() only moves the MLPs.
    return DLRM(config, embedding).to(device).eval().requires_grad_(False)


def make_inputs(shape: Shape, batch: int, count: int, distribution: IdDistribution, device: torch.device,
                seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` distinct (dense [B, 13] float32, ids [B, F] int64 row numbers) batches on ``device``."""
    generator = torch.Generator(device=device).manual_seed(seed)
    rows = torch.tensor(shape.rows, dtype=torch.float64, device=device)
    batches = []
    for _ in range(count):
        u = torch.rand((batch, shape.num_features), dtype=torch.float64, device=device, generator=generator)
        zipf = distribution is IdDistribution.ZIPF
        picks = torch.exp(u * torch.log1p(rows)) - 1 if zipf else u * rows  # in [0, rows)
        ids = torch.minimum(picks.floor(), rows - 1).to(torch.int64)
        dense = torch.rand((batch, NUM_DENSE), device=device, generator=generator)
        batches.append((dense, ids))
    return batches


def input_count(shape: Shape, batch: int, touched_bytes: int = 1 << 28, most: int = 64) -> int:
    """How many distinct input batches to cycle through so the lookups touch ~256 MB: more than any
    GPU's L2 cache, so the full tables are not timed from cache."""
    per_batch = batch * shape.num_features * shape.embedding_dim * 4
    return max(4, min(most, math.ceil(touched_bytes / per_batch)))
