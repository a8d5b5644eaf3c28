"""``python -m training dlrm``: train a DLRM with a compressed embedding and write a run directory.

Example::

    python -m training dlrm --data data/synth --embedding robe --compression 1000 --config kaggle \\
        --out runs/robe --epochs 1 --eval-every 500

Under ``torchrun --nproc-per-node N python -m training dlrm ...`` the global ``--batch-size`` is split over
N data-parallel processes (gloo on CPU, nccl on GPU). User mistakes exit with status 2 and one line
``error: ...``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist

from kernels import reference as ref
from kernels.reference import InvalidIdError
from training.dlrm import budget as sizing
from training.dlrm import checkpoint as ckpt
from training.dlrm.embeddings import CompressedEmbedding, Method, TableEmbedding
from training.dlrm.factory import LMA_BUDGETS, EmbeddingSpec, build_embedding, full_bytes
from training.dlrm.model import DLRM, DLRMConfig, Preset
from training.dlrm.trainer import AnySplit, Split, TrainConfig, Trainer

logger = logging.getLogger(__name__)


class UsageError(ValueError):
    """A command-line mistake, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training dlrm", description="Train a DLRM with a compressed embedding.")
    add = parser.add_argument
    add("--data", type=Path, required=True, help="shard directory or raw Criteo/Avazu file")
    add("--embedding", required=True, choices=[m.value for m in Method])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--memory", help="embedding budget, e.g. 2MB, 512KiB")
    budget.add_argument("--compression", type=float, help="budget = full-table embedding bytes / X")
    add("--config", default=Preset.TINY.value, choices=[p.value for p in Preset])
    add("--out", type=Path, required=True, help="run directory (checkpoint.pt, metrics.json)")
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int)
    length.add_argument("--epochs", type=float, default=1.0)
    add("--batch-size", type=int, default=2048, help="global batch size")
    add("--eval-every", type=int, default=0, help="steps between validation evaluations (0: at the end)")
    add("--eval-every-epoch", action="store_true", help="evaluate once per epoch (overrides --eval-every)")
    add("--eval-rows", type=int, help="validation rows of periodic evaluations (final: all)")
    add("--restore-best", action="store_true", help="end with the weights of the best validation AUC")
    add("--patience", type=int, help="early stopping: stop after N evaluations without a better validation "
        "AUC and keep the best weights (needs --eval-every or --eval-every-epoch)")
    add("--target-auc", type=float, help="stop when the validation AUC reaches this")
    add("--block-size", type=int, help="Z for robe/lma (default: robe d, one block per lookup; lma 1)")
    add("--seed", type=int, default=0)
    add("--lr-embedding", type=float, default=0.05, help="Adagrad learning rate of the embedding")
    add("--lr-dense", type=float, default=1e-3, help="Adam learning rate of the MLPs")
    add("--init-scale", type=float, default=0.05, help="embedding weights start in U(-s, s)")
    add("--min-count", type=int, default=1, help="full tables: rarer values share one OOV row")
    add("--lma-k", type=int, default=ref.DEFAULT_KEYS_PER_BLOCK, help="LMA: minhashes per block code (k)")
    add("--lma-minhashes", type=int, default=ref.DEFAULT_NUM_MINHASHES, help="LMA: minhashes per token (K)")
    add("--lma-bits", type=int, default=ref.DEFAULT_MINHASH_BITS, help="LMA: bits kept of each minhash (b)")
    add("--signature-fraction", type=float, default=0.25,
        help="LMA: largest share of the budget for signatures")
    add("--lma-sample-rows", "--signature-rows", dest="signature_rows", type=int,
        default=ref.DEFAULT_SIGNATURE_ROWS, help="LMA: rows sampled for the row sets (>= 125000)")
    add("--lma-budget", choices=list(LMA_BUDGETS), default="serving",
        help="LMA: the budget bounds every serving byte (serving, default) or the float array alone, equal "
        "to ROBE-Z's, with the signature tables on top (array: the LMA paper's accounting)")
    add("--lma-max-share", type=float, default=1.0,
        help="LMA: tokens in more than this share of the sampled rows get no signature (ROBE-Z locations)")
    add("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add("--threads", type=int, help="torch CPU threads")
    add("--cache-dir", type=Path, help="where raw data files are preprocessed into shards")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.pt when it exists")
    add("--log-level", default="INFO")
    return parser


def _device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("--device cuda but no CUDA device is available")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    return device


def _init_distributed(device: torch.device) -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def load_splits(data: Path, cache_dir: Path | None) -> tuple[Split, Split, Split, dict[str, Any]]:
    """Train, validation and test splits plus the checkpoint's data section."""
    from training.data.shards import prepare

    shards = prepare(data, cache_dir=cache_dir)
    splits = []
    for name in ("train", "val", "test"):
        split = shards.split(name)
        splits.append(Split(split.dense, split.categorical, split.labels))
    meta = dict(shards.meta)
    info = {"path": str(data), "meta": meta, "dense_transform": meta.get("dense_transform"),
            "rows": {"train": len(splits[0]), "val": len(splits[1]), "test": len(splits[2])}}
    return splits[0], splits[1], splits[2], info


def _model_bytes(model: DLRM, embedding: CompressedEmbedding) -> int:
    embedding_params = {id(p) for p in embedding.parameters()}
    dense = sum(p.numel() * p.element_size() for p in model.parameters() if id(p) not in embedding_params)
    return dense + embedding.parameter_bytes()


def array_bytes(embedding: CompressedEmbedding) -> int:
    """Bytes of the embedding's trained float arrays alone (M, or the tables), without hash coefficients,
    vocabularies or signatures: the memory the papers report."""
    own = getattr(embedding, "array_bytes", None)
    if callable(own):
        return int(own())
    return sum(p.numel() * p.element_size() for p in embedding.parameters())


def _spec(args: argparse.Namespace) -> EmbeddingSpec:
    return EmbeddingSpec(Method(args.embedding), args.block_size, args.seed, args.min_count, args.init_scale,
                         keys_per_block=args.lma_k, num_minhashes=args.lma_minhashes,
                         minhash_bits=args.lma_bits,
                         signature_fraction=args.signature_fraction, signature_rows=args.signature_rows,
                         lma_budget=args.lma_budget, max_token_share=args.lma_max_share)


def build_model(args: argparse.Namespace, train: Split,
                data: dict[str, Any] | None = None) -> tuple[DLRM, dict[str, Any], dict[str, Any]]:
    """The DLRM sized from the arguments, its metrics facts and its checkpoint extras."""
    spec = _spec(args)
    data = data or {}
    num_dense, num_features = train.dense.shape[1], train.categorical.shape[1]
    config = DLRMConfig.preset(args.config, num_dense, num_features)
    reference = full_bytes(train.categorical, config.embedding_dim, args.min_count)
    budget = None
    if spec.method is not Method.FULL:
        budget = sizing.resolve_budget(args.memory, args.compression, reference)
    elif args.memory is not None or (args.compression not in (None, 1.0)):
        raise UsageError("full tables are the 1x reference: give no budget (or --compression 1)")
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    embedding = build_embedding(spec, config.embedding_dim, train.categorical, budget, generator)
    model = DLRM(config, embedding)
    info = {
        "method": spec.method.value,
        "block_size": getattr(embedding.config, "block_size", None),
        "compression": reference / embedding.parameter_bytes(),
        "embedding_bytes": embedding.parameter_bytes(),
        "array_bytes": embedding.array_bytes(),
        "parameter_bytes": _model_bytes(model, embedding),
        "full_embedding_bytes": reference,
        "budget_bytes": budget,
        "config": asdict(config),
        "embedding_config": asdict(embedding.config),
        "dataset": data.get("meta", {}).get("dataset"),
        "rows": data.get("rows"),
    }
    from training.dlrm.metrics import FREQUENT_COUNT, count_frequent_values

    # the memory axes of the accuracy study: the trained array alone, and values seen >= 10 times
    info.update(array_bytes=array_bytes(embedding), frequent_count=FREQUENT_COUNT,
                frequent_values=count_frequent_values(train.categorical, FREQUENT_COUNT))
    extra = {"spec": asdict(spec), "budget_bytes": budget, "full_embedding_bytes": reference, "info": info}
    return model, info, extra


def _train_config(args: argparse.Namespace, train_rows: int) -> TrainConfig:
    eval_every = max(1, train_rows // args.batch_size) if args.eval_every_epoch else args.eval_every
    return TrainConfig(batch_size=args.batch_size, steps=args.steps, epochs=args.epochs,
                       eval_every=eval_every, eval_rows=args.eval_rows, target_auc=args.target_auc,
                       lr_embedding=args.lr_embedding, lr_dense=args.lr_dense, seed=args.seed,
                       restore_best=args.restore_best, patience=args.patience)


def _use_sparse_gradients(model: DLRM, device: torch.device) -> None:
    """Sparse table gradients, except under several nccl processes (nccl has no sparse all-reduce)."""
    embedding = model.compressed_embedding
    if isinstance(embedding, TableEmbedding):
        embedding.sparse_grad = device.type == "cpu" or int(os.environ.get("WORLD_SIZE", "1")) == 1


def check_args(args: argparse.Namespace) -> None:
    """Mistakes found before any data is read."""
    dim = DLRMConfig.preset(args.config, 0, 1).embedding_dim
    if args.block_size is not None and (args.block_size < 1 or dim % args.block_size):
        raise UsageError(f"--block-size {args.block_size} must divide the {args.config} embedding dim {dim}")
    if args.embedding != Method.FULL.value and args.memory is None and args.compression is None \
            and not (args.resume and (args.out / ckpt.CHECKPOINT_NAME).exists()):
        raise UsageError(f"--embedding {args.embedding} needs --memory SIZE or --compression X")
    if args.memory is not None:
        sizing.parse_size(args.memory)
    if not args.data.exists():
        raise UsageError(f"data path {args.data} does not exist")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train (or resume) one run; returns its final metrics."""
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = _device(args.device)
    _init_distributed(device)
    train, val, test, data = load_splits(args.data, args.cache_dir)
    splits: tuple[AnySplit, ...] = (train, val, test)
    if device.type == "cuda":  # a few hundred MB for millions of rows: batches then never leave the GPU
        splits = tuple(split.preload(device) for split in (train, val, test))
    config = _train_config(args, len(train))
    resume_from = args.out / ckpt.CHECKPOINT_NAME
    if args.resume and resume_from.exists():
        state = ckpt.load_checkpoint(resume_from)
        model = ckpt.model_from_checkpoint(state).train()
        _use_sparse_gradients(model, device)
        extra = {k: state["train"][k] for k in ("spec", "budget_bytes", "full_embedding_bytes", "info")}
        trainer = Trainer(model, splits[0], splits[1], config, args.out, device, extra["info"], data, extra,
                          splits[2])
        trainer.resume(state)
    else:
        model, info, extra = build_model(args, train, data)
        _use_sparse_gradients(model, device)
        trainer = Trainer(model, splits[0], splits[1], config, args.out, device, info, data, extra, splits[2])
    logger.info("%s: %s embedding of %s (%.1fx smaller than full tables), model %s", args.out,
                trainer.info["method"], sizing.format_size(trainer.info["embedding_bytes"]),
                trainer.info["compression"], sizing.format_size(trainer.info["parameter_bytes"]))
    return trainer.fit()


def main(argv: list[str]) -> int:
    """CLI entry (``training.__main__`` dispatches ``dlrm`` here)."""
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(force=True, level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        metrics = run(args)
        if dist.is_initialized():
            dist.barrier()  # rank 0 evaluates and saves last: tearing gloo down under it aborts rank 0
    except (UsageError, sizing.BudgetError, ckpt.CheckpointError, InvalidIdError, FileNotFoundError,
            ValueError) as error:
        logger.debug("user error", exc_info=True)
        sys.stderr.write(f"error: {error}\n")
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if metrics.get("auc") is not None and not np.isnan(metrics["auc"]):
        logger.info("%s: auc %.5f logloss %.5f, %.0f samples/s", args.out, metrics["auc"], metrics["logloss"],
                    metrics["samples_per_s"])
    return 0
