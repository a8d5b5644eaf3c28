"""Building the custom-op library: header discovery, CPU-only and CUDA builds, library_path and register."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from kernel_models import embedding_attrs, robe_model, session

import kernels
from kernels import build as kbuild
from kernels import headers
from kernels import reference as ref

REPO = Path(__file__).resolve().parents[2]
NO_NVCC = kbuild.find_nvcc() is None


def _info(library: Path) -> dict[str, object]:
    info: dict[str, object] = json.loads((library.parent / kbuild.BUILD_INFO).read_text())
    return info


def test_find_mirror_reads_deb822_and_one_line_sources(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "a.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nSigned-By: /k.gpg\n"
    )
    assert kbuild_mirror(parts, tmp_path / "none") == headers.Mirror("http://mirror.example/debian", "/k.gpg")
    listing = tmp_path / "sources.list"
    listing.write_text(
        "# comment\ndeb [arch=amd64 signed-by=/x.gpg] http://other.example/debian bookworm main\n"
    )
    assert kbuild_mirror(tmp_path / "empty", listing) == headers.Mirror(
        "http://other.example/debian", "/x.gpg"
    )
    with pytest.raises(headers.HeadersNotFound, match="ORT_INCLUDE_DIR"):
        kbuild_mirror(tmp_path / "empty", tmp_path / "none")


def kbuild_mirror(parts: Path, listing: Path) -> headers.Mirror:
    return headers.find_mirror(parts, listing)


def test_private_apt_state_stays_in_its_directory(tmp_path: Path) -> None:
    options = headers._private_apt(tmp_path / "apt", headers.Mirror("http://mirror.example/debian"))
    paths = [value.split("=", 1)[1] for value in options[1::2] if value.startswith("Dir::")]
    assert paths and all(p.startswith(str(tmp_path / "apt")) for p in paths)
    sources = (tmp_path / "apt" / "trixie.sources").read_text()
    assert "Suites: trixie" in sources and "URIs: http://mirror.example/debian" in sources


def test_ort_include_dir_wins_and_is_checked(robe_library: Path, tmp_path: Path) -> None:
    cached = Path(str(_info(robe_library)["ort_include_dir"]))
    version = headers.api_version(cached)
    assert version is not None and version >= headers.MIN_API_VERSION
    assert headers.find_ort_include(tmp_path, {headers.ORT_INCLUDE_ENV: str(cached)}) == cached
    with pytest.raises(
        headers.HeadersNotFound, match=f"{headers.ORT_INCLUDE_ENV}=.*no onnxruntime_cxx_api.h"
    ):
        headers.find_ort_include(tmp_path, {headers.ORT_INCLUDE_ENV: str(tmp_path)})
    old = tmp_path / "old"
    shutil.copytree(cached, old)
    text = (
        (old / "onnxruntime_c_api.h")
        .read_text()
        .replace("#define ORT_API_VERSION ", "#define ORT_API_VERSION 1")
    )
    (old / "onnxruntime_c_api.h").write_text(
        text.replace("ORT_API_VERSION 1" + str(headers.api_version(cached)), "ORT_API_VERSION 20")
    )
    with pytest.raises(headers.HeadersNotFound, match="API version 20"):
        headers.find_ort_include(tmp_path, {headers.ORT_INCLUDE_ENV: str(old)})


def test_cached_headers_are_used_without_fetching(
    robe_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = Path(str(_info(robe_library)["ort_include_dir"]))
    shutil.copytree(cached, tmp_path / "usr" / "include" / "onnxruntime")
    monkeypatch.setattr(headers, "fetch_headers", lambda *_: pytest.fail("fetched despite the cache"))
    assert headers.find_ort_include(tmp_path, {}) == tmp_path / "usr" / "include" / "onnxruntime"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get absent: no Debian tooling to fetch with")
def test_unreachable_mirror_gives_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(headers.HeadersNotFound, match=f"apt-get update failed .*{headers.ORT_INCLUDE_ENV}"):
        headers.fetch_headers(tmp_path, headers.Mirror("file:/nonexistent/debian"))


def test_build_cli_reports_one_error_line(tmp_path: Path) -> None:
    env = {**os.environ, headers.ORT_INCLUDE_ENV: str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "kernels.build", "--build-dir", str(tmp_path / "b")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_cpu_only_build_needs_no_cuda(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kbuild, "find_nvcc", lambda: None)
    library = kbuild.build(kbuild.BuildConfig(cuda=kbuild.CudaMode.AUTO, build_dir=tmp_path))
    assert _info(library)["cuda"] is False and kbuild.fatbin_archs(library) == set()
    params = ref.HashParams.from_seed(2, 2, 1)
    ids, memory = np.array([[5, 2**40]], dtype=np.int64), np.arange(50, dtype=np.float32)
    out = session(robe_model(embedding_attrs(params, 4, 2)), library).run(None, {"ids": ids, "M": memory})[0]
    np.testing.assert_array_equal(out, ref.robe_lookup(ids, memory, params, 4, 2))
    with pytest.raises(kbuild.BuildError, match="nvcc"):
        kbuild.build(kbuild.BuildConfig(cuda=kbuild.CudaMode.ON, build_dir=tmp_path))


@pytest.mark.skipif(NO_NVCC, reason="nvcc not found: the CUDA build cannot be compiled here")
def test_cuda_build_holds_sm80_and_sm90_and_loads_without_a_gpu(robe_library: Path) -> None:
    library = robe_library
    if not _info(library)["cuda"]:  # the default build went CPU-only (--cuda off): compile the CUDA one
        library = kbuild.build(
            kbuild.BuildConfig(kbuild.CudaMode.ON, kbuild.default_build_dir().parent / "kernels-cuda")
        )
    assert kbuild.fatbin_archs(library) == {80, 90}
    params = ref.HashParams.from_seed(1, 2, 2)
    ids, memory = np.array([[7], [2**62 - 1]], dtype=np.int64), np.arange(30, dtype=np.float32)
    out = session(robe_model(embedding_attrs(params, 6, 3)), library).run(None, {"ids": ids, "M": memory})[0]
    np.testing.assert_array_equal(out, ref.robe_lookup(ids, memory, params, 6, 3))


@pytest.mark.skipif(NO_NVCC, reason="nvcc not found")
def test_arch_listing_tells_architectures_apart(tmp_path: Path) -> None:
    assert kbuild.fatbin_archs(kbuild.build_launchers(tmp_path, archs=("90",))) == {90}


def test_library_path_and_register(
    robe_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert kernels.library_path() == robe_library
    monkeypatch.setenv(kernels.LIBRARY_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(kernels.LibraryNotBuilt, match="make kernels"):
        kernels.library_path()

    registered: list[str] = []

    class Options:
        def register_custom_ops_library(self, path: str) -> None:
            registered.append(path)

    with caplog.at_level(logging.WARNING, logger="kernels"):
        assert kernels.register(Options()) is False
    assert "make kernels" in caplog.text and not registered
    monkeypatch.setenv(kernels.LIBRARY_ENV, str(robe_library))
    assert kernels.register(Options()) is True and registered == [str(robe_library)]
