"""Train a DLRM: batches from shards, Adagrad on the embedding + Adam on the MLPs, periodic evaluation,
early stopping (a target AUC, or ``patience`` evaluations without a better validation AUC, keeping the best
weights), the held-out test split scored once at the end, checkpoints and resume, and data-parallel
training under ``torchrun``.

Accuracy protocol. Decisions (when to stop, which weights to keep) use the validation split only. The
test split is scored once, with the weights kept, after training: ``test_auc``/``test_logloss`` in
metrics.json beside the validation ``auc``/``logloss``, and every test row's logit in
``RUN_DIR/test_predictions.npz`` (``logits`` float32, ``labels`` int8) so that methods can be compared
on the same rows (paired bootstrap, ``training.dlrm.metrics.paired_bootstrap_auc``).

Optimizers. Embeddings get Adagrad (lr 0.05 by default): its per-coordinate step suits rows and memory
slots that are touched at very different rates (a shared ROBE slot receives the gradient of many values;
a rare value's row a few), and it accepts the sparse gradients of full and hashed tables. The MLPs get
Adam (lr 1e-3). The ROBE paper's SGD with lr 1.0 needs its tuned schedule; Adagrad + Adam trained every
method here without per-method tuning, which keeps the comparison fair (same optimizer, same lr).

Data parallel. Under ``torchrun`` every rank builds the same model (same seeds), reads its slice of the
same global batch and DDP averages the gradients, so a step equals the single-process step on the global
batch up to floating-point summation order. Rank 0 evaluates and writes the run directory.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.dlrm import checkpoint as ckpt
from training.dlrm.metrics import log_loss, roc_auc
from training.dlrm.model import DLRM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Args:
        batch_size: global batch (split across ranks under torchrun).
        steps: optimizer steps; None: ``epochs`` decides.
        epochs: passes over the training split (fractional allowed) when ``steps`` is None.
        eval_every: steps between validation evaluations (0: only at the end).
        eval_rows: validation rows used by periodic evaluations (None: all); the final one uses all.
        target_auc: stop once a validation AUC reaches it.
        lr_embedding: Adagrad learning rate of the embedding.
        lr_dense: Adam learning rate of the MLPs.
        seed: batch order and initialisation.
        eval_batch_size: rows per forward pass when evaluating.
        restore_best: end with the weights of the best validation AUC seen (early stopping; small data
            sets overfit within a few epochs). Periodic evaluations must then use every validation row.
        patience: stop after this many periodic evaluations in a row without a better validation AUC
            (None: never); needs ``eval_every`` and implies keeping the best weights.
    """

    batch_size: int = 2048
    steps: int | None = None
    epochs: float = 1.0
    eval_every: int = 0
    eval_rows: int | None = None
    target_auc: float | None = None
    lr_embedding: float = 0.05
    lr_dense: float = 1e-3
    seed: int = 0
    eval_batch_size: int = 16384
    restore_best: bool = False
    patience: int | None = None

    @property
    def keeps_best(self) -> bool:
        """Whether training ends with the weights of the best validation AUC."""
        return self.restore_best or self.patience is not None

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be >= 1, got {self.steps}")
        if not self.epochs > 0:
            raise ValueError(f"--epochs must be positive, got {self.epochs}")
        if self.eval_every < 0:
            raise ValueError(f"--eval-every must be >= 0, got {self.eval_every}")
        if self.target_auc is not None and not 0 < self.target_auc <= 1:
            raise ValueError(f"--target-auc must be in (0, 1], got {self.target_auc}")
        if self.patience is not None:
            if self.patience < 1:
                raise ValueError(f"--patience must be >= 1, got {self.patience}")
            if not self.eval_every:
                raise ValueError("--patience counts periodic evaluations: give --eval-every or "
                                 "--eval-every-epoch")
        if self.keeps_best and self.eval_rows is not None:
            raise ValueError("--restore-best and --patience compare full evaluations: drop --eval-rows")


@dataclass(frozen=True)
class Split:
    """One split as arrays (memmaps are fine): dense float32 [N, D], categorical int64 [N, F], labels [N]."""

    dense: np.ndarray
    categorical: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Tensors for ``rows`` (sorted first: memmap reads stay sequential). Dense values are used as stored
        (the shards hold them already transformed, see ``training.data.shards``)."""
        rows = np.sort(rows)
        dense = torch.from_numpy(np.asarray(self.dense[rows], dtype=np.float32))
        categorical = torch.from_numpy(np.asarray(self.categorical[rows], dtype=np.int64))
        labels = torch.from_numpy(np.asarray(self.labels[rows], dtype=np.float32))
        return dense.to(device), categorical.to(device), labels.to(device)

    def preload(self, device: torch.device) -> DeviceSplit:
        """The whole split as tensors on ``device`` (GPU training: batches never leave the device)."""
        return DeviceSplit(torch.as_tensor(np.asarray(self.dense, dtype=np.float32), device=device),
                           torch.as_tensor(np.asarray(self.categorical, dtype=np.int64), device=device),
                           torch.as_tensor(np.asarray(self.labels, dtype=np.float32), device=device))


@dataclass(frozen=True)
class DeviceSplit:
    """A split held as device tensors: dense [N, D], categorical [N, F] int64, labels [N] float."""

    dense: torch.Tensor
    categorical: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, ...]:
        index = torch.from_numpy(np.sort(rows)).to(self.labels.device)
        return self.dense[index], self.categorical[index], self.labels[index]


@dataclass
class Progress:
    """Where training is: resumed runs continue from here."""

    step: int = 0
    train_seconds: float = 0.0
    samples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # {"step", "auc", "state_dict"} when restoring the best weights
    stopped_early: bool = False  # patience ran out (not saved: recomputed from the history on resume)


def batch_rows(num_rows: int, batch_size: int, seed: int, start_step: int, rank: int = 0,
               world_size: int = 1) -> Iterator[np.ndarray]:
    """This rank's rows of every global batch from ``start_step`` on: epoch e is permutation(seed, e)."""
    steps_per_epoch = num_rows // batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"the training split has {num_rows} rows, fewer than one batch of {batch_size}")
    share = batch_size // world_size
    step = start_step
    while True:
        epoch, position = divmod(step, steps_per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(num_rows)
        for i in range(position, steps_per_epoch):
            global_rows = order[i * batch_size:(i + 1) * batch_size]
            yield global_rows[rank * share:(rank + 1) * share]
        step = (epoch + 1) * steps_per_epoch


def total_steps(config: TrainConfig, num_rows: int) -> int:
    if config.steps is not None:
        return config.steps
    return max(1, math.ceil(config.epochs * num_rows / config.batch_size))


def make_optimizers(model: DLRM, config: TrainConfig) -> list[torch.optim.Optimizer]:
    """Adagrad for the embedding's weights, Adam for everything else (see the module docstring)."""
    embedding = [p for p in model.embedding.parameters() if p.requires_grad]
    embedding_ids = {id(p) for p in embedding}
    dense = [p for p in model.parameters() if id(p) not in embedding_ids]
    return [torch.optim.Adagrad(embedding, lr=config.lr_embedding),
            torch.optim.Adam(dense, lr=config.lr_dense)]


AnySplit = Split | DeviceSplit
PREDICTIONS_NAME = "test_predictions.npz"


@torch.no_grad()
def predict(model: nn.Module, split: AnySplit, device: torch.device, batch_size: int,
            max_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits (float32) and labels (int8) of the first ``max_rows`` rows (all when None), in row order."""
    was_training = model.training
    model.eval()
    n = len(split) if max_rows is None else min(len(split), max_rows)
    logits, targets = [], []
    for start in range(0, n, batch_size):
        dense, categorical, labels = split.batch(np.arange(start, min(n, start + batch_size)), device)
        logits.append(model(dense, categorical).float().cpu())
        targets.append(labels.cpu())
    model.train(was_training)
    scores = torch.cat(logits).numpy() if logits else np.zeros(0, np.float32)
    truth = torch.cat(targets).numpy().astype(np.int8) if targets else np.zeros(0, np.int8)
    return scores, truth


def score(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """AUC, log loss and row count of logits against 0/1 labels."""
    probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    truth = labels.astype(np.float64)
    return {"auc": roc_auc(truth, logits), "logloss": log_loss(truth, probabilities), "rows": len(labels)}


def evaluate(model: nn.Module, split: AnySplit, device: torch.device, batch_size: int,
             max_rows: int | None = None) -> dict[str, float]:
    """AUC and log loss over the first ``max_rows`` rows of ``split`` (all when None)."""
    return score(*predict(model, split, device, batch_size, max_rows))


def ran_on(device: torch.device) -> str:
    """Where a run trained, in words: the GPU's name, or the CPU model and its core count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = torch.get_num_threads()
    return f"cpu: {model}, {os.cpu_count()} cores, {threads} torch thread{'s' * (threads != 1)}, no GPU used"


class Trainer:
    """Runs the training loop of one DLRM and keeps its run directory current.

    Args:
        model: the DLRM (moved to ``device`` here).
        train: training split; ``val``: validation split.
        config: the training settings.
        run_dir: where checkpoint.pt and metrics.json go.
        device: torch device.
        info: static facts for metrics.json (method, compression, bytes, config...).
        data: the checkpoint's ``data`` section.
        extra: more keys for the checkpoint's ``train`` section (embedding spec, budget).
        test: held-out split scored once at the end (``test_auc``, ``test_logloss``), never for decisions.
    """

    def __init__(self, model: DLRM, train: AnySplit, val: AnySplit, config: TrainConfig, run_dir: Path,
                 device: torch.device, info: dict[str, Any], data: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None, test: AnySplit | None = None) -> None:
        self.model = model.to(device)
        self.train_split, self.val_split = train, val
        self.config, self.run_dir, self.device, self.info = config, run_dir, device, info
        self.data, self.extra, self.test_split = data or {}, extra or {}, test
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world_size = dist.get_world_size() if dist.is_initialized() else 1
        if config.batch_size % self.world_size:
            raise ValueError(f"batch size {config.batch_size} must divide by the {self.world_size} processes")
        self.wrapped: nn.Module = model
        if self.world_size > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizers = make_optimizers(model, config)
        self.progress = Progress()
        self.last_result: dict[str, Any] | None = None  # the latest evaluation, known on every rank

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint dict: weights, optimizer states, step and history."""
        self.model.load_state_dict(state["state_dict"])
        train = state["train"]
        for optimizer, saved in zip(self.optimizers, train["optimizers"], strict=True):
            optimizer.load_state_dict(saved)
        self.progress = Progress(train["step"], train["train_seconds"], train["samples"],
                                 list(state["metrics"].get("history", [])), train.get("best"))
        self.last_result = self.progress.history[-1] if self.progress.history else None
        logger.info("resumed at step %d", self.progress.step)

    def fit(self) -> dict[str, Any]:
        """Train to the end (or the target AUC); returns the final metrics (also in metrics.json)."""
        config, progress = self.config, self.progress
        steps = total_steps(config, len(self.train_split))
        rows = batch_rows(len(self.train_split), config.batch_size, config.seed, progress.step,
                          self.rank, self.world_size)
        bar = tqdm(total=steps, initial=progress.step, desc=f"train {self.info.get('method', '')}",
                   disable=self.rank != 0, mininterval=1.0, dynamic_ncols=True)
        stop = progress.step >= steps or self._out_of_patience()
        while not stop:
            started = time.perf_counter()
            loss = self._step(next(rows))
            progress.train_seconds += time.perf_counter() - started
            progress.step += 1
            progress.samples += config.batch_size
            bar.update(1)
            if progress.step % 20 == 0 or progress.step == steps:
                bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{self.samples_per_s():.0f}")
            stop = progress.step >= steps
            if config.eval_every and progress.step % config.eval_every == 0 and not stop:
                result = self._evaluate(config.eval_rows)
                stop = self._reached_target(result) or self._out_of_patience()
        bar.close()
        return self._finish()

    def samples_per_s(self) -> float:
        return self.progress.samples / self.progress.train_seconds if self.progress.train_seconds else 0.0

    def _step(self, rows: np.ndarray) -> float:
        dense, categorical, labels = self.train_split.batch(rows, self.device)
        logits = self.wrapped(dense, categorical)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in self.optimizers:
            optimizer.step()
        return float(loss.detach())

    def _reached_target(self, result: dict[str, Any]) -> bool:
        target = self.config.target_auc
        reached = target is not None and result["auc"] >= target
        if reached:
            logger.info("validation AUC %.4f reached the target %.4f at step %d", result["auc"], target,
                        self.progress.step)
        return reached

    def _out_of_patience(self) -> bool:
        """``patience`` evaluations in a row since the best validation AUC (known from the history, so a
        resumed run stops where the original would have)."""
        patience, history = self.config.patience, self.progress.history
        if patience is None or not history:
            return False
        best = max(range(len(history)), key=lambda i: (history[i]["auc"], -i))
        waited = len(history) - 1 - best
        if waited >= patience:
            logger.info("no better validation AUC in %d evaluations (best %.5f at step %d): stopping at "
                        "step %d", waited, history[best]["auc"], history[best]["step"], self.progress.step)
            self.progress.stopped_early = True
        return waited >= patience

    def _evaluate(self, max_rows: int | None) -> dict[str, Any]:
        """Evaluate on rank 0, checkpoint, and share the result with every rank."""
        result: dict[str, Any] = {}
        if self.rank == 0:
            result = evaluate(self.model, self.val_split, self.device, self.config.eval_batch_size, max_rows)
            result.update(step=self.progress.step, samples_per_s=self.samples_per_s())
            self.progress.history.append(result)
            self._remember_if_best(result)
            logger.info("step %d: val auc %.5f logloss %.5f (%d rows)", self.progress.step, result["auc"],
                        result["logloss"], result["rows"])
            self._save(self._metrics(result))
        if self.world_size > 1:
            shared = [result]
            dist.broadcast_object_list(shared, src=0)
            result = shared[0]
        self.last_result = result
        return result

    def _remember_if_best(self, result: dict[str, Any]) -> None:
        best = self.progress.best
        if self.config.keeps_best and (best is None or result["auc"] > best["auc"]):
            state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            self.progress.best = {"step": result["step"], "auc": result["auc"], "state_dict": state}

    def _finish(self) -> dict[str, Any]:
        last = self.last_result
        if last is None or last["step"] != self.progress.step or last["rows"] != len(self.val_split):
            last = self._evaluate(None)
        best = self.progress.best
        if best is not None and best["step"] != last["step"]:
            self.model.load_state_dict(best["state_dict"])
            last = next(r for r in self.progress.history if r["step"] == best["step"])
            logger.info("restored the best weights (step %d, val auc %.5f)", best["step"], best["auc"])
            if self.rank == 0:
                self._save(self._metrics(last))
        metrics = self._metrics(last)
        metrics.update(best_step=last["step"], best_epoch=last["step"] * self.config.batch_size /
                       len(self.train_split), stopped_early=self.progress.stopped_early)
        if self.rank == 0 and self.test_split is not None and len(self.test_split):
            # the one and only look at the test split, with the weights kept
            logits, labels = predict(self.model, self.test_split, self.device, self.config.eval_batch_size)
            test = score(logits, labels)
            metrics.update(test_auc=test["auc"], test_logloss=test["logloss"], test_rows=test["rows"])
            path = self.run_dir / PREDICTIONS_NAME
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with path.open("wb") as stream:
                np.savez_compressed(stream, logits=logits, labels=labels)
        if self.rank == 0:
            ckpt.write_metrics(self.run_dir, metrics)
        return metrics

    def _metrics(self, result: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.info,
            "auc": result["auc"],
            "logloss": result["logloss"],
            "val_auc": result["auc"],
            "val_logloss": result["logloss"],
            "val_rows": result["rows"],
            "steps": self.progress.step,
            "samples": self.progress.samples,
            "epochs": self.progress.samples / len(self.train_split),
            "samples_per_s": self.samples_per_s(),
            "train_seconds": self.progress.train_seconds,
            "batch_size": self.config.batch_size,
            "world_size": self.world_size,
            "device": str(self.device),
            "ran_on": ran_on(self.device),
            "history": list(self.progress.history),
            "train_config": asdict(self.config),
        }

    def _save(self, metrics: dict[str, Any]) -> None:
        train = {
            "config": asdict(self.config),
            "step": self.progress.step,
            "train_seconds": self.progress.train_seconds,
            "samples": self.progress.samples,
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "best": self.progress.best,
            **self.extra,
        }
        ckpt.save_checkpoint(self.run_dir, self.model, self.data, metrics, train)
