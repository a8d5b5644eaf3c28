"""The GPU-side tools without a GPU: the GPU check's harness (dry run on CPU), kernels.torch_ext's checks,
builds and clean failures. The kernels themselves run in kernels/gpu_check.sh on a GPU machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kernels import build as kbuild
from kernels import gpu_check
from kernels import reference as ref

torch = pytest.importorskip("torch")
NO_NVCC = kbuild.find_nvcc() is None
NO_GPU = not torch.cuda.is_available()


def _bad(ids: Any) -> np.ndarray:
    values = ids.numpy()
    return (values < 0) | (values >= ref.ID_LIMIT)


class ReferenceOps:
    """What the CUDA ops' plans must compute, on CPU tensors, from kernels.reference."""

    def robe_plan(self, params: ref.HashParams, dim: int, block: int) -> Any:
        def call(ids: Any, memory: Any, out: Any) -> Any:
            bad = _bad(ids)
            result = ref.robe_lookup(np.where(bad, 0, ids.numpy()), memory.numpy(), params, dim, block)
            result[bad] = np.nan
            return out.copy_(torch.from_numpy(result))

        return call

    def lma_plan(self, params: ref.HashParams, dim: int, block: int, keys: Any, offsets: Any, signatures: Any,
                 keys_per_block: int) -> Any:
        def call(ids: Any, memory: Any, out: Any) -> Any:
            bad = _bad(ids)
            m = memory.numpy()
            idx = ref.lma_indices(np.where(bad, 0, ids.numpy()), keys.numpy(), offsets, signatures.numpy(),
                                  params,
                                  len(m), dim, block, keys_per_block)
            result = m[idx]
            result[bad] = np.nan
            return out.copy_(torch.from_numpy(result))

        return call

    def vocab_forward(self, ids: Any, keys: Any, offsets: Any, out: Any) -> Any:
        bad = _bad(ids)
        rows = ref.vocab_lookup(np.where(bad, 0, ids.numpy()), keys.numpy(), offsets)
        oov = np.asarray(offsets)[1:] + np.arange(ids.shape[1])
        return out.copy_(torch.from_numpy(np.where(bad, oov, rows)))


class IdleOps:
    """Writes nothing: every check with a non-empty batch must then see the poison and fail."""

    def robe_plan(self, *args: Any, **kwargs: Any) -> Any:
        return lambda *call_args, **call_kwargs: None

    def lma_plan(self, *args: Any, **kwargs: Any) -> Any:
        return lambda *call_args, **call_kwargs: None

    def vocab_forward(self, *args: Any, **kwargs: Any) -> None: ...


def test_gpu_check_harness_passes_the_reference() -> None:
    checker = gpu_check.Checker(ReferenceOps(), np.random.default_rng(0), device="cpu")
    gpu_check.run_checks(checker, quick=True)
    assert len(checker.results) > 20
    assert all(r.ok for r in checker.results), [r for r in checker.results if not r.ok]


def test_gpu_check_harness_catches_unwritten_outputs() -> None:
    checker = gpu_check.Checker(IdleOps(), np.random.default_rng(1), device="cpu")
    gpu_check.run_checks(checker, quick=True)
    non_empty = [r for r in checker.results if "empty batch" not in r.name]
    assert non_empty and not any(r.ok for r in non_empty)


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present")
def test_gpu_check_refuses_cleanly_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no CUDA device") and err.count("\n") == 1


@pytest.mark.skipif(not NO_GPU, reason="a GPU is present")
def test_torch_ext_load_needs_a_gpu(tmp_path: Path) -> None:
    from kernels import torch_ext

    with pytest.raises(torch_ext.CudaUnavailable):
        torch_ext.load(build_dir=tmp_path)


def test_torch_ext_rejects_host_tensors_before_launching() -> None:
    from kernels import torch_ext

    class Unreachable:
        def __getattr__(self, name: str) -> Any:
            pytest.fail(f"launcher {name} called with invalid tensors")

    ops = torch_ext.CudaOps(Unreachable(), torch_ext.Backend.CTYPES)
    params = ref.HashParams.from_seed(3, 2, 0)
    with pytest.raises(ValueError, match=r"contiguous CUDA torch\.int64"):
        ops.robe_forward(torch.zeros((2, 3), dtype=torch.int64), torch.zeros(10), params, 4, 2)
    with pytest.raises(ValueError, match=r"contiguous CUDA torch\.int64"):
        ops.vocab_forward(
            torch.zeros((2, 3), dtype=torch.int64), torch.zeros(4, dtype=torch.int64), [0, 1, 2, 4]
        )


@pytest.mark.slow
@pytest.mark.skipif(NO_NVCC or not NO_GPU, reason="needs nvcc, and no GPU (the launch must fail cleanly)")
@pytest.mark.parametrize("backend", ["ctypes", "extension"])
def test_bridges_build_and_fail_cleanly_without_a_driver(backend: str) -> None:
    """Both bridges compile here (nvcc; torch.utils.cpp_extension for the extension) and report, not crash."""
    from kernels import torch_ext

    raw, used = torch_ext.build(torch_ext.Backend(backend), archs=("80", "90"))
    assert used.value == backend
    features, blocks = torch.ones(3, dtype=torch.int64), torch.ones(2, dtype=torch.int64)
    with pytest.raises((RuntimeError, ValueError), match="hash coefficients must be in"):
        raw.plan_create(features, features, torch.zeros(3, dtype=torch.int64), blocks, blocks, None, 0)
    with pytest.raises((RuntimeError, ValueError), match="offsets must be"):
        raw.plan_create(features, features, features, blocks, blocks, torch.tensor([0, 1, 1, 5]), 4)
    plan = raw.plan_create(features, features, features, blocks, blocks, None, 0)
    ids, memory, out = torch.zeros((2, 3), dtype=torch.int64), torch.zeros(10), torch.empty((2, 3, 4))
    try:
        with pytest.raises((RuntimeError, ValueError), match="block_size must divide"):
            raw.robe(plan, ids, memory, 4, 3, out, 0)
        with pytest.raises((RuntimeError, ValueError), match="hash tables hold 2 blocks"):
            raw.robe(plan, ids, memory, 4, 4, out, 0)
        with pytest.raises(RuntimeError, match="launch failed"):
            raw.robe(plan, ids, memory, 4, 2, out, 0)
    finally:
        raw.plan_destroy(plan)
