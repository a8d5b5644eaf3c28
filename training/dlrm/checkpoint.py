"""Run directories and the DLRM checkpoint layout (the contract between the trainer and ``export``).

``RUN_DIR/checkpoint.pt`` is a ``torch.save`` of one dict (load with ``load_checkpoint``; it holds NumPy
arrays, so ``torch.load(..., weights_only=False)``)::

    {
      "format_version": 1,
      "kind": "dlrm",
      "model_config": asdict(DLRMConfig),          # name, num_dense, num_features, embedding_dim,
                                                   # bottom_mlp, top_mlp
      "embedding": {
          "hash_version": 2,                       # DESIGN.md section 3; any other version is refused
          "method": "full" | "hash" | "robe" | "lma",
          "config": asdict(FullConfig | HashConfig | RobeConfig | LmaConfig),
          "hash": HashParams.to_dict() or None,    # version, seed, a1, a2, c (F ints), g1, g2 (d/Z ints)
          "arrays": {...},                         # full: keys [K], offsets [F+1] (int64); lma: keys,
                                                   # offsets (int64), signatures (uint8 [K, S]); else {}
      },
      "state_dict": DLRM.state_dict(),             # embedding weights under "embedding.table.weight"
                                                   # (full, hash) or "embedding.memory" (robe, lma)
      "data": {"path", "meta": meta.json of the shards, "rows": {split: n},
               "dense_transform": ...},            # the model takes dense values as the shards store them:
                                                   # log(1 + max(x, 0)), missing -> 0; serving must apply it
      "metrics": {...},                            # the latest evaluation (as metrics.json)
      "train": {"config": asdict(TrainConfig), "spec": asdict(EmbeddingSpec), "step", "train_seconds",
                "samples", "optimizers": [Adagrad state, Adam state], "budget_bytes",
                "full_embedding_bytes", "info": {...},  # the static part of metrics.json
                "best": {"step", "auc", "state_dict"} or None},  # --restore-best only
    }

``RUN_DIR/metrics.json`` holds at least ``auc``, ``logloss``, ``parameter_bytes`` (whole model: MLP weights
+ everything the embedding serves with), ``embedding_bytes``, ``array_bytes`` (the table or shared array
alone), ``samples_per_s``, ``steps``, ``config``,
``method``, ``compression`` (full-table embedding bytes / this embedding's bytes), the history of
evaluations and, when the data has a test split, ``test_auc`` and ``test_logloss``. With ``--restore-best``
the checkpoint holds the best validation weights and metrics.json describes them (``best_step``). Both
files are written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from training.dlrm.factory import embedding_from_state, embedding_state
from training.dlrm.model import DLRM, DLRMConfig

FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing or was not written by this trainer."""


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(run_dir: Path, model: DLRM, data: dict[str, Any], metrics: dict[str, Any],
                    train: dict[str, Any]) -> Path:
    """Write ``run_dir/checkpoint.pt`` (layout in the module docstring)."""
    state = {
        "format_version": FORMAT_VERSION,
        "kind": "dlrm",
        "model_config": asdict(model.config),
        "embedding": embedding_state(model.compressed_embedding),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "data": data,
        "metrics": metrics,
        "train": train,
    }
    path = run_dir / CHECKPOINT_NAME
    _atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint dict (``path`` is the file or its run directory)."""
    file = path / CHECKPOINT_NAME if path.is_dir() else path
    if not file.exists():
        raise CheckpointError(f"no checkpoint at {file}")
    state = torch.load(file, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("kind") != "dlrm":
        raise CheckpointError(f"{file} is not a DLRM checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file} has format {state.get('format_version')}, expected {FORMAT_VERSION}")
    return state


def model_from_checkpoint(state: dict[str, Any]) -> DLRM:
    """The trained DLRM (CPU, eval mode) from a checkpoint dict."""
    config = dict(state["model_config"])
    config["bottom_mlp"] = tuple(config["bottom_mlp"])
    config["top_mlp"] = tuple(config["top_mlp"])
    model = DLRM(DLRMConfig(**config), embedding_from_state(state["embedding"]))
    model.load_state_dict(state["state_dict"])
    return model.eval()


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    path = run_dir / METRICS_NAME
    text = json.dumps(metrics, indent=2, sort_keys=True) + "\n"
    _atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path
