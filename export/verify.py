"""Verification of a model version directory; run on every export and by ``python -m export.verify DIR``.

Checks, each a reason to refuse the model:

1. ``model.json`` is readable and its ``onnx_sha256`` (and ``onnx_data_sha256``) match the files;
2. the model imports ai.robe at version 2 (hash version 2) when it imports it at all, and ``model.json``'s
   hash parameters carry version 2: a version-1 model is refused naming its version;
3. ``onnx.checker`` full check (with shape inference) passes;
4. onnxruntime reproduces the torch outputs stored in ``verify.npz`` on held-out rows (probabilities
   within 1e-5; another output within ``model.json``'s ``output_atol[name]`` when given), both
   through the ai.robe kernels (when the library is built) and through the model-local fallback
   functions (plain onnxruntime);
5. the embedding lookup reads exactly the rows / elements ``kernels.reference`` says, on held-out ids and
   golden edge ids (0, 2^31 +- 1, ids above 2^24 and 2^53, 2^62 - 1), on both paths, bit for bit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import kernels
from export import graph
from export.functions import DOMAIN, DOMAIN_VERSION, HASH_ATTRIBUTES
from export.repository import CARD_FILE, DATA_FILE, MODEL_FILE, VERIFY_FILE, read_card, sha256_file
from kernels import reference

logger = logging.getLogger(__name__)

PROBABILITY_ATOL = 1e-5
FLOAT_EXACT_LIMIT = 1 << 24  # float32 holds every integer below this exactly
EDGE_IDS = (0, 1, (1 << 24) + 1, (1 << 31) - 1, 1 << 31, (1 << 31) + 1, (1 << 53) + 1, (1 << 62) - 1)


class VerificationError(Exception):
    """The model failed a check; the message says which and by how much."""


@dataclass
class VerifyReport:
    """What was checked and the figures found.

    Args:
        sha256: of model.onnx.
        max_abs_diff: largest |onnxruntime - torch| over every output and path.
        rows: held-out rows compared.
        lookup_ids: ids whose lookup indices were compared bit for bit with kernels/reference.
        paths: the onnxruntime paths run ("kernel" with the ai.robe library, "function" without).
        atol: the tolerance each output was held to.
    """

    sha256: str
    max_abs_diff: float = 0.0
    rows: int = 0
    lookup_ids: int = 0
    paths: list[str] = field(default_factory=list)
    atol: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"max_abs_diff": self.max_abs_diff, "rows": self.rows, "lookup_ids": self.lookup_ids,
                "paths": self.paths, "atol": self.atol}


def session(model: str | bytes, with_kernels: bool, threads: int = 1) -> ort.InferenceSession:
    """A CPU session; ``with_kernels`` registers the ai.robe library (raises when it is not built)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    if with_kernels and not kernels.register(options):
        raise VerificationError("the ai.robe library is not built; run `make kernels`")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def kernel_library_built() -> bool:
    try:
        kernels.library_path()
    except kernels.LibraryNotBuilt:
        return False
    return True


def available_paths(custom_ops: bool) -> list[str]:
    """Paths to check: the function fallback always, the kernels too when the model and library have them."""
    if not custom_ops:
        return ["standard"]
    if kernel_library_built():
        return ["kernel", "function"]
    logger.warning("ai.robe library not built (make kernels): checking the fallback functions only")
    return ["function"]


def verify_model_dir(model_dir: Path) -> VerifyReport:
    """Run every check on ``model_dir``; raise VerificationError on the first failure."""
    card = read_card(model_dir)
    model_path = model_dir / MODEL_FILE
    report = VerifyReport(sha256=_check_hashes(model_dir, card))
    check_op_version(onnx.load(str(model_path), load_external_data=False), str(model_path))
    if card.get("embedding"):
        _card_params(card)  # refuses hash parameters of another version
    try:
        onnx.checker.check_model(str(model_path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise VerificationError(f"onnx.checker rejects {model_path}: {exc}") from exc
    paths = available_paths(bool(card.get("custom_ops")))
    bundle_path = model_dir / VERIFY_FILE
    if not bundle_path.is_file():
        raise VerificationError(f"{bundle_path} is missing: no held-out rows to compare with torch")
    with np.load(bundle_path) as bundle:
        arrays = {key: bundle[key] for key in bundle.files}
    inputs = {k.removeprefix("input/"): v for k, v in arrays.items() if k.startswith("input/")}
    expected = {k.removeprefix("output/"): v for k, v in arrays.items() if k.startswith("output/")}
    atol = card.get("output_atol", {})
    tolerances = {name: float(atol.get(name, PROBABILITY_ATOL)) for name in expected}
    for path in paths:
        sess = session(str(model_path), path == "kernel")
        diff = _compare_outputs(sess, inputs, expected, tolerances, path)
        report.max_abs_diff = max(report.max_abs_diff, diff)
    report.rows = len(next(iter(inputs.values())))
    report.atol = tolerances
    report.paths = paths
    if card.get("embedding") and "probe/ids" in arrays:
        report.lookup_ids = _check_lookup(model_dir, card, arrays["probe/ids"], paths)
    logger.info("verified %s: max |ort - torch| %.3g on %d rows, %d ids bit-exact, paths %s",
                model_dir, report.max_abs_diff, report.rows, report.lookup_ids, ", ".join(paths))
    return report


def check_op_version(model: onnx.ModelProto, where: str) -> None:
    """Raise VerificationError unless every ai.robe opset the model imports is version 2."""
    for opset in model.opset_import:
        if opset.domain == DOMAIN and opset.version != DOMAIN_VERSION:
            raise VerificationError(
                f"{where} uses ai.robe operators version {opset.version} (hash version {opset.version}); "
                f"this "
                f"build implements version {DOMAIN_VERSION}: export the model again")


def _check_hashes(model_dir: Path, card: dict[str, Any]) -> str:
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise VerificationError(f"{model_path} not found")
    digest = sha256_file(model_path)
    if card.get("onnx_sha256") != digest:
        raise VerificationError(f"sha256 of {model_path} is {digest}, "
                                f"{CARD_FILE} says {card.get('onnx_sha256')}")
    data_path = model_dir / DATA_FILE
    if data_path.exists() or "onnx_data_sha256" in card:
        data_digest = sha256_file(data_path) if data_path.exists() else None
        if card.get("onnx_data_sha256") != data_digest:
            raise VerificationError(f"sha256 of {data_path} does not match {CARD_FILE}")
    return digest


def _compare_outputs(sess: ort.InferenceSession, inputs: dict[str, np.ndarray],
                     expected: dict[str, np.ndarray], tolerances: dict[str, float], path: str) -> float:
    names = [o.name for o in sess.get_outputs()]
    if set(names) != set(expected):
        raise VerificationError(f"model outputs {names} differ from the stored torch outputs "
                                f"{sorted(expected)}")
    got = dict(zip(names, sess.run(names, inputs), strict=True))
    worst = 0.0
    for name, want in expected.items():
        if got[name].shape != want.shape:
            raise VerificationError(f"{path}: output {name} has shape {got[name].shape}, "
                                    f"torch gave {want.shape}")
        diff = float(np.max(np.abs(got[name].astype(np.float64) - want.astype(np.float64)), initial=0.0))
        if not diff <= tolerances[name]:
            raise VerificationError(f"{path}: onnxruntime output {name} differs from torch by {diff:.3g} "
                                    f"(> {tolerances[name]})")
        worst = max(worst, diff)
    return worst


def _check_lookup(model_dir: Path, card: dict[str, Any], held_out: np.ndarray, paths: list[str]) -> int:
    """Lookup indices of held-out and edge ids on every path == kernels/reference. Returns ids checked."""
    model = onnx.load(str(model_dir / MODEL_FILE), load_external_data=False)
    num_features = held_out.shape[1]
    ids = np.concatenate([held_out, np.repeat(np.asarray(EDGE_IDS, np.int64)[:, None], num_features, 1)])
    method = card["embedding"]["method"]
    lookup = next(iter(graph.lookup_nodes(model)), None)
    params = _card_params(card)
    if lookup is not None and lookup.op_type != "VocabLookup":
        _check_attributes(lookup, params)
    tables = _tables(model, model_dir)
    for path in paths:
        if method in ("full", "hash"):
            got = _run_probe(graph.lookup_probe(model, model_dir), path, ids)
            want = _reference_rows(method, ids, tables, params, card)
        else:
            got = _probe_indices(model, model_dir, path, ids, card)
            want = _reference_elements(method, ids, tables, params, card)
        if not np.array_equal(got, want):
            bad = int(np.argwhere(np.any((got != want).reshape(len(ids), -1), axis=1))[0, 0])
            raise VerificationError(f"{path}: embedding lookup of ids {ids[bad].tolist()} differs from "
                                    f"kernels/reference ({method})")
    return int(ids.size)


def _card_params(card: dict[str, Any]) -> reference.HashParams | None:
    hashed = (card["embedding"].get("parameters") or {}).get("hash")
    if not hashed:
        return None
    try:
        return reference.HashParams.from_dict(hashed, "model.json's embedding")
    except reference.HashVersionError as exc:
        raise VerificationError(str(exc)) from exc


def _check_attributes(node: onnx.NodeProto, params: reference.HashParams | None) -> None:
    if params is None:
        raise VerificationError(f"model.json has no hash parameters for the {node.op_type} node")
    attrs = {a.name: list(a.ints) for a in node.attribute if a.type == onnx.AttributeProto.INTS}
    for name in HASH_ATTRIBUTES:
        if attrs.get(name) != getattr(params, name).tolist():
            raise VerificationError(f"{node.op_type} attribute {name} differs from the hash in model.json")


def _tables(model: onnx.ModelProto, model_dir: Path) -> dict[str, np.ndarray]:
    """The lookup's keys / offsets / signatures initializers (named by ``graph.table_name``) as arrays."""
    wanted = {graph.table_name(role): role for role in ("keys", "offsets", "signatures")}
    out = {}
    for tensor in model.graph.initializer:
        if tensor.name in wanted:
            copy = onnx.TensorProto()
            copy.CopyFrom(tensor)
            if onnx.external_data_helper.uses_external_data(copy):
                onnx.external_data_helper.load_external_data_for_tensor(copy, str(model_dir))
                copy.data_location = onnx.TensorProto.DEFAULT
            out[wanted[tensor.name]] = onnx.numpy_helper.to_array(copy)
    return out


def _run_probe(probe: onnx.ModelProto, path: str, ids: np.ndarray) -> np.ndarray:
    sess = session(probe.SerializeToString(), path == "kernel")
    result: np.ndarray = sess.run(None, {"categorical": ids})[0]
    return result


def _probe_indices(model: onnx.ModelProto, model_dir: Path, path: str, ids: np.ndarray,
                   card: dict[str, Any]) -> np.ndarray:
    """The element index every embedding value reads, from two probes whose memory holds index digits."""
    size = int(card["embedding"]["parameters"]["memory_size"])
    index = np.arange(size, dtype=np.int64)
    low = _run_probe(graph.lookup_probe(model, model_dir, (index % FLOAT_EXACT_LIMIT).astype(np.float32)),
                     path, ids)
    high = _run_probe(graph.lookup_probe(model, model_dir, (index // FLOAT_EXACT_LIMIT).astype(np.float32)),
                      path, ids)
    return high.astype(np.int64) * FLOAT_EXACT_LIMIT + low.astype(np.int64)


def _reference_rows(method: str, ids: np.ndarray, tables: dict[str, np.ndarray],
                    params: reference.HashParams | None, card: dict[str, Any]) -> np.ndarray:
    if method == "full":
        return reference.vocab_lookup(ids, tables["keys"], tables["offsets"])
    assert params is not None
    rows = np.asarray(card["embedding"]["parameters"]["rows"], dtype=np.int64)
    return reference.hash_rows(ids, params, rows) + (np.cumsum(rows) - rows)


def _reference_elements(method: str, ids: np.ndarray, tables: dict[str, np.ndarray],
                        params: reference.HashParams | None, card: dict[str, Any]) -> np.ndarray:
    assert params is not None
    p = card["embedding"]["parameters"]
    geometry = (int(p["memory_size"]), int(p["embedding_dim"]), int(p["block_size"]))
    if method == "robe":
        return reference.robe_indices(ids, params, *geometry)
    return reference.lma_indices(ids, tables["keys"], tables["offsets"], tables["signatures"], params,
                                 *geometry, int(p["keys_per_block"]))


def main(argv: list[str] | None = None) -> int:
    """``python -m export.verify MODEL_DIR``: exit 0 and a JSON summary when the model passes, else 1."""
    import json
    import sys

    from export.cli import Parser, setup_logging
    from export.repository import RepositoryError

    parser = Parser(prog="python -m export.verify", description=(
        "Re-verify a model version directory: sha256, onnx.checker, onnxruntime vs torch outputs, "
        "lookup indices vs kernels/reference (kernel and fallback paths)."))
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="e.g. models/dlrm-robe/1")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        report = verify_model_dir(args.model_dir)
    except (VerificationError, RepositoryError, OSError) as exc:
        print(f"error: {args.model_dir} failed verification: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    print(json.dumps({"model_dir": str(args.model_dir), "sha256": report.sha256, **report.summary()}))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
