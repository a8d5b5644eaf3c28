"""Model-local ONNX functions: the ai.robe operators written in standard ONNX ops (opset 18).

A model that carries these functions runs in any onnxruntime: a runtime without the ai.robe library
inlines the function body; with the library registered, its kernel takes the node instead (see
docs/export.md for the evidence). The bodies follow ``kernels/reference`` integer for integer: only
int64 Mul/Add/Mod/Div on non-negative values (every product stays below 2^63), Gather, Where and a
binary search written as a Loop. No id ever passes through a float.

Every function declares its attributes and reads them with ``ref_attr_name`` Constants, so one body
serves every node. ``HashRows`` lives in a private domain: the exporter inlines it before saving, so
hash models hold standard ops only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import onnx
from onnx import AttributeProto, FunctionProto, TensorProto, helper

from kernels.reference import (
    LO_BITS,
    NUM_SIGNATURE_KEYS,
    SELECT_FIRST_ADD,
    SELECT_FIRST_MUL,
    SELECT_STEP_ADD,
    SELECT_STEP_MUL,
    SIGNATURE_KEY_BITS,
    P,
)

DOMAIN = "ai.robe"
DOMAIN_VERSION = 1
PRIVATE_DOMAIN = "ai.robe.export"
ONNX_OPSET = 18
HASH_ATTRIBUTES = ("a1", "a2", "b", "c")
_NO_KEY = -1  # sentinel appended to key tables: never equal to a valid id


class _Body:
    """Appends nodes with fresh names; ``self(op, *inputs, **attrs)`` returns the output name."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self._count = 0

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def __call__(self, op_type: str, *inputs: str, **attrs: Any) -> str:
        return self.multi(op_type, inputs, 1, **attrs)[0]

    def multi(self, op_type: str, inputs: Sequence[str], outputs: int, **attrs: Any) -> list[str]:
        """A node with ``outputs`` outputs; returns their names."""
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=names[0], **attrs))
        return names

    def ints(self, *values: int) -> str:
        """A 1-D int64 constant."""
        return self("Constant", value=helper.make_tensor("v", TensorProto.INT64, [len(values)], list(values)))

    def int(self, value: int) -> str:
        """A scalar int64 constant."""
        return self("Constant", value=helper.make_tensor("v", TensorProto.INT64, [], [value]))

    def attr_ints(self, name: str) -> str:
        """The function attribute ``name`` (a list of ints) as a 1-D int64 tensor."""
        return self._attr_constant("value_ints", AttributeProto.INTS, name)

    def attr_int(self, name: str) -> str:
        """The function attribute ``name`` (an int) as a scalar int64 tensor."""
        return self._attr_constant("value_int", AttributeProto.INT, name)

    def _attr_constant(self, field: str, kind: AttributeProto.AttributeType, name: str) -> str:
        out = self.fresh(name)
        node = helper.make_node("Constant", [], [out], name=out)
        node.attribute.append(helper.make_attribute_ref(field, kind, ref_attr_name=name))
        self.nodes.append(node)
        return out


def _hash(g: _Body, ids: str, block: str, coeffs: Sequence[str]) -> str:
    """h(f, c, v) = ((A1*lo mod P) + (A2*hi mod P) + B*c + C) mod P, broadcasting ids/block/coeffs."""
    a1, a2, b, c = coeffs
    lo = g("Mod", ids, g.int(1 << LO_BITS))
    hi = g("Div", ids, g.int(1 << LO_BITS))  # ids >= 0: truncation == floor
    prime = g.int(P)
    first = g("Mod", g("Mul", a1, lo), prime)
    second = g("Mod", g("Mul", a2, hi), prime)
    total = g("Add", g("Add", first, second), g("Add", g("Mul", b, block), c))
    return g("Mod", total, prime)


def _coefficients(g: _Body, trailing_axis: bool) -> list[str]:
    """a1, a2, b, c as int64 [F] (or [F, 1] to broadcast against a trailing block axis)."""
    names = [g.attr_ints(name) for name in HASH_ATTRIBUTES]
    if not trailing_axis:
        return names
    axis = g.ints(1)
    return [g("Unsqueeze", name, axis) for name in names]


def _gather_blocks(g: _Body, starts: str, memory: str, ids: str) -> str:
    """Embedding [B, F, d] from block starts [B, F, d/Z]: element j reads M[start(j div Z) + j mod Z]."""
    block_size = g.attr_int("block_size")
    within = g("Range", g.int(0), block_size, g.int(1))  # (Z,)
    index = g("Add", g("Unsqueeze", starts, g.ints(-1)), within)  # (B, F, d/Z, Z)
    shape = g("Concat", g("Shape", ids), g.ints(-1), axis=0)
    return g("Gather", memory, g("Reshape", index, shape), axis=0)  # (B, F, d)


def _block_range(g: _Body) -> tuple[str, str]:
    """(block indices [d/Z], span m - Z + 1 as a scalar) for the memory named ``M``."""
    num_blocks = g("Div", g.attr_int("embedding_dim"), g.attr_int("block_size"))
    blocks = g("Range", g.int(0), num_blocks, g.int(1))
    size = g("Size", "M")
    span = g("Add", g("Sub", size, g.attr_int("block_size")), g.int(1))
    return blocks, span


def _search(g: _Body, ids: str, keys: str, offsets: str) -> tuple[str, str, str]:
    """Binary search of every id within its feature's sorted keys.

    Returns:
        (position [B, F] of the first key >= id within the feature, found [B, F] bool,
        the feature's end offset hi0 [F]).
    """
    lo0 = g("Slice", offsets, g.ints(0), g.ints(-1))  # (F,)
    hi0 = g("Slice", offsets, g.ints(1), g.ints(1 << 62))  # (F,)
    padded = g("Concat", keys, g.ints(_NO_KEY), axis=0)  # (K + 1,): every probe stays in range
    shape = g("Shape", ids)
    widest = g("ReduceMax", g("Sub", hi0, lo0), keepdims=0)
    # ceil(log2(n + 1)) halvings empty a range of n keys; the float only sizes the loop, one spare trip.
    log2 = g("Div", g("Log", g("Cast", g("Add", widest, g.int(1)), to=TensorProto.DOUBLE)),
             g("Constant", value=helper.make_tensor("v", TensorProto.DOUBLE, [], [math.log(2.0)])))
    trips = g("Add", g("Cast", g("Ceil", log2), to=TensorProto.INT64), g.int(1))
    body = _search_step(g.prefix + "loop_", ids, padded)
    lo, _hi = g.multi("Loop", [trips, "", g("Expand", lo0, shape), g("Expand", hi0, shape)], 2, body=body)
    in_range = g("Less", lo, hi0)
    matches = g("Equal", g("Gather", padded, lo, axis=0), ids)
    return lo, g("And", in_range, matches), hi0


def _search_step(prefix: str, ids: str, padded: str) -> onnx.GraphProto:
    """Loop body: one halving step of lower_bound on every (lo, hi) pair at once."""
    g = _Body(prefix)
    lo, hi = f"{prefix}lo", f"{prefix}hi"
    mid = g("Div", g("Add", lo, hi), g.int(2))
    go_right = g("And", g("Less", g("Gather", padded, mid, axis=0), ids), g("Less", lo, hi))
    new_lo = g("Where", go_right, g("Add", mid, g.int(1)), lo)
    new_hi = g("Where", go_right, hi, mid)
    keep = g("Identity", f"{prefix}cond")
    i64 = TensorProto.INT64
    return helper.make_graph(
        g.nodes, f"{prefix}body",
        [helper.make_tensor_value_info(f"{prefix}iter", i64, []),
         helper.make_tensor_value_info(f"{prefix}cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info(lo, i64, [None, None]),
         helper.make_tensor_value_info(hi, i64, [None, None])],
        [helper.make_tensor_value_info(keep, TensorProto.BOOL, []),
         helper.make_tensor_value_info(new_lo, i64, [None, None]),
         helper.make_tensor_value_info(new_hi, i64, [None, None])],
    )


def _feature_index(g: _Body, ids: str) -> str:
    """f for every column: int64 [F]."""
    num_features = g("Gather", g("Shape", ids), g.int(1), axis=0)
    return g("Range", g.int(0), num_features, g.int(1))


def _function(name: str, domain: str, inputs: list[str], output: str, g: _Body,
              attributes: Sequence[str], defaults: Sequence[AttributeProto] = ()) -> FunctionProto:
    g.nodes.append(helper.make_node("Identity", [g.nodes[-1].output[0]], [output], name=f"{g.prefix}out"))
    return helper.make_function(
        domain, name, inputs, [output], g.nodes, [helper.make_opsetid("", ONNX_OPSET)],
        attributes=list(attributes), attribute_protos=list(defaults),
        doc_string=f"{name} in standard ONNX ops; bit-exact with kernels/reference.",
    )


def robe_embedding() -> FunctionProto:
    """``ai.robe::RobeEmbedding(ids int64[B,F], M float[m]) -> float[B,F,d]``."""
    g = _Body("robe_")
    blocks, span = _block_range(g)
    coeffs = _coefficients(g, trailing_axis=True)
    h = _hash(g, g("Unsqueeze", "ids", g.ints(-1)), blocks, coeffs)  # (B, F, d/Z)
    _gather_blocks(g, g("Mod", h, span), "M", "ids")
    return _function("RobeEmbedding", DOMAIN, ["ids", "M"], "embedding", g,
                     ["embedding_dim", "block_size", *HASH_ATTRIBUTES])


def vocab_lookup() -> FunctionProto:
    """``ai.robe::VocabLookup(ids int64[B,F], keys int64[K], offsets int64[F+1]) -> int64[B,F]``."""
    g = _Body("vocab_")
    position, found, hi0 = _search(g, "ids", "keys", "offsets")
    features = _feature_index(g, "ids")
    g("Where", found, g("Add", position, features), g("Add", hi0, features))
    return _function("VocabLookup", DOMAIN, ["ids", "keys", "offsets"], "rows", g, [])


def lma_embedding() -> FunctionProto:
    """``ai.robe::LmaEmbedding(ids, M, keys, offsets, signatures) -> float[B,F,d]``."""
    g = _Body("lma_")
    position, found, _ = _search(g, "ids", "keys", "offsets")
    learned = g("Gather", g("Concat", "signatures", g.ints(0), axis=0), position, axis=0)  # (B, F)
    learned_keys = _unpack_keys(g, learned)  # (B, F, 16)
    coeffs = _coefficients(g, trailing_axis=True)
    key_index = g("Range", g.int(0), g.int(NUM_SIGNATURE_KEYS), g.int(1))
    per_key = _hash(g, g("Unsqueeze", "ids", g.ints(-1)), key_index, coeffs)  # (B, F, 16)
    fresh = g("Mod", per_key, g.int(NUM_SIGNATURE_KEYS))
    keys16 = g("Where", g("Unsqueeze", found, g.ints(-1)), learned_keys, fresh)  # (B, F, 16)
    blocks, span = _block_range(g)
    codes = _block_codes(g, keys16, blocks)  # (B, F, d/Z)
    _gather_blocks(g, g("Mod", _hash(g, codes, blocks, coeffs), span), "M", "ids")
    default_k = helper.make_attribute("keys_per_block", 8)
    return _function("LmaEmbedding", DOMAIN, ["ids", "M", "keys", "offsets", "signatures"], "embedding", g,
                     ["embedding_dim", "block_size", *HASH_ATTRIBUTES], [default_k])


def _unpack_keys(g: _Body, signatures: str) -> str:
    """int64 signatures [...] -> their 16 4-bit keys [..., 16] (bit shifts need unsigned ints in ONNX)."""
    shifts = [SIGNATURE_KEY_BITS * t for t in range(NUM_SIGNATURE_KEYS)]
    shift_values = g("Cast", g.ints(*shifts), to=TensorProto.UINT64)
    unsigned = g("Cast", g("Unsqueeze", signatures, g.ints(-1)), to=TensorProto.UINT64)
    shifted = g("Cast", g("BitShift", unsigned, shift_values, direction="RIGHT"), to=TensorProto.INT64)
    return g("BitwiseAnd", shifted, g.int(NUM_SIGNATURE_KEYS - 1))


def _block_codes(g: _Body, keys16: str, blocks: str) -> str:
    """code(c) = sum_t key[sel(c, t)] << 4t, with sel from kernels/reference: int64 [B, F, d/Z].

    The sum is an unrolled chain of int64 Adds over all 16 positions (weight 0 from t = k on):
    onnxruntime 1.32's ReduceSum accumulates int64 in double and drops the low bits of codes above
    2^53 (k >= 14), see docs/export.md.
    """
    per_block = g.attr_int("keys_per_block")
    positions = g("Range", g.int(0), g.int(NUM_SIGNATURE_KEYS), g.int(1))  # (16,)
    prime, sixteen = g.int(P), g.int(NUM_SIGNATURE_KEYS)
    first = g("Mod", g("Mod", g("Add", g("Mul", blocks, g.int(SELECT_FIRST_MUL)), g.int(SELECT_FIRST_ADD)),
                           prime), sixteen)
    step_hash = g("Mod", g("Add", g("Mul", blocks, g.int(SELECT_STEP_MUL)), g.int(SELECT_STEP_ADD)), prime)
    step = g("Add", g("Mul", g("Mod", step_hash, g.int(8)), g.int(2)), g.int(1))
    column = g.ints(1)
    select = g("Mod", g("Add", g("Unsqueeze", first, column),
                        g("Mul", g("Unsqueeze", step, column), positions)), sixteen)  # (d/Z, 16)
    chosen = g("Gather", keys16, select, axis=2)  # (B, F, d/Z, 16)
    bits = g("Cast", g("Mul", positions, g.int(SIGNATURE_KEY_BITS)), to=TensorProto.UINT64)
    powers = g("Cast", g("BitShift", g("Cast", g.int(1), to=TensorProto.UINT64), bits, direction="LEFT"),
               to=TensorProto.INT64)  # 16^t
    weights = g("Where", g("Less", positions, per_block), powers, g.int(0))  # (16,)
    terms = g.multi("Split", [g("Mul", chosen, weights)], NUM_SIGNATURE_KEYS, axis=3,
                    num_outputs=NUM_SIGNATURE_KEYS)  # 16 x (B, F, d/Z, 1)
    total = terms[0]
    for term in terms[1:]:
        total = g("Add", total, term)
    return g("Squeeze", total, g.ints(3))


def hash_rows() -> FunctionProto:
    """``HashRows(ids int64[B,F]) -> int64[B,F]``: global row ``h(f,0,v) mod rows_f + sum(rows_<f)``."""
    g = _Body("hash_")
    coeffs = _coefficients(g, trailing_axis=False)
    rows = g.attr_ints("rows")
    local = g("Mod", _hash(g, "ids", g.int(0), coeffs), rows)
    base = g("Sub", g("CumSum", rows, g.int(0)), rows)  # exclusive prefix sum
    g("Add", local, base)
    return _function("HashRows", PRIVATE_DOMAIN, ["ids"], "rows", g, [*HASH_ATTRIBUTES, "rows"])


def all_functions() -> dict[str, FunctionProto]:
    """Every ai.robe function by op name."""
    return {f.name: f for f in (robe_embedding(), lma_embedding(), vocab_lookup())}
