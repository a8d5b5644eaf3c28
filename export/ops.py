"""The ai.robe operators on both sides of the export: torch custom ops, ONNX schemas, translations.

Every embedding lookup of an exported model is ONE torch custom op (``robeserve::*``), which the dynamo
exporter turns into ONE ONNX node through :data:`TRANSLATIONS`:

==========================  ============================================  =========================
torch op                    ONNX node                                     fallback
==========================  ============================================  =========================
robeserve::robe_embedding   ai.robe::RobeEmbedding(ids, M)                model-local function
robeserve::lma_embedding    ai.robe::LmaEmbedding(ids, M, keys, ...)      model-local function
robeserve::vocab_lookup     ai.robe::VocabLookup(ids, keys, offsets)      model-local function
robeserve::hash_rows        ai.robe.export::HashRows(ids)                 inlined: standard ops
==========================  ============================================  =========================

The eager implementations call ``kernels.reference`` (the spec), so a wrapped model computes in torch
exactly what the spec says; the exporter only sees their fake (shape) implementations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx.defs
import torch
from onnx.defs import OpSchema
from onnxscript.values import Opset

from export.functions import DOMAIN, DOMAIN_VERSION, HASH_ATTRIBUTES, PRIVATE_DOMAIN
from kernels import reference

_ROBE = Opset(DOMAIN, DOMAIN_VERSION)
_PRIVATE = Opset(PRIVATE_DOMAIN, DOMAIN_VERSION)


def _params(a1: list[int], a2: list[int], c: list[int], g1: list[int], g2: list[int]) -> reference.HashParams:
    arrays = (np.asarray(x, dtype=np.int64) for x in (a1, a2, c, g1, g2))
    return reference.HashParams(0, *arrays)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


@torch.library.custom_op("robeserve::robe_embedding", mutates_args=())
def robe_embedding(ids: torch.Tensor, memory: torch.Tensor, embedding_dim: int, block_size: int,
                   a1: list[int], a2: list[int], c: list[int], g1: list[int],
                         g2: list[int]) -> torch.Tensor:
    """ROBE-Z lookup (B, F) -> (B, F, d), per kernels.reference.robe_lookup."""
    out = reference.robe_lookup(_numpy(ids), _numpy(memory), _params(a1, a2, c, g1, g2), embedding_dim,
                                block_size)
    return torch.from_numpy(np.ascontiguousarray(out)).to(memory.dtype)


@robe_embedding.register_fake
def _robe_embedding_fake(ids: torch.Tensor, memory: torch.Tensor, embedding_dim: int, block_size: int,
                         a1: list[int], a2: list[int], c: list[int], g1: list[int],
                         g2: list[int]) -> torch.Tensor:
    return memory.new_empty((ids.shape[0], ids.shape[1], embedding_dim))


@torch.library.custom_op("robeserve::lma_embedding", mutates_args=())
def lma_embedding(ids: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor,
                  signatures: torch.Tensor, embedding_dim: int, block_size: int, a1: list[int],
                  a2: list[int], c: list[int], g1: list[int], g2: list[int],
                  keys_per_block: int) -> torch.Tensor:
    """LMA lookup (B, F) -> (B, F, d), per kernels.reference.lma_indices (signatures uint8 [K, S])."""
    mem = _numpy(memory)
    index = reference.lma_indices(_numpy(ids), _numpy(keys), _numpy(offsets), _numpy(signatures),
                                  _params(a1, a2, c, g1,
                                          g2), len(mem), embedding_dim, block_size, keys_per_block)
    return torch.from_numpy(np.ascontiguousarray(mem[index]))


@lma_embedding.register_fake
def _lma_embedding_fake(ids: torch.Tensor, memory: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor,
                        signatures: torch.Tensor, embedding_dim: int, block_size: int, a1: list[int],
                        a2: list[int], c: list[int], g1: list[int], g2: list[int],
                  keys_per_block: int) -> torch.Tensor:
    return memory.new_empty((ids.shape[0], ids.shape[1], embedding_dim))


@torch.library.custom_op("robeserve::vocab_lookup", mutates_args=())
def vocab_lookup(ids: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Full-table row of every id (B, F), per kernels.reference.vocab_lookup."""
    return torch.from_numpy(reference.vocab_lookup(_numpy(ids), _numpy(keys), _numpy(offsets)))


@vocab_lookup.register_fake
def _vocab_lookup_fake(ids: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(ids)


@torch.library.custom_op("robeserve::hash_rows", mutates_args=())
def hash_rows(ids: torch.Tensor, a1: list[int], a2: list[int], c: list[int], g1: list[int], g2: list[int],
              rows: list[int]) -> torch.Tensor:
    """Row of every id in ONE concatenated hash table: ``h(f,0,v) mod rows_f + sum(rows_<f)``."""
    local = reference.hash_rows(_numpy(ids), _params(a1, a2, c, g1, g2), rows)
    base = np.cumsum(rows) - np.asarray(rows)
    return torch.from_numpy(local + base)


@hash_rows.register_fake
def _hash_rows_fake(ids: torch.Tensor, a1: list[int], a2: list[int], c: list[int], g1: list[int],
                    g2: list[int],
                    rows: list[int]) -> torch.Tensor:
    return torch.empty_like(ids)


def _robe_translation(ids: Any, memory: Any, embedding_dim: int, block_size: int, a1: list[int],
                      a2: list[int], c: list[int], g1: list[int], g2: list[int]) -> Any:
    return _ROBE.RobeEmbedding(ids, memory, embedding_dim=embedding_dim, block_size=block_size,
                               a1=a1, a2=a2, c=c, g1=g1, g2=g2)


def _lma_translation(ids: Any, memory: Any, keys: Any, offsets: Any, signatures: Any, embedding_dim: int,
                     block_size: int, a1: list[int], a2: list[int], c: list[int], g1: list[int],
                     g2: list[int],
                     keys_per_block: int) -> Any:
    return _ROBE.LmaEmbedding(ids, memory, keys, offsets, signatures, embedding_dim=embedding_dim,
                              block_size=block_size, a1=a1, a2=a2, c=c, g1=g1, g2=g2,
                              keys_per_block=keys_per_block)


def _vocab_translation(ids: Any, keys: Any, offsets: Any) -> Any:
    return _ROBE.VocabLookup(ids, keys, offsets)


def _hash_translation(ids: Any, a1: list[int], a2: list[int], c: list[int], g1: list[int], g2: list[int],
                      rows: list[int]) -> Any:
    return _PRIVATE.HashRows(ids, a1=a1, a2=a2, c=c, g1=g1, g2=g2, rows=rows)


TRANSLATIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    torch.ops.robeserve.robe_embedding.default: _robe_translation,
    torch.ops.robeserve.lma_embedding.default: _lma_translation,
    torch.ops.robeserve.vocab_lookup.default: _vocab_translation,
    torch.ops.robeserve.hash_rows.default: _hash_translation,
}


def _schema(name: str, domain: str, inputs: list[tuple[str, str]], output: tuple[str, str],
            int_attrs: tuple[str, ...], list_attrs: tuple[str, ...], doc: str) -> OpSchema:
    ints, lists = OpSchema.AttrType.INT, OpSchema.AttrType.INTS
    attributes = [OpSchema.Attribute(a, ints, a) for a in int_attrs]
    attributes += [OpSchema.Attribute(a, lists, a) for a in list_attrs]
    return OpSchema(
        name, domain, DOMAIN_VERSION, doc,
        inputs=[OpSchema.FormalParameter(n, t) for n, t in inputs],
        outputs=[OpSchema.FormalParameter(*output)],
        type_constraints=[("T", ["tensor(float)"], "embedding memory")] if output[1] == "T" else [],
        attributes=attributes,
    )


def _schemas() -> list[OpSchema]:
    ids = ("ids", "tensor(int64)")
    tables = [("keys", "tensor(int64)"), ("offsets", "tensor(int64)")]
    geometry = ("embedding_dim", "block_size")
    return [
        _schema("RobeEmbedding", DOMAIN, [ids, ("M", "T")], ("embedding", "T"), geometry, HASH_ATTRIBUTES,
                "ROBE-Z embedding lookup (DESIGN.md section 4)."),
        _schema("LmaEmbedding", DOMAIN, [ids, ("M", "T"), *tables, ("signatures", "tensor(uint8)")],
                ("embedding", "T"), (*geometry, "keys_per_block"), HASH_ATTRIBUTES,
                "LMA embedding lookup (DESIGN.md section 4)."),
        _schema("VocabLookup", DOMAIN, [ids, *tables], ("rows", "tensor(int64)"), (), (),
                "Raw value -> row of a full table (DESIGN.md section 4)."),
        _schema("HashRows", PRIVATE_DOMAIN, [ids], ("rows", "tensor(int64)"), (), (*HASH_ATTRIBUTES, "rows"),
                "Hashing-trick rows; inlined into standard ops before a model is saved."),
    ]


def register_schemas() -> None:
    """Make the ONNX schemas known to the onnx package (the dynamo exporter needs them); idempotent."""
    for schema in _schemas():
        if not onnx.defs.has(schema.name, schema.domain):
            onnx.defs.register_schema(schema)
