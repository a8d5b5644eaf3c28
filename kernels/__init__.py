"""robeserve kernels: the NumPy hash spec (``kernels.reference``) and the ai.robe custom-op library.

The library (``librobe_ops.so``, built by ``make kernels`` = ``python -m kernels.build``) registers the ONNX
Runtime ops ``ai.robe::RobeEmbedding``, ``LmaEmbedding`` and ``VocabLookup`` (DESIGN.md section 4) for the
CPU and, when built with CUDA, for ``CUDAExecutionProvider``::

    import onnxruntime as ort
    import kernels

    options = ort.SessionOptions()
    kernels.register(options)          # False (and a log line) when the library is not built
    session = ort.InferenceSession("model.onnx", options)

``$ROBESERVE_KERNELS_LIBRARY`` points at another copy of the library.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

LIBRARY_NAME = "librobe_ops.so"
LIBRARY_ENV = "ROBESERVE_KERNELS_LIBRARY"


class LibraryNotBuilt(FileNotFoundError):
    """The custom-op library is absent: build it with ``make kernels``."""


class _SessionOptions(Protocol):
    def register_custom_ops_library(self, path: str) -> None: ...


def default_build_dir() -> Path:
    """``build/kernels`` at the repository root (git-ignored)."""
    return Path(__file__).resolve().parent.parent / "build" / "kernels"


def library_path() -> Path:
    """Path of the built custom-op library.

    Raises:
        LibraryNotBuilt: when neither $ROBESERVE_KERNELS_LIBRARY nor build/kernels holds it.
    """
    override = os.environ.get(LIBRARY_ENV)
    candidates = (
        [Path(override)]
        if override
        else [Path(__file__).resolve().parent / LIBRARY_NAME, default_build_dir() / LIBRARY_NAME]
    )
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c) for c in candidates)
    raise LibraryNotBuilt(
        f"the ai.robe custom-op library is not built (looked for {where}); run `make kernels`"
    )


def register(session_options: _SessionOptions) -> bool:
    """Register the ai.robe ops into onnxruntime SessionOptions; False (logged) when not built."""
    try:
        path = library_path()
    except LibraryNotBuilt as exc:
        logger.warning("%s", exc)
        return False
    session_options.register_custom_ops_library(str(path))
    return True
