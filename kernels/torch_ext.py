"""The ai.robe CUDA kernels as PyTorch forward ops on CUDA tensors (training, GPU benchmarks, GPU check).

API::

    import torch
    from kernels import reference, torch_ext

    ops = torch_ext.load()  # compiles once into build/torch_ext (nvcc + torch.utils.cpp_extension)
    params = reference.HashParams.from_seed(num_features=26, num_blocks=4, seed=0)
    robe = ops.robe_plan(params, dim=16, block_size=4)                   # once per embedding
    ids = torch.randint(0, 2**62, (4096, 26), device="cuda")              # int64 [B, F]
    memory = torch.randn(540_000, device="cuda")                          # float32 [m]
    emb = robe(ids, memory)                                               # float32 [B, F, 16]
    lma = ops.lma_plan(params, 16, 4, keys, offsets, signatures, keys_per_block=2)  # keys: int64 cuda [K],
    emb = lma(ids, memory)                                                # signatures: uint8 cuda [K, S]
    rows = ops.vocab_forward(ids, keys, offsets)                          # int64 [B, F]

A plan (``RobePlan``, ``LmaPlan``) validates the hash coefficients, the LMA tables and offsets ONCE and
holds the native launch plan (``kernels/cuda/c_api.h``) and, for ctypes, the prepared launch arguments;
a call checks only the tensors it is given (dtype, device, shape) and launches. ``robe_forward`` and
``lma_forward`` make a plan for one call. Every op takes ``out=`` (a preallocated contiguous tensor) and
runs on ``torch.cuda.current_stream()`` without synchronising. Results equal :mod:`kernels.reference`
bit for bit; an id outside [0, 2^62) gives NaN (embeddings) or the feature's OOV row (VocabLookup)
instead of an error, since checking would synchronise. At most 128 features and 128 blocks. Forward only.

Backends: ``extension`` (``torch.utils.cpp_extension.load``, needs ninja and a C++ compiler) and ``ctypes``
(calls ``librobe_launchers.so`` directly); ``auto`` takes the extension and falls back to ctypes.
Both call the same launchers (``kernels/cuda/launchers.h``); they differ only in call overhead.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from kernels import default_build_dir
from kernels.build import LAUNCHERS_NAME, SOURCE_DIR, BuildError, build_launchers
from kernels.reference import DEFAULT_KEYS_PER_BLOCK, HashParams, check_lma_shape

logger = logging.getLogger(__name__)

MAX_FEATURES = 128
MAX_BLOCKS = 128
EXTENSION_NAME = "robe_cuda_ext"


class Backend(StrEnum):
    AUTO = "auto"
    EXTENSION = "extension"
    CTYPES = "ctypes"


class CudaUnavailable(RuntimeError):
    """PyTorch sees no CUDA device."""


class RawOps(Protocol):
    """The launchers behind one bridge; tensors are already checked. A plan is an opaque integer handle."""

    def plan_create(self, a1: Any, a2: Any, c: Any, g1: Any, g2: Any, offsets: Any, num_keys: int) -> int: ...

    def plan_destroy(self, plan: int) -> None: ...

    def robe(self, plan: int, ids: Any, memory: Any, dim: int, block_size: int, out: Any,
             stream: int) -> None: ...

    def lma(self, plan: int, ids: Any, memory: Any, dim: int, block_size: int, keys: Any, signatures: Any,
            keys_per_block: int, out: Any, stream: int) -> None: ...

    def vocab(self, ids: Any, keys: Any, offsets: Any, out: Any, stream: int) -> None: ...


def default_dir() -> Path:
    return default_build_dir().parent / "torch_ext"


def _sources_newer(target: Path) -> bool:
    sources = [*(SOURCE_DIR / "cuda").glob("*"), SOURCE_DIR / "common" / "hash.h"]
    return not target.exists() or max(p.stat().st_mtime for p in sources) > target.stat().st_mtime


def launchers_library(build_dir: Path, archs: Sequence[str] | None = None) -> Path:
    """librobe_launchers.so in build_dir, compiled when missing or older than its sources."""
    target = build_dir / LAUNCHERS_NAME
    if _sources_newer(target):
        logger.info("compiling %s with nvcc", target)
        build_launchers(build_dir, archs or _device_archs())
    return target


def _device_archs() -> tuple[str, ...]:
    """The visible GPU's architecture (fast to compile), else sm_80 and sm_90."""
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return (f"{major}{minor}",)
    return ("80", "90")


class _CtypesOps:
    """RawOps through ctypes on librobe_launchers.so (C ABI of kernels/cuda/c_api.h)."""

    def __init__(self, library: Path) -> None:
        lib = ctypes.CDLL(str(library))
        lib.robe_cuda_last_error.restype = ctypes.c_char_p
        ptr, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.robe_cuda_plan_create.argtypes = [ptr, ptr, ptr, i64, ptr, ptr, i64, ptr, i64,
                                              ctypes.POINTER(ptr)]
        lib.robe_cuda_plan_destroy.argtypes = [ptr]
        lib.robe_cuda_robe_embedding.argtypes = [ptr, ptr, i64, ptr, i64, i64, i64, ptr, ptr]
        lib.robe_cuda_lma_embedding.argtypes = [ptr, ptr, i64, ptr, i64, i64, i64, ptr, ptr, i64, i64, ptr,
                                                ptr]
        lib.robe_cuda_vocab_lookup.argtypes = [ptr, i64, i64, ptr, i64, ptr, ptr, ptr]
        self._lib = lib

    def _check(self, status: int) -> None:
        if status != 0:
            message = self._lib.robe_cuda_last_error().decode()
            raise (ValueError if status == 1 else RuntimeError)(message)

    def plan_create(self, a1: Any, a2: Any, c: Any, g1: Any, g2: Any, offsets: Any, num_keys: int) -> int:
        handle = ctypes.c_void_p()
        self._check(self._lib.robe_cuda_plan_create(
            a1.data_ptr(), a2.data_ptr(), c.data_ptr(), a1.numel(), g1.data_ptr(), g2.data_ptr(), g1.numel(),
            None if offsets is None else offsets.data_ptr(), num_keys, ctypes.byref(handle)))
        return int(handle.value or 0)

    def plan_destroy(self, plan: int) -> None:
        self._lib.robe_cuda_plan_destroy(plan)

    def robe(self, plan: int, ids: Any, memory: Any, dim: int, block_size: int, out: Any,
             stream: int) -> None:
        self._check(self._lib.robe_cuda_robe_embedding(plan, ids.data_ptr(), ids.shape[0], memory.data_ptr(),
                                                       memory.numel(), dim, block_size, out.data_ptr(),
                                                       stream))

    def lma(self, plan: int, ids: Any, memory: Any, dim: int, block_size: int, keys: Any, signatures: Any,
            keys_per_block: int, out: Any, stream: int) -> None:
        self._check(self._lib.robe_cuda_lma_embedding(
            plan, ids.data_ptr(), ids.shape[0], memory.data_ptr(), memory.numel(), dim, block_size,
            keys.data_ptr(), signatures.data_ptr(), signatures.shape[1], keys_per_block, out.data_ptr(),
            stream))

    def vocab(self, ids: Any, keys: Any, offsets: Any, out: Any, stream: int) -> None:
        self._check(self._lib.robe_cuda_vocab_lookup(ids.data_ptr(), ids.shape[0], ids.shape[1],
                                                     keys.data_ptr(),
                                                     keys.numel(), offsets.data_ptr(), out.data_ptr(),
                                                     stream))


def _extension(library: Path) -> RawOps:
    from torch.utils import cpp_extension

    build = library.parent / "extension"
    build.mkdir(parents=True, exist_ok=True)
    module: RawOps = cpp_extension.load(
        name=EXTENSION_NAME,
        sources=[str(SOURCE_DIR / "cuda" / "torch_binding.cpp")],
        extra_include_paths=[str(SOURCE_DIR)],
        build_directory=str(build),
        with_cuda=False,
        extra_cflags=["-O2"],
        extra_ldflags=[f"-L{library.parent}", f"-l:{library.name}", f"-Wl,-rpath,{library.parent}"],
    )
    return module


def build(
    backend: Backend = Backend.AUTO, build_dir: Path | None = None, archs: Sequence[str] | None = None
) -> tuple[RawOps, Backend]:
    """Compile what the backend needs (no GPU required) and return its raw ops and the backend used."""
    library = launchers_library(build_dir or default_dir(), archs)
    if backend is Backend.CTYPES:
        return _CtypesOps(library), Backend.CTYPES
    try:
        return _extension(library), Backend.EXTENSION
    except Exception as exc:  # cpp_extension raises plain RuntimeError/OSError when ninja or g++ is missing
        if backend is Backend.EXTENSION:
            raise BuildError(f"the PyTorch extension did not build: {exc}") from exc
        logger.warning("PyTorch extension unavailable (%s); using ctypes", str(exc).splitlines()[0])
        return _CtypesOps(library), Backend.CTYPES


def load(backend: Backend = Backend.AUTO, build_dir: Path | None = None) -> CudaOps:
    """The CUDA ops, compiled on first use.

    Raises:
        CudaUnavailable: PyTorch sees no CUDA device.
        BuildError: nvcc (or, for ``Backend.EXTENSION``, the extension build) failed.
    """
    import torch

    if not torch.cuda.is_available():
        raise CudaUnavailable("no CUDA device: torch.cuda.is_available() is False")
    raw, used = build(backend, build_dir)
    return CudaOps(raw, used)


def _host_int64(values: npt.ArrayLike | Any, name: str, length: int) -> Any:
    import torch

    tensor = torch.as_tensor(np.asarray(values.cpu() if hasattr(values, "cpu") else values, dtype=np.int64))
    if tensor.shape != (length,):
        raise ValueError(f"{name} must hold {length} values, got shape {tuple(tensor.shape)}")
    return tensor.contiguous()


def _check_tensor(tensor: Any, name: str, dtype: Any, ndim: int, device: Any = None) -> None:
    if not tensor.is_cuda or tensor.dtype != dtype or tensor.dim() != ndim or not tensor.is_contiguous():
        raise ValueError(
            f"{name} must be a contiguous CUDA {dtype} tensor of rank {ndim}, got "
            f"{tensor.dtype} {tuple(tensor.shape)} on {tensor.device}"
        )
    if device is not None and tensor.device != device:
        raise ValueError(f"{name} is on {tensor.device}, ids on {device}")


def _output(out: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
    import torch

    if out is None:
        return torch.empty(shape, dtype=dtype, device=device)
    _check_tensor(out, "out", dtype, len(shape), device)
    if tuple(out.shape) != shape:
        raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
    return out


class RobePlan:
    """ROBE-Z launches of one embedding: coefficients validated and the native plan made once.

    Args:
        raw: the launchers (``CudaOps.raw``).
        params: hash version 2 parameters with ``dim // block_size`` blocks.
        dim: embedding_dim d.
        block_size: Z.
        offsets: LMA only: int64 [F + 1], checked once and kept in the plan.
        num_keys: LMA only: the number of keys the offsets end at.
    """

    def __init__(self, raw: RawOps, params: HashParams, dim: int, block_size: int, offsets: Any = None,
                 num_keys: int = 0) -> None:
        if dim < 1 or block_size < 1 or dim % block_size or params.num_blocks != dim // block_size:
            raise ValueError(f"block_size {block_size} must divide dim {dim} into the {params.num_blocks} "
                             "blocks "
                             "of the hash parameters")
        if params.num_features > MAX_FEATURES or params.num_blocks > MAX_BLOCKS:
            raise ValueError(f"at most {MAX_FEATURES} features and {MAX_BLOCKS} blocks, got "
                             f"{params.num_features} and {params.num_blocks}")
        self.raw, self.params, self.dim, self.block_size = raw, params, dim, block_size
        self.num_features = params.num_features
        a1, a2, c, g1, g2 = (_host_int64(getattr(params, k), k, len(getattr(params, k)))
                             for k in ("a1", "a2", "c", "g1", "g2"))
        host_offsets = None if offsets is None else _host_int64(offsets, "offsets", self.num_features + 1)
        self.handle = raw.plan_create(a1, a2, c, g1, g2, host_offsets, num_keys)

    def __del__(self) -> None:
        handle = getattr(self, "handle", 0)
        if handle:
            self.raw.plan_destroy(handle)

    def _prepare(self, ids: Any, memory: Any, out: Any) -> tuple[Any, int]:
        import torch

        _check_tensor(ids, "ids", torch.int64, 2)
        if ids.shape[1] != self.num_features:
            raise ValueError(f"ids have {ids.shape[1]} features, the plan {self.num_features}")
        _check_tensor(memory, "memory", torch.float32, 1, ids.device)
        if memory.numel() < self.block_size:
            raise ValueError(f"M holds {memory.numel()} floats, fewer than one block of {self.block_size}")
        out = _output(out, (ids.shape[0], ids.shape[1], self.dim), torch.float32, ids.device)
        return out, torch.cuda.current_stream(ids.device).cuda_stream

    def __call__(self, ids: Any, memory: Any, out: Any = None) -> Any:
        """RobeEmbedding: float32 [B, F, dim]."""
        out, stream = self._prepare(ids, memory, out)
        self.raw.robe(self.handle, ids, memory, self.dim, self.block_size, out, stream)
        return out


class LmaPlan(RobePlan):
    """LMA launches of one embedding: its keys, offsets and uint8 signatures [K, S] fixed at creation."""

    def __init__(self, raw: RawOps, params: HashParams, dim: int, block_size: int, keys: Any, offsets: Any,
                 signatures: Any, keys_per_block: int) -> None:
        import torch

        _check_tensor(keys, "keys", torch.int64, 1)
        _check_tensor(signatures, "signatures", torch.uint8, 2, keys.device)
        if signatures.shape[0] != keys.numel():
            raise ValueError(f"signatures must be [{keys.numel()}, S], got {tuple(signatures.shape)}")
        check_lma_shape(signatures.shape[1], keys_per_block)
        super().__init__(raw, params, dim, block_size, offsets, keys.numel())
        self.keys, self.signatures, self.keys_per_block = keys, signatures, keys_per_block

    def __call__(self, ids: Any, memory: Any, out: Any = None) -> Any:
        """LmaEmbedding: float32 [B, F, dim]."""
        out, stream = self._prepare(ids, memory, out)
        if ids.device != self.keys.device:
            raise ValueError(f"ids are on {ids.device}, the plan's tables on {self.keys.device}")
        self.raw.lma(self.handle, ids, memory, self.dim, self.block_size, self.keys, self.signatures,
                     self.keys_per_block, out, stream)
        return out


class CudaOps:
    """Forward ops over the CUDA launchers (see the module docstring).

    Args:
        raw: the launchers behind one bridge (from :func:`build`).
        backend: which bridge that is.
    """

    def __init__(self, raw: RawOps, backend: Backend) -> None:
        self.raw = raw
        self.backend = backend

    def robe_plan(self, params: HashParams, dim: int, block_size: int) -> RobePlan:
        """A reusable RobeEmbedding launcher for one embedding."""
        return RobePlan(self.raw, params, dim, block_size)

    def lma_plan(self, params: HashParams, dim: int, block_size: int, keys: Any, offsets: Any,
                 signatures: Any,
                 keys_per_block: int = DEFAULT_KEYS_PER_BLOCK) -> LmaPlan:
        """A reusable LmaEmbedding launcher for one embedding (tables on the GPU, offsets anywhere)."""
        return LmaPlan(self.raw, params, dim, block_size, keys, offsets, signatures, keys_per_block)

    def robe_forward(self, ids: Any, memory: Any, params: HashParams, dim: int, block_size: int,
                     out: Any = None) -> Any:
        """RobeEmbedding once: float32 [B, F, dim] (make a ``robe_plan`` to launch many times)."""
        import torch

        _check_tensor(ids, "ids", torch.int64, 2)  # before any native call
        return self.robe_plan(params, dim, block_size)(ids, memory, out)

    def lma_forward(self, ids: Any, memory: Any, keys: Any, offsets: Any, signatures: Any, params: HashParams,
                    dim: int, block_size: int, keys_per_block: int = DEFAULT_KEYS_PER_BLOCK,
                    out: Any = None) -> Any:
        """LmaEmbedding once: float32 [B, F, dim] (make an ``lma_plan`` to launch many times)."""
        import torch

        _check_tensor(ids, "ids", torch.int64, 2)  # before any native call
        return self.lma_plan(params, dim, block_size, keys, offsets, signatures, keys_per_block)(ids,
                                                                                                 memory, out)

    def vocab_forward(self, ids: Any, keys: Any, offsets: Any, out: Any = None) -> Any:
        """VocabLookup: int64 [B, F] rows of the concatenated K + F row table."""
        import torch

        _check_tensor(ids, "ids", torch.int64, 2)
        _check_tensor(keys, "keys", torch.int64, 1, ids.device)
        if not 1 <= ids.shape[1] <= MAX_FEATURES:
            raise ValueError(f"ids must have 1 to {MAX_FEATURES} features, got {ids.shape[1]}")
        host_offsets = _host_int64(offsets, "offsets", ids.shape[1] + 1)
        out = _output(out, (ids.shape[0], ids.shape[1]), torch.int64, ids.device)
        stream = torch.cuda.current_stream(ids.device).cuda_stream
        self.raw.vocab(ids, keys, host_offsets, out, stream)
        return out
