"""Dockerfile and image inputs: hadolint, plus the properties issue 8 asks of the image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "deploy" / "requirements-gpu.txt"


def stages() -> dict[str, str]:
    """Dockerfile text of each named stage (instructions joined across line continuations)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    parts = re.split(r"^FROM\s+", text, flags=re.MULTILINE)[1:]
    named = {}
    for part in parts:
        header, _, body = part.partition("\n")
        match = re.search(r"\bAS\s+(\S+)", header, flags=re.IGNORECASE)
        named[match.group(1) if match else "final"] = body
    return named


def test_hadolint_passes(validator) -> None:
    result = validator("hadolint", "--no-color", "--failure-threshold", "info", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_bad_dockerfile(validator, tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nUSER root\n")
    result = validator("hadolint", "--no-color", bad)
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image


def test_image_has_builder_and_runtime_stages() -> None:
    named = stages()
    assert {"builder", "runtime", "image-mounted", "image-baked", "final"} <= set(named)
    assert "python -m kernels.build" in named["builder"]
    assert "nvidia-cuda-nvcc==" in DOCKERFILE.read_text()  # nvcc from a pinned pip wheel


def test_runtime_stage_has_no_compiler_or_torch() -> None:
    runtime = stages()["runtime"]
    assert "apt-get install" not in runtime
    assert not re.search(r"\b(nvcc|g\+\+|gcc|torch)\b", runtime)
    assert "COPY --from=builder /src/build/kernels/" in runtime
    assert not re.search(r"^(torch|nvidia-cuda-nvcc)\b", REQUIREMENTS.read_text(), flags=re.MULTILINE)


def test_runtime_runs_as_non_root_with_a_readiness_healthcheck() -> None:
    runtime = stages()["runtime"]
    user = re.search(r"^USER\s+(\S+)", runtime, flags=re.MULTILINE)
    assert user and user.group(1) not in ("root", "0", "0:0")
    assert re.search(r"^HEALTHCHECK .*/v2/health/ready", runtime, flags=re.MULTILINE)
    assert '"-m", "service"' in runtime and '"--port", "8000"' in runtime


def test_gpu_requirements_mirror_the_project_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {re.split(r"[\[<>=~!]", dep)[0].lower() for dep in project["dependencies"]}
    pins = [line for line in REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in pin for pin in pins), "every image requirement is pinned"
    names = {re.split(r"[\[=]", pin)[0].lower() for pin in pins}
    assert names == (wanted - {"onnxruntime"}) | {"onnxruntime-gpu"}
    assert any(pin.startswith("onnxruntime-gpu[cuda,cudnn]==") for pin in pins)


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "build"} <= ignored
    copy = re.compile(r"^COPY\s+(?!--from)(?:--\S+\s+)*(\S+)\s", flags=re.MULTILINE)
    sources = copy.findall(DOCKERFILE.read_text())
    assert sources
    for source in sources:
        top = source.strip("/").split("/")[0]
        assert top not in ignored, f"{source} is excluded by .dockerignore"
        if top != "models":  # models/ exists only where the image is built with MODELS=baked
            assert (ROOT / source).exists(), source
