"""``torchrun --nproc-per-node 2`` (gloo, CPU) against one process at the same global batch, through the CLI.

Tolerance. Each rank averages the loss over its half of the global batch and DDP averages the two
gradients, which equals the single-process gradient of the whole batch in exact arithmetic; in float32 the
summation order differs, so each gradient differs by a few ulps (relative ~1e-7). Adam and Adagrad turn that
into update differences of the same relative size: measured, the weights agree to 9e-8 (hash) and 3e-7
(robe) after 12 steps, while training moved them by 0.3. A real bug (a rank training on the wrong rows,
gradients summed instead of averaged, a rank skipping its update) moves weights by about one update, ~1e-3
(Adam's lr) or more, 100x above the tolerance of 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.shards import META_FILE, SHARD_VERSION
from training.dlrm.checkpoint import load_checkpoint

TOLERANCE = 1e-5


def write_shards(root: Path, rows: dict[str, int], seed: int = 0) -> Path:
    """A shard directory in the ``training.data.shards`` layout with a planted logistic signal."""
    effects = np.random.default_rng(99).normal(0, 1.0, size=(4, 30))
    rng = np.random.default_rng(seed)
    for split, n in rows.items():
        categorical = rng.integers(0, 30, size=(n, 4))
        dense = rng.exponential(1.0, size=(n, 3)).astype(np.float32)
        logit = effects[np.arange(4), categorical].sum(axis=1) + dense[:, 0] - 2.0
        labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
        (root / split).mkdir(parents=True)
        np.save(root / split / "dense.npy", dense)
        np.save(root / split / "categorical.npy", (categorical * 104729 + 2**33).astype(np.int64))
        np.save(root / split / "labels.npy", labels)
    meta = {"version": SHARD_VERSION, "dataset": "planted", "num_dense": 3, "num_categorical": 4,
            "rows": rows}
    (root / META_FILE).write_text(json.dumps(meta))
    return root


def _train(command: list[str], out: Path, data: Path, method: str) -> dict:
    argv = ["training", "dlrm", "--data", str(data), "--embedding", method, "--config", "tiny",
            "--out", str(out), "--steps", "12", "--batch-size", "64", "--device", "cpu", "--threads", "1",
            "--log-level", "WARNING"]
    if method != "full":
        argv += ["--memory", "6KB", "--block-size", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*command, *argv], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return load_checkpoint(out)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["hash", "robe"])
def test_two_processes_match_one(method: str, tmp_path: Path) -> None:
    data = write_shards(tmp_path / "shards", {"train": 1024, "val": 256, "test": 256})
    single = _train([sys.executable, "-m"], tmp_path / "single", data, method)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    parallel = _train(torchrun, tmp_path / "ddp", data, method)
    assert parallel["metrics"]["world_size"] == 2 and single["metrics"]["world_size"] == 1
    assert parallel["train"]["step"] == single["train"]["step"] == 12
    for name, weight in single["state_dict"].items():
        other = parallel["state_dict"][name]
        torch.testing.assert_close(other, weight, rtol=0, atol=TOLERANCE, msg=name)
    initial = _initial_weights(tmp_path, data, method)
    moved = max(float((single["state_dict"][k] - v).abs().max()) for k, v in initial.items())
    assert moved > 100 * TOLERANCE  # the runs trained: agreement is not a trivial no-op
    assert abs(parallel["metrics"]["auc"] - single["metrics"]["auc"]) < 1e-3


def _initial_weights(tmp_path: Path, data: Path, method: str) -> dict[str, torch.Tensor]:
    """The same model after 0 steps (the CLI seeds everything): rebuilt in-process."""
    from training.dlrm.cli import build_model, build_parser, load_splits

    argv = ["--data", str(data), "--embedding", method, "--out", str(tmp_path / "zero")]
    if method != "full":
        argv += ["--memory", "6KB", "--block-size", "4"]
    args = build_parser().parse_args(argv)
    train, _, _, _ = load_splits(data, None)
    model, _, _ = build_model(args, train)
    return {k: v.clone() for k, v in model.state_dict().items()}
