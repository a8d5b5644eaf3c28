"""The ONNX Runtime C/C++ API headers for building the custom-op library (DESIGN.md section 4).

No pip wheel ships these headers; Debian trixie's ``libonnxruntime-dev`` (1.21, ORT_API_VERSION 21) does.
:func:`find_ort_include` returns, in order of preference:

1. ``$ORT_INCLUDE_DIR`` when set (it must hold ``onnxruntime_cxx_api.h`` of API version >= 21);
2. headers fetched earlier into the cache directory (``build/ort-headers``);
3. a fresh fetch: ``apt-get download libonnxruntime-dev`` from the trixie suite of the machine's own Debian
   mirror (the first ``URIs`` of ``/etc/apt/sources.list.d/*.sources`` or ``/etc/apt/sources.list``), with
   every piece of apt state (lists, cache, sources, status) in a private directory, so the machine's apt
   configuration is never touched; then ``dpkg-deb -x`` into the cache.

Anything else raises :class:`HeadersNotFound` with one message saying what to do.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ORT_INCLUDE_ENV = "ORT_INCLUDE_DIR"
MIN_API_VERSION = 21
PACKAGE = "libonnxruntime-dev"
SUITE = "trixie"
COMPONENT = "main"
HEADER = "onnxruntime_cxx_api.h"
SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")
DEFAULT_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_TIMEOUT_S = 300
_HINT = f"set {ORT_INCLUDE_ENV} to a directory holding {HEADER} (onnxruntime >= 1.21)"


class HeadersNotFound(RuntimeError):
    """Neither ORT_INCLUDE_DIR, the cache nor a fetch gave usable ONNX Runtime headers."""


@dataclass(frozen=True)
class Mirror:
    """A Debian archive taken from the machine's apt sources.

    Args:
        uri: the archive root, e.g. the value of a ``URIs:`` field ending in ``/debian``.
        signed_by: the keyring that verifies it, when the sources name one.
    """

    uri: str
    signed_by: str | None = None

    def __post_init__(self) -> None:
        if not self.uri:
            raise ValueError("mirror uri must not be empty")


def api_version(include_dir: Path) -> int | None:
    """ORT_API_VERSION declared by the headers in include_dir, or None when they are absent."""
    header = include_dir / "onnxruntime_c_api.h"
    if not (include_dir / HEADER).is_file() or not header.is_file():
        return None
    match = re.search(r"^#define ORT_API_VERSION (\d+)", header.read_text(errors="replace"), re.MULTILINE)
    return int(match.group(1)) if match else None


def _usable(include_dir: Path) -> bool:
    version = api_version(include_dir)
    return version is not None and version >= MIN_API_VERSION


def find_ort_include(cache_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """Directory holding onnxruntime_cxx_api.h: $ORT_INCLUDE_DIR, else the cache, else a fresh fetch."""
    env = os.environ if env is None else env
    if env.get(ORT_INCLUDE_ENV):
        explicit = Path(env[ORT_INCLUDE_ENV])
        if not _usable(explicit):
            found = api_version(explicit)
            what = f"API version {found}" if found is not None else f"no {HEADER}"
            raise HeadersNotFound(f"{ORT_INCLUDE_ENV}={explicit} has {what}; {_HINT}")
        return explicit
    cached = cache_dir / "usr" / "include" / "onnxruntime"
    if _usable(cached):
        return cached
    return fetch_headers(cache_dir)


def find_mirror(sources_dir: Path = SOURCES_DIR, sources_list: Path = SOURCES_LIST) -> Mirror:
    """The first plain Debian archive (not the security archive) in the machine's apt sources."""
    candidates: list[Mirror] = []
    for path in sorted(sources_dir.glob("*.sources")) if sources_dir.is_dir() else []:
        candidates += _deb822_mirrors(path.read_text(errors="replace"))
    if sources_list.is_file():
        candidates += _one_line_mirrors(sources_list.read_text(errors="replace"))
    for mirror in candidates:
        if "security" not in mirror.uri:
            return mirror
    raise HeadersNotFound(f"no Debian mirror found in {sources_dir}/*.sources or {sources_list}; {_HINT}")


def _deb822_mirrors(text: str) -> list[Mirror]:
    mirrors = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("uris"):
            mirrors.append(Mirror(fields["uris"].split()[0], fields.get("signed-by") or None))
    return mirrors


def _one_line_mirrors(text: str) -> list[Mirror]:
    mirrors = []
    for line in text.splitlines():
        match = re.match(r"^\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s", line)
        if match:
            signed = re.search(r"signed-by=(\S+)", match.group(1) or "")
            mirrors.append(Mirror(match.group(2), signed.group(1) if signed else None))
    return mirrors


def fetch_headers(cache_dir: Path, mirror: Mirror | None = None) -> Path:
    """Download libonnxruntime-dev from the trixie suite into cache_dir and return its include dir."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise HeadersNotFound(f"{tool} not found, so the headers cannot be fetched; {_HINT}")
    mirror = mirror or find_mirror()
    state = cache_dir / "apt"
    options = _private_apt(state, mirror)
    logger.info("fetching %s (%s) from %s into %s", PACKAGE, SUITE, mirror.uri, cache_dir)
    _run(["apt-get", *options, "update", "--error-on=any"], state, "apt-get update")
    debs = state / "debs"
    debs.mkdir(exist_ok=True)
    _run(["apt-get", *options, "download", PACKAGE], debs, f"apt-get download {PACKAGE}")
    packages = sorted(debs.glob(f"{PACKAGE}_*.deb"))
    if not packages:
        raise HeadersNotFound(f"apt-get download left no {PACKAGE} package in {debs}; {_HINT}")
    _run(["dpkg-deb", "-x", str(packages[-1]), str(cache_dir)], cache_dir, "dpkg-deb -x")
    shutil.rmtree(state, ignore_errors=True)  # the package lists are ~20 MB; the headers are what we keep
    include = cache_dir / "usr" / "include" / "onnxruntime"
    if not _usable(include):
        raise HeadersNotFound(
            f"{PACKAGE} gave ORT_API_VERSION {api_version(include)} < {MIN_API_VERSION}; {_HINT}"
        )
    logger.info("ONNX Runtime headers (API %s) in %s", api_version(include), include)
    return include


def _private_apt(state: Path, mirror: Mirror) -> list[str]:
    """apt-get options that keep every file apt reads or writes, except its keyrings, under state."""
    for sub in ("lists/partial", "cache/archives/partial", "sources.d", "preferences.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    keyring = mirror.signed_by or (str(DEFAULT_KEYRING) if DEFAULT_KEYRING.is_file() else None)
    sources = state / "trixie.sources"
    sources.write_text(
        f"Types: deb\nURIs: {mirror.uri}\nSuites: {SUITE}\nComponents: {COMPONENT}\n"
        + (f"Signed-By: {keyring}\n" if keyring else "")
    )
    settings = {
        "Dir::State::Lists": state / "lists",
        "Dir::State::status": state / "status",
        "Dir::Cache": state / "cache",
        "Dir::Etc::SourceList": sources,
        "Dir::Etc::SourceParts": state / "sources.d",
        "Dir::Etc::Preferences": state / "preferences",
        "Dir::Etc::PreferencesParts": state / "preferences.d",
        "Acquire::Languages": "none",
        "Acquire::http::Timeout": "30",
        "APT::Get::List-Cleanup": "false",
    }
    return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")] + ["-q"]


def _run(command: list[str], cwd: Path, what: str) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=APT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise HeadersNotFound(f"{what} timed out after {APT_TIMEOUT_S} s; {_HINT}") from exc
    if result.returncode != 0:
        detail = (result.stderr + result.stdout).strip().splitlines()
        errors = [line for line in detail if line.startswith("E:")] or detail[-1:]
        reason = errors[0] if errors else f"exit status {result.returncode}"
        raise HeadersNotFound(f"{what} failed ({reason}); {_HINT}")
