"""Model-local ONNX functions: the ai.robe operators (version 2) in standard ONNX ops (opset 18).

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

from kernels.reference import CODE_SHIFT, DEFAULT_KEYS_PER_BLOCK, HASH_VERSION, LO_BITS, MAX_KEYS_PER_BLOCK, P

DOMAIN = "ai.robe"
DOMAIN_VERSION = HASH_VERSION  # ai.robe version 2 implements hash version 2
PRIVATE_DOMAIN = "ai.robe.export"
ONNX_OPSET = 18
FEATURE_ATTRIBUTES = ("a1", "a2", "c")  # one value per feature
BLOCK_ATTRIBUTES = ("g1", "g2")  # one value per block
HASH_ATTRIBUTES = (*FEATURE_ATTRIBUTES, *BLOCK_ATTRIBUTES)
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


def _key(g: _Body, ids: str, a1: str, a2: str, c: str) -> str:
    """u(f, v) = ((A1*lo mod P) + (A2*hi mod P) + C) mod P, broadcasting ids against the coefficients."""
    lo = g("Mod", ids, g.int(1 << LO_BITS))
    hi = g("Div", ids, g.int(1 << LO_BITS))  # ids >= 0: truncation == floor
    prime = g.int(P)
    first = g("Mod", g("Mul", a1, lo), prime)
    second = g("Mod", g("Mul", a2, hi), prime)
    return g("Mod", g("Add", g("Add", first, second), c), prime)


def _block_hash(g: _Body, key: str) -> str:
    """h = (G1[c] * key + G2[c]) mod P for keys broadcasting against the block axis (last)."""
    g1, g2 = (g.attr_ints(name) for name in BLOCK_ATTRIBUTES)
    return g("Mod", g("Add", g("Mul", key, g1), g2), g.int(P))


def _feature_coefficients(g: _Body) -> list[str]:
    """a1, a2, c as int64 [F]."""
    return [g.attr_ints(name) for name in FEATURE_ATTRIBUTES]


def _gather_blocks(g: _Body, starts: str, memory: str, ids: str) -> str:
    """Embedding [B, F, d] from block starts [B, F, d/Z]: element j reads M[start(j div Z) + j mod Z]."""
    block_size = g.attr_int("block_size")
    within = g("Range", g.int(0), block_size, g.int(1))  # (Z,)
    index = g("Add", g("Unsqueeze", starts, g.ints(-1)), within)  # (B, F, d/Z, Z)
    shape = g("Concat", g("Shape", ids), g.ints(-1), axis=0)
    return g("Gather", memory, g("Reshape", index, shape), axis=0)  # (B, F, d)


def _span(g: _Body) -> str:
    """m - Z + 1 as a scalar, for the memory named ``M``."""
    return g("Add", g("Sub", g("Size", "M"), g.attr_int("block_size")), g.int(1))


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
    key = _key(g, "ids", *_feature_coefficients(g))  # (B, F)
    h = _block_hash(g, g("Unsqueeze", key, g.ints(-1)))  # (B, F, d/Z)
    _gather_blocks(g, g("Mod", h, _span(g)), "M", "ids")
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
    """``ai.robe::LmaEmbedding(ids, M, keys, offsets, signatures uint8[K, S]) -> float[B,F,d]``.

    A sampled token (found in its feature's keys) hashes its block codes with feature 0's coefficients;
    any other token hashes its id with its own feature's, as RobeEmbedding.
    """
    g = _Body("lma_")
    position, found, _ = _search(g, "ids", "keys", "offsets")
    signatures = g("Cast", "signatures", to=TensorProto.INT64)  # (K, S)
    num_minhashes = g("Gather", g("Shape", signatures), g.int(1), axis=0)
    padding = g("ConstantOfShape", g("Concat", g.ints(1), g("Unsqueeze", num_minhashes, g.ints(0)), axis=0),
                value=helper.make_tensor("v", TensorProto.INT64, [1], [0]))
    own = g("Gather", g("Concat", signatures, padding, axis=0), position, axis=0)  # (B, F, S)
    codes = _block_codes(g, own, num_minhashes)  # (B, F, d/Z)
    a1, a2, c = _feature_coefficients(g)
    first = g.ints(0)
    learned = _key(g, codes, *(g("Gather", x, first, axis=0) for x in (a1, a2, c)))  # (B, F, d/Z)
    hashed = g("Unsqueeze", _key(g, "ids", a1, a2, c), g.ints(-1))  # (B, F, 1)
    key = g("Where", g("Unsqueeze", found, g.ints(-1)), learned, hashed)  # (B, F, d/Z)
    _gather_blocks(g, g("Mod", _block_hash(g, key), _span(g)), "M", "ids")
    default_k = helper.make_attribute("keys_per_block", DEFAULT_KEYS_PER_BLOCK)
    return _function("LmaEmbedding", DOMAIN, ["ids", "M", "keys", "offsets", "signatures"], "embedding", g,
                     ["embedding_dim", "block_size", *HASH_ATTRIBUTES], [default_k])


def _block_codes(g: _Body, signatures: str, num_minhashes: str) -> str:
    """code_c = sum_t sig[(c k + t) mod S] 256^t, from kernels/reference: int64 [B, F, d/Z].

    The sum is an unrolled chain of int64 Adds over MAX_KEYS_PER_BLOCK positions (weight 0 from t = k
    on), never a ReduceSum: onnxruntime 1.32 accumulates int64 ReduceSum in double (docs/export.md).
    """
    per_block = g.attr_int("keys_per_block")
    num_blocks = g("Div", g.attr_int("embedding_dim"), g.attr_int("block_size"))
    blocks = g("Range", g.int(0), num_blocks, g.int(1))  # (d/Z,)
    positions = g("Range", g.int(0), g.int(MAX_KEYS_PER_BLOCK), g.int(1))  # (6,)
    select = g("Mod", g("Add", g("Unsqueeze", g("Mul", blocks, per_block), g.ints(1)), positions),
               num_minhashes)  # (d/Z, 6)
    chosen = g("Gather", signatures, select, axis=2)  # (B, F, d/Z, 6)
    bits = g("Cast", g("Mul", positions, g.int(CODE_SHIFT)), to=TensorProto.UINT64)
    powers = g("Cast", g("BitShift", g("Cast", g.int(1), to=TensorProto.UINT64), bits, direction="LEFT"),
               to=TensorProto.INT64)  # 256^t
    weights = g("Where", g("Less", positions, per_block), powers, g.int(0))  # (6,)
    terms = g.multi("Split", [g("Mul", chosen, weights)], MAX_KEYS_PER_BLOCK, axis=3,
                    num_outputs=MAX_KEYS_PER_BLOCK)  # 6 x (B, F, d/Z, 1)
    total = terms[0]
    for term in terms[1:]:
        total = g("Add", total, term)
    return g("Squeeze", total, g.ints(3))


def hash_rows() -> FunctionProto:
    """``HashRows(ids int64[B,F]) -> int64[B,F]``: global row ``h(f,0,v) mod rows_f + sum(rows_<f)``."""
    g = _Body("hash_")
    h = _block_hash(g, _key(g, "ids", *_feature_coefficients(g)))  # g1, g2 hold one value: (B, F)
    rows = g.attr_ints("rows")
    local = g("Mod", h, rows)
    base = g("Sub", g("CumSum", rows, g.int(0)), rows)  # exclusive prefix sum
    g("Add", local, base)
    return _function("HashRows", PRIVATE_DOMAIN, ["ids"], "rows", g, [*HASH_ATTRIBUTES, "rows"])


def all_functions() -> dict[str, FunctionProto]:
    """Every ai.robe function by op name."""
    return {f.name: f for f in (robe_embedding(), lma_embedding(), vocab_lookup())}
