"""onnxruntime sessions: execution providers, session options, the custom-op library, verified loading.

``OnnxModel.load`` turns a repository version directory into a session that is known to match its
``model.json`` (SHA-256, input and output names, datatypes, ranks) and to run (one warm-up sample).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

import kernels
from kernels.op_version import OpVersionError, check_model_op_version
from service.repository import (
    MODEL_FILE,
    ManifestError,
    ModelManifest,
    TensorSpec,
    file_sha256,
    read_manifest,
)
from service.tensors import NUMPY_DTYPES, Datatype, datatype_from_name

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class LoadError(RuntimeError):
    """A model version could not be loaded; the message is the reason shown in the model's status."""


def resolve_providers(requested: list[str]) -> list[str]:
    """``["auto"]`` -> CUDA (when this onnxruntime has it) then CPU; else check the names exist."""
    available = ort.get_available_providers()
    if requested == ["auto"]:
        return [CUDA, CPU] if CUDA in available else [CPU]
    missing = [name for name in requested if name not in available]
    if missing:
        raise ValueError(f"execution providers {missing} are not available (onnxruntime has {available})")
    return requested


@dataclass(frozen=True)
class RuntimeConfig:
    """How sessions are created.

    Args:
        providers: onnxruntime execution providers in priority order.
        intra_op_threads: threads per session (0: onnxruntime's default).
        allow_spinning: whether idle pool threads spin (off when several sessions share few cores).
    """

    providers: tuple[str, ...]
    intra_op_threads: int = 0
    allow_spinning: bool = False

    def __post_init__(self) -> None:
        if not self.providers:
            raise ValueError("at least one execution provider is needed")
        if self.intra_op_threads < 0:
            raise ValueError(f"intra_op_threads must be >= 0, got {self.intra_op_threads}")


def register_custom_ops(options: ort.SessionOptions) -> bool:
    """Register the ``ai.robe`` library into ``options``; False (kernels logs why) when it is not built,
    in which case models run the standard-op ONNX functions they carry."""
    return kernels.register(options)


def session_options(config: RuntimeConfig) -> ort.SessionOptions:
    """Session options of every served model (custom ops registered when the library is built)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    spinning = "1" if config.allow_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
    register_custom_ops(options)
    return options


def _check_tensor(kind: str, spec: TensorSpec, node: Any) -> None:
    try:
        actual = datatype_from_name(node.type)
    except ValueError:
        raise LoadError(f"{kind} '{spec.name}' has unsupported type {node.type}") from None
    if actual is not spec.datatype:
        raise LoadError(
            f"{kind} '{spec.name}' is {actual.value} in the graph, {spec.datatype.value} in model.json"
        )
    graph_shape = list(node.shape)
    if len(graph_shape) != len(spec.shape):
        raise LoadError(
            f"{kind} '{spec.name}' has rank {len(graph_shape)} in the graph, {len(spec.shape)} in model.json"
        )
    for graph_dim, declared in zip(graph_shape[1:], spec.shape[1:], strict=True):
        if isinstance(graph_dim, int) and declared != -1 and graph_dim != declared:
            raise LoadError(
                f"{kind} '{spec.name}' has shape {graph_shape} in the graph, {list(spec.shape)} in model.json"
            )


def _warmup_feeds(manifest: ModelManifest) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in manifest.inputs:
        shape = [1] + [dim if dim > 0 else 1 for dim in spec.shape[1:]]
        if spec.datatype is Datatype.BYTES:
            feeds[spec.name] = np.full(shape, "", dtype=object)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=NUMPY_DTYPES[spec.datatype])
    return feeds


def read_verified_manifest(version_dir: Path) -> ModelManifest:
    """``model.json`` of a version, checked against the SHA-256 of its ``model.onnx``; LoadError otherwise."""
    try:
        manifest = read_manifest(version_dir)
    except ManifestError as exc:
        raise LoadError(str(exc)) from None
    try:
        actual_sha = file_sha256(version_dir / MODEL_FILE)
    except OSError as exc:
        raise LoadError(f"cannot read model.onnx: {exc}") from None
    if actual_sha != manifest.onnx_sha256:
        raise LoadError(
            f"sha256 mismatch: model.json says {manifest.onnx_sha256[:12]}..., "
            f"model.onnx is {actual_sha[:12]}..."
        )
    try:
        check_model_op_version(version_dir / MODEL_FILE)  # ai.robe version 2 (hash version 2) only
    except (OpVersionError, OSError) as exc:
        raise LoadError(str(exc)) from None
    return manifest


class LoadedModel:
    """What the service serves: a verified version that runs merged batches (``OnnxModel`` for a whole
    graph in one session, ``placement.HybridModel`` for the hybrid split).

    Args:
        manifest: the parsed ``model.json``.
        path: the version directory.
    """

    placement: str = "device"
    pipeline_depth: int = 1  # batches a queue may have in flight (2: the stages of two batches overlap)

    def __init__(self, manifest: ModelManifest, path: Path) -> None:
        self.manifest = manifest
        self.path = path
        self.output_names = [spec.name for spec in manifest.outputs]
        self.device_bytes: int | None = None  # bytes placed on the device, when counted
        self.table_bytes: int = 0  # bytes of the tables kept in host memory (hybrid)
        self.decision_reason = ""

    def graph_inputs(self) -> dict[str, Any]:
        raise NotImplementedError

    def graph_outputs(self) -> dict[str, Any]:
        raise NotImplementedError

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def providers(self) -> list[str]:
        raise NotImplementedError

    def set_stage_observer(self, observer: Any) -> None:
        """Receives per-stage durations (only models with stages call it)."""

    def close(self) -> None:
        """Release what the model holds beyond its sessions (called when it is retired)."""

    def verify(self) -> None:
        """Check the graph's signature against ``model.json`` and run one warm-up sample."""
        self._verify_signature()
        self._warm_up()

    def _verify_signature(self) -> None:
        graph_inputs = self.graph_inputs()
        graph_outputs = self.graph_outputs()
        declared = {spec.name for spec in self.manifest.inputs}
        if set(graph_inputs) != declared:
            raise LoadError(
                f"graph inputs {sorted(graph_inputs)} differ from model.json inputs {sorted(declared)}"
            )
        for spec in self.manifest.inputs:
            _check_tensor("input", spec, graph_inputs[spec.name])
        for spec in self.manifest.outputs:
            if spec.name not in graph_outputs:
                raise LoadError(f"output '{spec.name}' of model.json is not a graph output")
            _check_tensor("output", spec, graph_outputs[spec.name])

    def _warm_up(self) -> None:
        try:
            outputs = self.run(_warmup_feeds(self.manifest))
        except Exception as exc:  # a graph that cannot run one sample cannot serve
            raise LoadError(f"warm-up run failed: {exc}") from None
        for name, value in outputs.items():
            if value.ndim == 0 or value.shape[0] != 1:
                raise LoadError(
                    f"output '{name}' does not keep the batch dimension (shape {list(value.shape)})"
                )


class OnnxModel(LoadedModel):
    """A verified model version: its manifest and one onnxruntime session (placement ``device``).

    Args:
        manifest: the parsed ``model.json``.
        session: the session created from ``model.onnx``.
        path: the version directory.

    Example:
        >>> model = OnnxModel.load(Path("models/dlrm-robe/1"), RuntimeConfig(("CPUExecutionProvider",)))
        >>> model.run({"dense": dense, "categorical": ids})["probability"].shape  # (B,) or (B, 1)
    """

    def __init__(self, manifest: ModelManifest, session: ort.InferenceSession, path: Path) -> None:
        super().__init__(manifest, path)
        self.session = session

    @classmethod
    def load(cls, version_dir: Path, config: RuntimeConfig) -> OnnxModel:
        """Read, verify, open and warm up one version; raises LoadError with the reason."""
        return cls.open(read_verified_manifest(version_dir), version_dir, config)

    @classmethod
    def open(cls, manifest: ModelManifest, version_dir: Path, config: RuntimeConfig) -> OnnxModel:
        """Open the session of an already verified manifest, check and warm it up."""
        try:
            session = ort.InferenceSession(
                str(version_dir / MODEL_FILE),
                sess_options=session_options(config),
                providers=list(config.providers),
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise LoadError(f"onnxruntime cannot open model.onnx: {exc}") from None
        model = cls(manifest, session, version_dir)
        model.verify()
        return model

    def graph_inputs(self) -> dict[str, Any]:
        return {node.name: node for node in self.session.get_inputs()}

    def graph_outputs(self) -> dict[str, Any]:
        return {node.name: node for node in self.session.get_outputs()}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One ``session.run`` over a (merged) batch; returns every declared output by name."""
        values = self.session.run(self.output_names, feeds)
        return {name: np.asarray(value) for name, value in zip(self.output_names, values, strict=True)}

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses."""
        return list(self.session.get_providers())
