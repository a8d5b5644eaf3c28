"""Placement (DESIGN.md section 6): where a model runs, and the hybrid split of one ONNX file.

``device``: the whole graph in one session on the device (the GPU, or the CPU on a machine without one).
``hybrid``: the embedding lookups (VocabLookup + Gather on the full tables) in a CPU-provider session with
the tables in host memory, everything after them in a second session on the device. The one ``model.onnx``
is cut at load, in memory, at the embedding output tensors: those ``model.json`` names under
``embedding.outputs``, or, when it names none, the outputs of every ``Gather`` that reads a rank-2
initializer (a table) with indices computed from a graph input (what ``export/`` writes for full and hash
models). The service's memory budget (``--gpu-memory-limit``) decides per model: everything fits ->
``device``; only the part after the lookups fits -> ``hybrid``; nothing fits -> the version is refused
with the bytes it needs and the bytes left, and the previous version keeps serving.

The budget is shared by the models: a version is placed against the limit less what the OTHER models'
serving versions hold on the device (the whole graph of a ``device`` model, the dense part of a ``hybrid``
one; ``service.manager`` passes these as ``held``). On a hot reload of model m, m's current version is not
counted against its successor, since it is released right after the swap (both are resident while the new
one loads and swaps in: a device filled close to its limit needs headroom for that; the default limit keeps
10% of the device, at least 1 GiB, out of the budget). The
decision and its figures (needed, left, limit, what each other model holds) are logged, returned in
``GET /v2/models/{m}`` (``placement_reason``, ``device_bytes``) and shown on the status page.

On a machine without a GPU both sessions run on the CPU provider (so CI tests the split), and the limit
applies to the CPU session as if it were the device.

Threads of a hybrid model (``hybrid_threads``): N = ``--intra-op-threads``, or when that is 0, onnxruntime's
own default (the physical cores this process may use). Dense part on the GPU: the batch queue keeps two
batches in flight, so the lookup session (batch n+1, CPU) and the dense session (batch n, GPU) run at the
same time; the dense session gets 1 thread (it launches kernels), the lookup N - 1. Both parts on the CPU
(no GPU): overlapping them buys nothing, since they share the same cores, and two sessions running at once
oversubscribe them (measured on 2 cores, ``docs/benchmarks/hybrid_cpu.md``: a 1 + 1 split cost 16-48% and
2 + 2 pipelined 10-25% against the whole model at 2 threads); so a CPU-only hybrid model runs one batch
at a time (``pipeline_depth`` 1), its two sessions one after the other, each with N threads, as the whole
model would. Both sessions run with spinning off (two sessions). ``--hybrid-threads LOOKUP,DENSE``
(``ROBESERVE_HYBRID_THREADS``) overrides the thread rule; the threads chosen are logged at load.

Needs the ``onnx`` package (a service dependency) only when a model is split or its bytes are counted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import onnxruntime as ort

from service.repository import MODEL_FILE, ModelManifest
from service.runtime import (
    CPU,
    CUDA,
    LoadedModel,
    LoadError,
    OnnxModel,
    RuntimeConfig,
    read_verified_manifest,
    session_options,
)

if TYPE_CHECKING:
    import onnx

logger = logging.getLogger(__name__)

EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
DEFAULT_MARGIN_FRACTION = 0.10
DEFAULT_MARGIN_MIN = 1 << 30
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 1 << 10, "mi": 1 << 20, "gi": 1 << 30, "ti": 1 << 40}  # fmt: skip


class Placement(StrEnum):
    """Where a model version runs."""

    DEVICE = "device"
    HYBRID = "hybrid"


class PlacementMode(StrEnum):
    """What the settings ask for: choose from the budget (``auto``) or force one placement."""

    AUTO = "auto"
    DEVICE = "device"
    HYBRID = "hybrid"


def parse_size(text: str) -> int:
    """``"5MB"`` -> 5_000_000, ``"24GiB"`` -> 24 * 2**30, ``"1000"`` -> 1000 bytes; ValueError otherwise."""
    match = _SIZE.match(str(text))
    if match is None:
        raise ValueError(f"cannot read {text!r} as a size (examples: 5MB, 24GB, 512MiB, 1000000)")
    number, unit = match.groups()
    unit = (unit or "").lower().rstrip("b") if (unit or "").lower() != "b" else ""
    value = float(number) * _UNITS[unit]
    if value < 1:
        raise ValueError(f"size {text!r} is below one byte")
    return int(value)


def parse_modes(text: str) -> tuple[PlacementMode, dict[str, PlacementMode]]:
    """``"auto"`` or ``"hybrid"`` (every model) or ``"auto,dlrm-full=hybrid,dlrm-robe=device"``."""
    default, per_model = PlacementMode.AUTO, {}
    choices = ", ".join(mode.value for mode in PlacementMode)
    for part in (item.strip() for item in text.split(",")):
        if not part:
            continue
        name, _, mode = part.rpartition("=")
        try:
            value = PlacementMode(mode.strip().lower())
        except ValueError:
            raise ValueError(f"unknown placement {mode.strip()!r} in {text!r}; choose {choices}") from None
        if name:
            per_model[name.strip()] = value
        else:
            default = value
    return default, per_model


def format_bytes(count: int) -> str:
    """``123456789`` -> ``"123.5 MB (123456789 bytes)"``."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit} ({count} bytes)"
    return f"{count} bytes"


def parse_thread_pair(text: str) -> tuple[int, int]:
    """``"3,1"`` -> (3, 1): intra-op threads of a hybrid model's lookup and dense sessions; ValueError
    otherwise."""
    parts = [part.strip() for part in str(text).split(",")]
    try:
        lookup, dense = (int(part) for part in parts)
    except ValueError:
        raise ValueError(f"hybrid threads {text!r}: expected LOOKUP,DENSE (e.g. 1,1)") from None
    if lookup < 1 or dense < 1:
        raise ValueError(f"hybrid threads {text!r}: each session needs at least 1 thread")
    return lookup, dense


def physical_cores() -> int:
    """Physical cores among the CPUs this process may run on (what onnxruntime's default intra-op thread
    count is based on); the count of those CPUs when the topology cannot be read."""
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not allowed:
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(allowed)
        cores.add((package, core))
    return max(1, len(cores))


def hybrid_threads(
    config: RuntimeConfig, on_gpu: bool, override: tuple[int, int] | None = None
) -> tuple[int, int]:
    """Intra-op threads of the (lookup, dense) sessions of a hybrid model; see the module docstring."""
    if override is not None:
        return override
    whole = config.intra_op_threads or physical_cores()
    if on_gpu:
        return max(1, whole - 1), 1
    return whole, whole  # the two parts run one after the other (pipeline_depth 1 on the CPU)


def _cudart() -> Any | None:
    """The CUDA runtime library (from the system or the nvidia-* pip wheels), or None."""
    names = [ctypes.util.find_library("cudart"), "libcudart.so", "libcudart.so.13", "libcudart.so.12"]
    for site in sys.path:
        for sub in ("nvidia/cu13/lib", "nvidia/cuda_runtime/lib"):
            folder = Path(site) / sub
            if folder.is_dir():
                names.extend(str(path) for path in sorted(folder.glob("libcudart.so*")))
    for name in names:
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def device_memory(device_id: int = 0) -> tuple[int, int] | None:
    """(free, total) bytes of CUDA device ``device_id``, or None without a usable GPU."""
    cudart = _cudart()
    if cudart is None:
        return None
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    try:
        if cudart.cudaSetDevice(ctypes.c_int(device_id)) != 0:
            return None
        if cudart.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)) != 0:
            return None
    except AttributeError:
        return None
    return int(free.value), int(total.value)


def host_memory() -> int:
    """Physical memory of this machine in bytes."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass(frozen=True)
class PlacementPolicy:
    """How placements are chosen.

    Args:
        limit_bytes: the device memory budget; None: no budget (everything is ``device``).
        mode: ``auto`` or the placement every model is forced to.
        per_model: model name -> forced mode (wins over ``mode``).
        on_gpu: whether the dense sessions use the CUDA provider.
    """

    limit_bytes: int | None = None
    mode: PlacementMode = PlacementMode.AUTO
    per_model: tuple[tuple[str, PlacementMode], ...] = ()
    on_gpu: bool = False
    hybrid_threads: tuple[int, int] | None = None

    def mode_of(self, name: str) -> PlacementMode:
        return dict(self.per_model).get(name, self.mode)

    @classmethod
    def from_settings(
        cls, limit: str | None, placement: str, providers: Iterable[str], hybrid_threads: str | None = None
    ) -> PlacementPolicy:
        """Resolve the budget: the given size (checked against the device), else the device's free
        memory less a margin (GPU), else none (CPU). Raises ValueError with a one-line reason."""
        on_gpu = CUDA in providers
        mode, per_model = parse_modes(placement)
        threads = parse_thread_pair(hybrid_threads) if hybrid_threads else None
        limit_bytes: int | None = None
        memory = device_memory() if on_gpu else None
        if limit is not None and str(limit).strip():
            limit_bytes = parse_size(limit)
            if memory is not None:
                device, capacity = "the GPU", memory[1]
            else:
                device, capacity = (
                    "this machine's memory (no GPU: the CPU session is the device)",
                    host_memory(),
                )
            if limit_bytes > capacity:
                raise ValueError(
                    f"--gpu-memory-limit {limit} ({format_bytes(limit_bytes)}) is larger than {device}: "
                    f"{format_bytes(capacity)}"
                )
        elif memory is not None:
            free, total = memory
            limit_bytes = max(0, free - max(DEFAULT_MARGIN_MIN, int(DEFAULT_MARGIN_FRACTION * total)))
            logger.info(
                "GPU memory budget %s (free %s less a margin)", format_bytes(limit_bytes), format_bytes(free)
            )
        return cls(limit_bytes, mode, tuple(sorted(per_model.items())), on_gpu, threads)


# ---------------------------------------------------------------------------------------------------------
# The cut


def _tensor_bytes(tensor: onnx.TensorProto) -> int:
    from onnx import helper

    count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError):
        itemsize = 8
    return count * itemsize


def _subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names read by the node's subgraphs (If/Loop/Scan bodies)."""
    names: set[str] = set()
    for attribute in node.attribute:
        graphs = list(attribute.graphs) + ([attribute.g] if attribute.HasField("g") else [])
        for graph in graphs:
            local = {i.name for i in graph.input} | {t.name for t in graph.initializer}
            for inner in graph.node:
                local.update(inner.output)
            for inner in graph.node:
                names.update(
                    name for name in [*inner.input, *_subgraph_inputs(inner)] if name and name not in local
                )
    return names


def _node_inputs(node: onnx.NodeProto) -> set[str]:
    return {name for name in node.input if name} | _subgraph_inputs(node)


@dataclass
class Split:
    """A model cut in two: the lookup part (graph inputs -> embedding outputs) and the dense part."""

    lookup: onnx.ModelProto
    dense: onnx.ModelProto
    embedding_outputs: tuple[str, ...]
    lookup_bytes: int
    dense_bytes: int


def total_initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(_tensor_bytes(t) for t in model.graph.initializer)


def embedding_outputs(model: onnx.ModelProto, manifest: ModelManifest) -> tuple[str, ...]:
    """The tensors to cut at: ``model.json``'s ``embedding.outputs``, else the table Gathers' outputs."""
    embedding = manifest.document.get("embedding")
    declared = embedding.get("outputs") if isinstance(embedding, dict) else None
    produced = {name for node in model.graph.node for name in node.output}
    if declared is not None:
        if not isinstance(declared, list) or not declared or not all(isinstance(n, str) for n in declared):
            raise LoadError("model.json embedding.outputs must be a non-empty list of tensor names")
        missing = [name for name in declared if name not in produced]
        if missing:
            raise LoadError(
                f"model.json embedding.outputs names {missing}, which no node of the graph produces"
            )
        return tuple(declared)
    initializers = {t.name: t for t in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input} - set(initializers)
    producer = {name: node for node in model.graph.node for name in node.output}

    def reads_input(name: str) -> bool:
        seen, pending = set(), [name]
        while pending:
            current = pending.pop()
            if current in graph_inputs:
                return True
            if current in seen or current not in producer:
                continue
            seen.add(current)
            pending.extend(_node_inputs(producer[current]))
        return False

    found = tuple(
        node.output[0]
        for node in model.graph.node
        if node.op_type == "Gather" and node.domain in ("", "ai.onnx")
        and node.input[0] in initializers and len(initializers[node.input[0]].dims) == 2
        and reads_input(node.input[1])
    )  # fmt: skip
    if not found:
        raise LoadError(
            "hybrid placement needs the embedding output tensors: model.json names none "
            "(embedding.outputs) and the graph has no Gather over a table to cut at "
            f"(embedding method {manifest.method or 'unknown'})"
        )
    return found


def split_model(model: onnx.ModelProto, outputs: tuple[str, ...]) -> Split:
    """Cut ``model`` at ``outputs``: the lookup part computes them from graph inputs; the dense part reads
    them with the remaining graph inputs. Raises LoadError when the cut is not clean."""
    from onnx import helper

    producer = {name: index for index, node in enumerate(model.graph.node) for name in node.output}
    initializers = {t.name: t for t in model.graph.initializer}
    lookup_nodes: set[int] = set()
    pending = list(outputs)
    while pending:
        name = pending.pop()
        index = producer.get(name)
        if index is None or index in lookup_nodes:
            continue
        lookup_nodes.add(index)
        pending.extend(_node_inputs(model.graph.node[index]))
    nodes = list(model.graph.node)
    lookup = [node for i, node in enumerate(nodes) if i in lookup_nodes]
    dense = [node for i, node in enumerate(nodes) if i not in lookup_nodes]
    lookup_values = {name for node in lookup for name in node.output}
    dense_reads = {name for node in dense for name in _node_inputs(node)}
    dense_reads |= {o.name for o in model.graph.output}
    leaked = sorted((dense_reads & lookup_values) - set(outputs))
    if leaked:
        raise LoadError(f"cannot cut the graph at {list(outputs)}: the dense part also reads {leaked}")
    value_info = {v.name: v for v in [*model.graph.value_info, *model.graph.output]}
    types = {}
    for name in outputs:
        if name in value_info:
            types[name] = value_info[name]
            continue
        node = nodes[producer[name]]
        table = initializers.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None:
            raise LoadError(f"the type of embedding output '{name}' is unknown (no value_info in the graph)")
        types[name] = helper.make_tensor_value_info(name, table.data_type, None)

    def part(
        part_nodes: list[Any], inputs: list[Any], graph_outputs: list[Any], title: str
    ) -> onnx.ModelProto:
        reads = {name for node in part_nodes for name in _node_inputs(node)}
        graph = helper.make_graph(
            part_nodes, f"{model.graph.name}_{title}", inputs, graph_outputs,
            initializer=[t for t in model.graph.initializer if t.name in reads],
            value_info=[v for v in model.graph.value_info if v.name in reads],
        )  # fmt: skip
        result = helper.make_model(graph, opset_imports=model.opset_import, functions=model.functions)
        result.ir_version = model.ir_version
        return result

    lookup_reads = {name for node in lookup for name in _node_inputs(node)}
    lookup_model = part(
        lookup, [i for i in model.graph.input if i.name in lookup_reads and i.name not in initializers],
        [types[name] for name in outputs], "lookup",
    )  # fmt: skip
    dense_inputs = [i for i in model.graph.input if i.name in dense_reads and i.name not in initializers]
    dense_model = part(
        dense, dense_inputs + [types[name] for name in outputs], list(model.graph.output), "dense"
    )
    return Split(
        lookup_model, dense_model, outputs,
        total_initializer_bytes(lookup_model), total_initializer_bytes(dense_model),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# Decision


@dataclass(frozen=True)
class Decision:
    """A placement and the bytes behind it.

    Args:
        placement: where the version runs.
        total_bytes: every initializer of the graph.
        device_bytes: what it places on the device (the whole graph, or the dense part of a hybrid split).
        reason: one line with the figures (logged, shown on the status page and in the model's metadata).
        limit_bytes: the device memory budget (None: no budget).
        held_bytes: bytes other models' serving versions hold on the device when the decision was made.
    """

    placement: Placement
    total_bytes: int
    device_bytes: int
    reason: str
    limit_bytes: int | None = None
    held_bytes: int = 0

    @property
    def left_bytes(self) -> int | None:
        """Budget this version could use: the limit less what the other models hold (None: no limit)."""
        return None if self.limit_bytes is None else max(0, self.limit_bytes - self.held_bytes)


def _budget_text(limit: int | None, held: Mapping[str, int]) -> str:
    """``"no limit"``, or the limit and what each other model holds on the device."""
    if limit is None:
        return "no limit"
    if not held:
        return f"limit {format_bytes(limit)}, nothing held by other models"
    holders = ", ".join(f"{name} {format_bytes(count)}" for name, count in sorted(held.items()))
    return f"limit {format_bytes(limit)}, other models hold {format_bytes(sum(held.values()))}: {holders}"


def decide(
    name: str,
    policy: PlacementPolicy,
    total_bytes: int,
    split: Split | None,
    split_error: str | None,
    held: Mapping[str, int] | None = None,
) -> Decision:
    """Choose from the bytes: whole model on the device when it fits what is left of the budget, else
    hybrid when the dense part fits, else LoadError with the bytes needed and the bytes left. A forced mode
    still has to fit.

    ``held`` maps the other models to the bytes their serving versions hold on the device (the whole graph
    of a ``device`` model, the dense part of a ``hybrid`` one). The budget of ``name`` is the limit less
    the bytes of the OTHER models: on a hot reload, the version being replaced is not counted against its
    successor (it is released right after the swap; see the module docstring).
    """
    mode = policy.mode_of(name)
    others = {other: count for other, count in (held or {}).items() if other != name and count > 0}
    held_bytes = sum(others.values())
    limit = policy.limit_bytes
    left = None if limit is None else max(0, limit - held_bytes)
    budget = _budget_text(limit, others)
    if left is not None:
        budget = f"{format_bytes(left)} left on the device; {budget}"
    fits_whole = left is None or total_bytes <= left
    if mode is PlacementMode.DEVICE or (mode is PlacementMode.AUTO and fits_whole):
        if not fits_whole:
            raise LoadError(f"placement device needs {format_bytes(total_bytes)} on the device; {budget}")
        return Decision(
            Placement.DEVICE, total_bytes, total_bytes, f"{format_bytes(total_bytes)} fit ({budget})",
            limit, held_bytes,
        )  # fmt: skip
    if split is None:
        why = split_error or "the model cannot be split"
        if mode is PlacementMode.HYBRID:
            raise LoadError(f"placement hybrid was asked for: {why}")
        raise LoadError(
            f"the model needs {format_bytes(total_bytes)} on the device ({budget}), and hybrid placement "
            f"is impossible: {why}"
        )
    if left is not None and split.dense_bytes > left:
        raise LoadError(
            f"the model fits nowhere: it needs {format_bytes(total_bytes)} on the device, or "
            f"{format_bytes(split.dense_bytes)} in hybrid placement (tables of "
            f"{format_bytes(split.lookup_bytes)} in host memory); {budget}"
        )
    return Decision(
        Placement.HYBRID, total_bytes, split.dense_bytes,
        f"tables of {format_bytes(split.lookup_bytes)} in host memory, "
        f"{format_bytes(split.dense_bytes)} on the device ({budget})",
        limit, held_bytes,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# The hybrid model


class StageObserver(Protocol):
    """Receives the duration of each stage of a hybrid batch (``lookup``, ``transfer``, ``dense``)."""

    def stage(self, stage: str, seconds: float) -> None: ...


class PinnedBuffers:
    """Page-locked host buffers (``cudaHostRegister`` on NumPy memory) the lookup writes into, so the copy to
    the device is a DMA; plain NumPy memory when no CUDA runtime is present. One buffer per pipeline slot and
    shape, so the lookup of batch n+1 never overwrites what batch n still copies."""

    def __init__(self, enabled: bool, slots: int = 2, max_shapes: int = 8) -> None:
        self._cudart = _cudart() if enabled else None
        self.pinned = self._cudart is not None
        self._slots = slots
        self._max_shapes = max_shapes
        self._buffers: dict[tuple[int, tuple[int, ...], str], np.ndarray] = {}
        self._registered: list[int] = []
        self._lock = threading.Lock()

    def get(self, slot: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        key = (slot % self._slots, shape, np.dtype(dtype).str)
        with self._lock:
            buffer = self._buffers.get(key)
            if buffer is None:
                if len(self._buffers) >= self._max_shapes * self._slots:
                    self.release()
                buffer = np.empty(shape, dtype=dtype)
                if self._cudart is not None and buffer.nbytes:
                    pointer = buffer.ctypes.data
                    if (
                        self._cudart.cudaHostRegister(
                            ctypes.c_void_p(pointer), ctypes.c_size_t(buffer.nbytes), 0
                        )
                        == 0
                    ):
                        self._registered.append(pointer)
                self._buffers[key] = buffer
            return buffer

    def release(self) -> None:
        """Unregister and drop every buffer."""
        if self._cudart is not None:
            for pointer in self._registered:
                self._cudart.cudaHostUnregister(ctypes.c_void_p(pointer))
        self._registered.clear()
        self._buffers.clear()


class HybridModel(LoadedModel):
    """A model served in two sessions: lookup (CPU provider, host tables) then dense (the device).

    ``run`` holds one lock per stage, so with the dense part on the GPU two batches in flight (the batch
    queue's two workers) overlap: the lookup of batch n+1 runs while batch n is in the dense part. With both
    parts on the CPU one batch is in flight (``pipeline_depth`` 1; see the module docstring).
    """

    placement = Placement.HYBRID

    def __init__(
        self,
        manifest: ModelManifest,
        path: Path,
        lookup: ort.InferenceSession,
        dense: ort.InferenceSession,
        split: Split,
        decision: Decision,
    ) -> None:
        super().__init__(manifest, path)
        self.lookup_session = lookup
        self.dense_session = dense
        self.split = split
        self.decision = decision
        self.embedding_outputs = split.embedding_outputs
        self.on_gpu = CUDA in dense.get_providers()
        # two batches in flight only when the stages use different hardware (see the module docstring)
        self.pipeline_depth = 2 if self.on_gpu else 1
        self.lookup_input_names = [node.name for node in lookup.get_inputs()]
        self.dense_input_names = [
            node.name for node in dense.get_inputs() if node.name not in split.embedding_outputs
        ]
        self._lookup_lock = threading.Lock()
        self._dense_lock = threading.Lock()
        self._slot = 0
        self._pinned = PinnedBuffers(self.on_gpu)
        self._observer: StageObserver | None = None

    def set_stage_observer(self, observer: StageObserver | None) -> None:
        self._observer = observer

    def _observe(self, stage: str, seconds: float) -> None:
        if self._observer is not None:
            self._observer.stage(stage, seconds)

    def graph_inputs(self) -> dict[str, Any]:
        nodes = {node.name: node for node in self.lookup_session.get_inputs()}
        nodes.update(
            {n.name: n for n in self.dense_session.get_inputs() if n.name not in self.embedding_outputs}
        )
        return nodes

    def graph_outputs(self) -> dict[str, Any]:
        return {node.name: node for node in self.dense_session.get_outputs()}

    @property
    def providers(self) -> list[str]:
        return list(self.dense_session.get_providers())

    def lookup(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, Any], int]:
        """Stage 1 (and 2 on a GPU): the embeddings of one batch, on the device when there is one."""
        with self._lookup_lock:
            slot, self._slot = self._slot, self._slot + 1
            started = time.perf_counter()
            values = self.lookup_session.run(
                list(self.embedding_outputs), {n: feeds[n] for n in self.lookup_input_names}
            )
            looked_up = time.perf_counter()
            self._observe("lookup", looked_up - started)
            embeddings: dict[str, Any] = {}
            for name, value in zip(self.embedding_outputs, values, strict=True):
                if self.on_gpu:
                    staging = self._pinned.get(slot, value.shape, value.dtype)
                    np.copyto(staging, value)
                    embeddings[name] = ort.OrtValue.ortvalue_from_numpy(staging, "cuda", 0)
                else:
                    embeddings[name] = value
            if self.on_gpu:
                self._observe("transfer", time.perf_counter() - looked_up)
            return embeddings, slot

    def dense(self, feeds: dict[str, np.ndarray], embeddings: dict[str, Any]) -> dict[str, np.ndarray]:
        """Stage 3: the rest of the graph; outputs come back to host memory."""
        with self._dense_lock:
            started = time.perf_counter()
            if self.on_gpu:
                binding = self.dense_session.io_binding()
                for name in self.dense_input_names:
                    binding.bind_cpu_input(name, feeds[name])
                for name, value in embeddings.items():
                    binding.bind_ortvalue_input(name, value)
                for name in self.output_names:
                    binding.bind_output(name, "cpu")
                self.dense_session.run_with_iobinding(binding)
                values = binding.copy_outputs_to_cpu()
            else:
                dense_feeds = {name: feeds[name] for name in self.dense_input_names}
                dense_feeds.update(embeddings)
                values = self.dense_session.run(self.output_names, dense_feeds)
            self._observe("dense", time.perf_counter() - started)
        return {name: np.asarray(value) for name, value in zip(self.output_names, values, strict=True)}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        embeddings, _ = self.lookup(feeds)
        return self.dense(feeds, embeddings)

    def close(self) -> None:
        self._pinned.release()


def _session(
    model: onnx.ModelProto, version_dir: Path, config: RuntimeConfig, providers: list[str]
) -> ort.InferenceSession:
    options = session_options(config)
    options.add_session_config_entry(EXTERNAL_FOLDER_KEY, str(version_dir.resolve()))
    try:
        return ort.InferenceSession(model.SerializeToString(), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise LoadError(f"onnxruntime cannot open the {model.graph.name} part: {exc}") from None


def load_model(
    version_dir: Path, config: RuntimeConfig, policy: PlacementPolicy, held: Mapping[str, int] | None = None
) -> LoadedModel:
    """Read, verify, place, open and warm up one version; raises LoadError with the reason.

    ``held``: other model name -> bytes its serving version holds on the device (see ``decide``); the
    model's own name, if present, is ignored.
    """
    manifest = read_verified_manifest(version_dir)
    mode = policy.mode_of(manifest.name)
    if policy.limit_bytes is None and mode is PlacementMode.AUTO:
        return OnnxModel.open(manifest, version_dir, config)  # no budget: no need to read the graph
    import onnx

    try:
        proto = onnx.load(str(version_dir / MODEL_FILE), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise LoadError(f"cannot read model.onnx: {exc}") from None
    total = total_initializer_bytes(proto)
    others = {name: count for name, count in (held or {}).items() if name != manifest.name}
    left = None if policy.limit_bytes is None else policy.limit_bytes - sum(others.values())
    split, split_error = None, None
    needs_split = mode is PlacementMode.HYBRID or (
        mode is PlacementMode.AUTO and left is not None and total > left
    )
    if needs_split:
        try:
            split = split_model(proto, embedding_outputs(proto, manifest))
        except LoadError as exc:
            split_error = str(exc)
    decision = decide(manifest.name, policy, total, split, split_error, others)
    logger.info("model '%s' version %s placement %s: %s", manifest.name, manifest.version,
                decision.placement.value, decision.reason)  # fmt: skip
    if decision.placement is Placement.DEVICE:
        model: LoadedModel = OnnxModel.open(manifest, version_dir, config)
        model.decision_reason = decision.reason
        model.device_bytes = decision.device_bytes
        return model
    assert split is not None
    on_gpu = CUDA in config.providers
    lookup_threads, dense_threads = hybrid_threads(config, on_gpu, policy.hybrid_threads)
    logger.info(
        "model '%s' version %s hybrid intra-op threads: lookup %d, dense %d (%s; spinning off)",
        manifest.name, manifest.version, lookup_threads, dense_threads,
        "set by --hybrid-threads" if policy.hybrid_threads else
        f"{'run at once' if on_gpu else 'run one after the other'}; "
        f"the whole-model session would get {config.intra_op_threads or physical_cores()}"
        f"{'' if config.intra_op_threads else ' (onnxruntime default: physical cores)'}",
    )  # fmt: skip
    lookup_config = replace(config, intra_op_threads=lookup_threads, allow_spinning=False)
    dense_config = replace(config, intra_op_threads=dense_threads, allow_spinning=False)
    lookup = _session(split.lookup, version_dir, lookup_config, [CPU])
    dense = _session(split.dense, version_dir, dense_config, list(config.providers))
    hybrid = HybridModel(manifest, version_dir, lookup, dense, split, decision)
    hybrid.decision_reason = decision.reason
    hybrid.device_bytes = decision.device_bytes
    hybrid.table_bytes = split.lookup_bytes
    hybrid.verify()
    return hybrid
