"""Build the ai.robe custom-op library: ``python -m kernels.build [--cuda auto|on|off]``.

Fetches the ONNX Runtime headers (:mod:`kernels.headers`), configures ``kernels/CMakeLists.txt`` with CMake
(Ninja when present) and builds ``build/kernels/librobe_ops.so``. Rebuilding is incremental; the choices of
the last build are in ``build/kernels/build_info.json``. ``--cuda auto`` builds the CUDA kernels (sm_80 and
sm_90) when nvcc is found.

:func:`build_launchers` compiles the ORT-free CUDA launchers alone with nvcc (``librobe_launchers.so``, C
ABI in ``kernels/cuda/c_api.h``) for :mod:`kernels.torch_ext` and the GPU check: no CMake, no headers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from kernels import LIBRARY_NAME, default_build_dir
from kernels.headers import HeadersNotFound, find_ort_include

logger = logging.getLogger(__name__)

SOURCE_DIR = Path(__file__).resolve().parent
HEADER_CACHE = "ort-headers"
BUILD_INFO = "build_info.json"
LAUNCHERS_NAME = "librobe_launchers.so"
DEFAULT_ARCHS = ("80", "90")
BUILD_TIMEOUT_S = 900
_FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
_ENTRY_HEADER = 32
_KIND_ELF = 2


class BuildError(RuntimeError):
    """The library could not be built; the message says why."""


class CudaMode(StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


@dataclass(frozen=True)
class BuildConfig:
    """What to build and where.

    Args:
        cuda: build the CUDA kernels: ``on``, ``off``, or ``auto`` (when nvcc is found).
        build_dir: output directory; the library lands in it, the CMake tree in ``build_dir/cmake``.
        cuda_archs: GPU architectures (``"80"`` = sm_80).
        header_cache: where fetched ONNX Runtime headers are kept (default: ``build/ort-headers``).

    Example:
        >>> BuildConfig(cuda=CudaMode.OFF).cuda_archs
        ('80', '90')
    """

    cuda: CudaMode = CudaMode.AUTO
    build_dir: Path = field(default_factory=default_build_dir)
    cuda_archs: tuple[str, ...] = DEFAULT_ARCHS
    header_cache: Path = field(default_factory=lambda: default_build_dir().parent / HEADER_CACHE)

    def __post_init__(self) -> None:
        if not self.cuda_archs or not all(arch.isdigit() for arch in self.cuda_archs):
            raise ValueError(f"cuda_archs must be numbers like '80', got {self.cuda_archs}")


def find_nvcc() -> Path | None:
    """nvcc from $CUDACXX, PATH, or /usr/local/cuda/bin."""
    for candidate in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _find_cmake() -> tuple[str, str | None]:
    """(cmake executable, ninja executable or None), from PATH or the cmake/ninja pip packages."""
    cmake = shutil.which("cmake")
    ninja = shutil.which("ninja")
    try:
        import cmake as cmake_package

        cmake = cmake or str(Path(cmake_package.CMAKE_BIN_DIR) / "cmake")
    except ImportError:
        pass
    try:
        import ninja as ninja_package

        ninja = ninja or str(Path(ninja_package.BIN_DIR) / "ninja")
    except ImportError:
        pass
    if cmake is None:
        raise BuildError("cmake not found: install it (apt-get install cmake, or pip install cmake)")
    return cmake, ninja


def _run(command: Sequence[str], what: str) -> None:
    logger.debug("running %s", " ".join(command))
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what} timed out after {BUILD_TIMEOUT_S} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        errors = [line for line in output if "error" in line.lower()] or output
        logger.error("%s failed:\n%s", what, "\n".join(output[-40:]))
        raise BuildError(f"{what} failed: {errors[0] if errors else 'no output'}")


def build(config: BuildConfig | None = None) -> Path:
    """Build (or bring up to date) the custom-op library; returns its path."""
    config = config or BuildConfig()
    nvcc = find_nvcc()
    if config.cuda is CudaMode.ON and nvcc is None:
        raise BuildError("--cuda on needs nvcc (set CUDACXX or put nvcc on PATH)")
    with_cuda = nvcc is not None and config.cuda is not CudaMode.OFF
    include = find_ort_include(config.header_cache)
    cmake, ninja = _find_cmake()
    tree = config.build_dir / "cmake"
    configure = [
        cmake,
        "-S",
        str(SOURCE_DIR),
        "-B",
        str(tree),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DORT_INCLUDE_DIR={include}",
        f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={config.build_dir}",
        f"-DROBE_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
    ]
    if with_cuda:
        configure += [
            f"-DCMAKE_CUDA_COMPILER={nvcc}",
            f"-DROBE_CUDA_ARCHITECTURES={';'.join(config.cuda_archs)}",
        ]
    if ninja and not (tree / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]
    logger.info("building %s (CUDA %s) in %s", LIBRARY_NAME, "on" if with_cuda else "off", config.build_dir)
    _run(configure, "cmake configure")
    _run([cmake, "--build", str(tree), "--parallel", str(os.cpu_count() or 2)], "cmake build")
    library = config.build_dir / LIBRARY_NAME
    if not library.is_file():
        raise BuildError(f"the build finished without {library}")
    archs = sorted(fatbin_archs(library))
    info = {"library": str(library), "cuda": with_cuda, "sm_archs": archs, "ort_include_dir": str(include)}
    (config.build_dir / BUILD_INFO).write_text(json.dumps(info, indent=2) + "\n")
    logger.info("built %s%s", library, f" (GPU code for sm_{', sm_'.join(map(str, archs))})" if archs else "")
    return library


def fatbin_archs(library: Path) -> set[int]:
    """SM architectures of the GPU code (ELF cubins) embedded in library: {80, 90} means sm_80 and sm_90.

    Reads the fatbin headers nvcc leaves in the binary (magic 0xBA55ED50, then entries of kind 2 = ELF
    with the architecture at byte 28), so no CUDA tool is needed; empty for a CPU-only build.
    """
    data = library.read_bytes()
    archs: set[int] = set()
    start = data.find(_FATBIN_MAGIC)
    while start >= 0:
        _, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, start)
        entry, end = start + header_size, start + header_size + fat_size
        while entry + _ENTRY_HEADER <= min(end, len(data)):
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            if entry_header < _ENTRY_HEADER:
                break
            if kind == _KIND_ELF:
                archs.add(struct.unpack_from("<I", data, entry + 28)[0])
            entry += entry_header + payload
        start = data.find(_FATBIN_MAGIC, start + 1)
    return archs


def build_launchers(out_dir: Path, archs: Sequence[str] = DEFAULT_ARCHS, nvcc: Path | None = None) -> Path:
    """Compile the CUDA launchers and their C ABI into out_dir/librobe_launchers.so with nvcc alone."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise BuildError("nvcc not found (set CUDACXX or put nvcc on PATH)")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / LAUNCHERS_NAME
    sources = [SOURCE_DIR / "cuda" / "launchers.cu", SOURCE_DIR / "cuda" / "c_api.cc"]
    gencode = [f"-gencode=arch=compute_{arch},code=sm_{arch}" for arch in archs]
    _run(
        [
            str(nvcc),
            "-O3",
            "-std=c++17",
            "-shared",
            "-Xcompiler",
            "-fPIC,-fvisibility=hidden",
            *gencode,
            f"-I{SOURCE_DIR}",
            *map(str, sources),
            "-o",
            str(target),
        ],
        "nvcc (launchers)",
    )
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.build", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cuda",
        choices=[mode.value for mode in CudaMode],
        default=CudaMode.AUTO.value,
        help="build the CUDA kernels: auto (when nvcc is found), on, off",
    )
    parser.add_argument("--build-dir", type=Path, default=default_build_dir())
    parser.add_argument("--cuda-archs", default=",".join(DEFAULT_ARCHS), help="comma-separated, e.g. 80,90")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        force=True,
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        config = BuildConfig(CudaMode(args.cuda), args.build_dir, tuple(args.cuda_archs.split(",")))
        build(config)
    except (BuildError, HeadersNotFound, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
