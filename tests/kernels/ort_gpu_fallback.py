"""Load the ai.robe library into onnxruntime-gpu and run every op on its CPU fallback (no GPU needed).

Run by tests/kernels/test_ort_gpu_fallback.py with the interpreter of a separate environment that has
``onnxruntime-gpu`` (the two onnxruntime wheels install the same module, so never both in one venv):
``python tests/kernels/ort_gpu_fallback.py LIBRARY``. Needs numpy, onnx and onnxruntime-gpu only; prints
one JSON line with what it checked and exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path[:0] = [str(Path(__file__).resolve().parents[2]), str(Path(__file__).resolve().parent)]

from kernel_models import embedding_attrs, lma_model, robe_model, vocab_model  # noqa: E402

from kernels import reference as ref  # noqa: E402

PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
IR_VERSION = 10  # what export writes; onnxruntime-gpu 1.31 reads IR <= 13, newer onnx writes 14


def _session(model: bytes, library: str) -> ort.InferenceSession:
    proto = onnx.load_from_string(model)
    proto.ir_version = IR_VERSION
    model = proto.SerializeToString()
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.register_custom_ops_library(library)
    available = [p for p in PROVIDERS if p in ort.get_available_providers()]
    return ort.InferenceSession(model, options, providers=available)


def main(library: str) -> int:
    rng = np.random.default_rng(0)
    num_features, dim, block_size, m = 4, 8, 4, 1001
    params = ref.HashParams.from_seed(num_features, dim // block_size, 3)
    ids = rng.integers(0, 2**40, size=(5, num_features), dtype=np.int64)
    ids[0] = [0, 2**31 - 1, 2**31, 2**62 - 1]
    memory = rng.standard_normal(m).astype(np.float32)
    keys = np.sort(np.unique(ids[:3, 0]))
    keys = np.concatenate([keys, np.unique(ids[:2, 1])]).astype(np.int64)
    offsets = np.asarray([0, len(np.unique(ids[:3, 0])), len(keys), len(keys), len(keys)], dtype=np.int64)
    signatures = rng.integers(0, 256, size=(len(keys), ref.DEFAULT_NUM_MINHASHES)).astype(np.uint8)
    attrs = embedding_attrs(params, dim, block_size)

    robe = _session(robe_model(attrs), library)
    got = robe.run(None, {"ids": ids, "M": memory})[0]
    np.testing.assert_array_equal(got, ref.robe_lookup(ids, memory, params, dim, block_size))

    lma = _session(lma_model({**attrs, "keys_per_block": ref.DEFAULT_KEYS_PER_BLOCK}), library)
    feeds = {"ids": ids, "M": memory, "keys": keys, "offsets": offsets, "signatures": signatures}
    got = lma.run(None, feeds)[0]
    index = ref.lma_indices(ids, keys, offsets, signatures, params, m, dim, block_size)
    np.testing.assert_array_equal(got, memory[index])

    vocab = _session(vocab_model(), library)
    got = vocab.run(None, {"ids": ids, "keys": keys, "offsets": offsets})[0]
    np.testing.assert_array_equal(got, ref.vocab_lookup(ids, keys, offsets))

    try:
        robe.run(None, {"ids": np.asarray([[-1, 0, 0, 0]], dtype=np.int64), "M": memory})
    except Exception as error:  # onnxruntime raises its own Fail/InvalidArgument types
        rejected = "INVALID_ARGUMENT" in str(error) or "invalid" in str(error).lower()
    else:
        rejected = False
    if not rejected:
        print(json.dumps({"error": "id -1 was not rejected"}))
        return 1
    print(json.dumps({
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "session_providers": robe.get_providers(),
        "checked": ["RobeEmbedding", "LmaEmbedding", "VocabLookup", "invalid id rejected"],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
