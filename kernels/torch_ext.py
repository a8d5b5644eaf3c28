"""The ai.robe CUDA kernels as PyTorch forward ops on CUDA tensors (training, GPU benchmarks, GPU check).

API::

    import torch
    from kernels import reference, torch_ext

    ops = torch_ext.load()  # compiles once into build/torch_ext (nvcc + torch.utils.cpp_extension)
    params = reference.HashParams.from_seed(num_features=26, seed=0)
    ids = torch.randint(0, 2**62, (4096, 26), device="cuda")              # int64 [B, F]
    memory = torch.randn(540_000, device="cuda")                          # float32 [m]
    emb = ops.robe_forward(ids, memory, params, dim=16, block_size=4)     # float32 [B, F, 16]
    emb = ops.lma_forward(ids, memory, keys, offsets, signatures, params, dim=16, block_size=4,
                          keys_per_block=8)                               # keys, signatures: int64 cuda [K]
    rows = ops.vocab_forward(ids, keys, offsets)                          # int64 [B, F]

``offsets`` (int64 [F + 1]) may be a CPU tensor, a NumPy array or a list: it travels in the kernel
parameters. Every op takes ``out=`` (a preallocated contiguous tensor) and runs on
``torch.cuda.current_stream()`` without synchronising. Results equal :mod:`kernels.reference` bit for bit;
an id outside [0, 2^62) gives NaN (embeddings) or the feature's OOV row (VocabLookup) instead of an error,
since checking would synchronise. At most 128 features. Forward only: no autograd.

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
from kernels.reference import HashParams

logger = logging.getLogger(__name__)

MAX_FEATURES = 128
EXTENSION_NAME = "robe_cuda_ext"


class Backend(StrEnum):
    AUTO = "auto"
    EXTENSION = "extension"
    CTYPES = "ctypes"


class CudaUnavailable(RuntimeError):
    """PyTorch sees no CUDA device."""


class RawOps(Protocol):
    """The launchers behind one bridge; tensors are already checked."""

    def robe(
        self,
        ids: Any,
        memory: Any,
        a1: Any,
        a2: Any,
        b: Any,
        c: Any,
        dim: int,
        block_size: int,
        out: Any,
        stream: int,
    ) -> None: ...

    def lma(
        self,
        ids: Any,
        memory: Any,
        keys: Any,
        offsets: Any,
        signatures: Any,
        a1: Any,
        a2: Any,
        b: Any,
        c: Any,
        dim: int,
        block_size: int,
        keys_per_block: int,
        out: Any,
        stream: int,
    ) -> None: ...

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
        self._lib = ctypes.CDLL(str(library))
        self._lib.robe_cuda_last_error.restype = ctypes.c_char_p

    def _call(self, name: str, *args: Any) -> None:
        converted = [
            ctypes.c_void_p(a.data_ptr()) if hasattr(a, "data_ptr") else ctypes.c_int64(a) for a in args
        ]
        converted[-1] = ctypes.c_void_p(args[-1])  # the stream
        status = getattr(self._lib, name)(*converted)
        if status != 0:
            message = self._lib.robe_cuda_last_error().decode()
            raise (ValueError if status == 1 else RuntimeError)(message)

    def robe(
        self,
        ids: Any,
        memory: Any,
        a1: Any,
        a2: Any,
        b: Any,
        c: Any,
        dim: int,
        block_size: int,
        out: Any,
        stream: int,
    ) -> None:
        self._call(
            "robe_cuda_robe_embedding",
            ids,
            ids.shape[0],
            ids.shape[1],
            a1,
            a2,
            b,
            c,
            memory,
            memory.numel(),
            dim,
            block_size,
            out,
            stream,
        )

    def lma(
        self,
        ids: Any,
        memory: Any,
        keys: Any,
        offsets: Any,
        signatures: Any,
        a1: Any,
        a2: Any,
        b: Any,
        c: Any,
        dim: int,
        block_size: int,
        keys_per_block: int,
        out: Any,
        stream: int,
    ) -> None:
        self._call(
            "robe_cuda_lma_embedding",
            ids,
            ids.shape[0],
            ids.shape[1],
            a1,
            a2,
            b,
            c,
            memory,
            memory.numel(),
            dim,
            block_size,
            keys,
            signatures,
            keys.numel(),
            offsets,
            keys_per_block,
            out,
            stream,
        )

    def vocab(self, ids: Any, keys: Any, offsets: Any, out: Any, stream: int) -> None:
        self._call(
            "robe_cuda_vocab_lookup",
            ids,
            ids.shape[0],
            ids.shape[1],
            keys,
            keys.numel(),
            offsets,
            out,
            stream,
        )


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


class CudaOps:
    """Forward ops over the CUDA launchers (see the module docstring).

    Args:
        raw: the launchers behind one bridge (from :func:`build`).
        backend: which bridge that is.
    """

    def __init__(self, raw: RawOps, backend: Backend) -> None:
        self.raw = raw
        self.backend = backend

    @staticmethod
    def _check(tensor: Any, name: str, dtype: Any, ndim: int, device: Any = None) -> None:
        if not tensor.is_cuda or tensor.dtype != dtype or tensor.dim() != ndim or not tensor.is_contiguous():
            raise ValueError(
                f"{name} must be a contiguous CUDA {dtype} tensor of rank {ndim}, got "
                f"{tensor.dtype} {tuple(tensor.shape)} on {tensor.device}"
            )
        if device is not None and tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device}, ids on {device}")

    def _output(self, out: Any, shape: tuple[int, ...], dtype: Any, device: Any) -> Any:
        import torch

        if out is None:
            return torch.empty(shape, dtype=dtype, device=device)
        self._check(out, "out", dtype, len(shape), device)
        if tuple(out.shape) != shape:
            raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
        return out

    def _hash(self, ids: Any, params: HashParams) -> list[Any]:
        import torch

        self._check(ids, "ids", torch.int64, 2)
        if ids.shape[1] != params.num_features or params.num_features > MAX_FEATURES:
            raise ValueError(
                f"ids have {ids.shape[1]} features, params {params.num_features} (at most {MAX_FEATURES})"
            )
        return [_host_int64(getattr(params, k), k, params.num_features) for k in ("a1", "a2", "b", "c")]

    @staticmethod
    def _check_block(memory: Any, dim: int, block_size: int) -> None:
        if dim < 1 or block_size < 1 or dim % block_size or memory.numel() < block_size:
            raise ValueError(f"block_size {block_size} must divide dim {dim}, and M hold at least one block")

    def robe_forward(
        self, ids: Any, memory: Any, params: HashParams, dim: int, block_size: int, out: Any = None
    ) -> Any:
        """RobeEmbedding: float32 [B, F, dim]."""
        import torch

        hash_arrays = self._hash(ids, params)
        self._check(memory, "memory", torch.float32, 1, ids.device)
        self._check_block(memory, dim, block_size)
        out = self._output(out, (ids.shape[0], ids.shape[1], dim), torch.float32, ids.device)
        stream = torch.cuda.current_stream(ids.device).cuda_stream
        a1, a2, b, c = hash_arrays
        self.raw.robe(ids, memory, a1, a2, b, c, dim, block_size, out, stream)
        return out

    def lma_forward(
        self,
        ids: Any,
        memory: Any,
        keys: Any,
        offsets: Any,
        signatures: Any,
        params: HashParams,
        dim: int,
        block_size: int,
        keys_per_block: int = 8,
        out: Any = None,
    ) -> Any:
        """LmaEmbedding: float32 [B, F, dim]."""
        import torch

        hash_arrays = self._hash(ids, params)
        self._check(memory, "memory", torch.float32, 1, ids.device)
        self._check(keys, "keys", torch.int64, 1, ids.device)
        self._check(signatures, "signatures", torch.int64, 1, ids.device)
        self._check_block(memory, dim, block_size)
        if signatures.numel() != keys.numel() or not 1 <= keys_per_block <= 15:
            raise ValueError("signatures must match keys, and keys_per_block be in [1, 15]")
        host_offsets = _host_int64(offsets, "offsets", params.num_features + 1)
        out = self._output(out, (ids.shape[0], ids.shape[1], dim), torch.float32, ids.device)
        stream = torch.cuda.current_stream(ids.device).cuda_stream
        a1, a2, b, c = hash_arrays
        self.raw.lma(
            ids,
            memory,
            keys,
            host_offsets,
            signatures,
            a1,
            a2,
            b,
            c,
            dim,
            block_size,
            keys_per_block,
            out,
            stream,
        )
        return out

    def vocab_forward(self, ids: Any, keys: Any, offsets: Any, out: Any = None) -> Any:
        """VocabLookup: int64 [B, F] rows of the concatenated K + F row table."""
        import torch

        self._check(ids, "ids", torch.int64, 2)
        self._check(keys, "keys", torch.int64, 1, ids.device)
        if not 1 <= ids.shape[1] <= MAX_FEATURES:
            raise ValueError(f"ids must have 1 to {MAX_FEATURES} features, got {ids.shape[1]}")
        host_offsets = _host_int64(offsets, "offsets", ids.shape[1] + 1)
        out = self._output(out, (ids.shape[0], ids.shape[1]), torch.int64, ids.device)
        stream = torch.cuda.current_stream(ids.device).cuda_stream
        self.raw.vocab(ids, keys, host_offsets, out, stream)
        return out
