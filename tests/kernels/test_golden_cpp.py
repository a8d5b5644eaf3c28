"""The C++ hash of the CPU kernels (kernels/cpu/lookups.cc) against every golden case, m > 2^31 included.

The ORT tests (test_kernel_ops.py) materialise M as float32 indices, which bounds them to m <= 2^24; this
test compiles a small driver (tests/kernels/cpp/golden_starts.cc) around the same functions the kernels
call and compares the block starts of every robe and lma golden case, whatever m is.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernels.build import SOURCE_DIR

DRIVER = Path(__file__).resolve().parent / "cpp" / "golden_starts.cc"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("g++") or shutil.which("c++")
    assert compiler, "a C++ compiler is needed to build the kernels (make kernels) and this driver"
    out = tmp_path_factory.mktemp("cpp") / "golden_starts"
    subprocess.run([compiler, "-std=c++17", "-O1", f"-I{SOURCE_DIR}", str(DRIVER),
                    str(SOURCE_DIR / "cpu" / "lookups.cc"), "-o", str(out)], check=True, timeout=300)
    return out


def _case_text(case: dict[str, Any], lma: bool) -> str:
    p = case["params"]
    blocks = case["embedding_dim"] // case["block_size"]
    numbers = [int(lma), len(p["a1"]), blocks, case["m"], case["block_size"],
               case.get("keys_per_block", 0), case.get("num_minhashes", 0)]
    numbers += [*p["a1"], *p["a2"], *p["c"], *p["g1"], *p["g2"]]
    if lma:
        numbers += [len(case["keys"]), *case["keys"], *case["offsets"],
                    *np.asarray(case["signatures"], np.int64).ravel().tolist()]
    ids = np.asarray(case["ids"], np.int64)
    numbers += [len(ids), *ids.ravel().tolist()]
    return " ".join(map(str, numbers))


@pytest.mark.parametrize("kind", ["robe", "lma"])
def test_cpp_block_starts_match_golden(driver: Path, golden: dict[str, Any], kind: str) -> None:
    cases = golden[kind]
    assert any(case["m"] > 2**31 for case in cases), "the golden file must hold an array with m > 2^31"
    text = "\n".join(_case_text(case, kind == "lma") for case in cases)
    out = subprocess.run([str(driver)], input=text, capture_output=True, text=True, check=True, timeout=60)
    lines = out.stdout.splitlines()
    assert len(lines) == len(cases)
    for case, line in zip(cases, lines, strict=True):
        expected = np.asarray(case["offsets" if kind == "robe" else "block_offsets"], np.int64).ravel()
        assert [int(x) for x in line.split()] == expected.tolist(), case["name"]
