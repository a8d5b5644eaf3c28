"""``python -m training.dlrm.throughput``: training samples/s of full tables vs compressed embeddings.

Same architecture, same batches, only the embedding differs. Variants alternate (A B C A B C ...) after a
warm-up, so a machine shared with other work slows every variant alike; the report is the median of the
rounds and the ratio to full tables. Weights need no training for this (the model starts untrained).

Example::

    python -m training.dlrm.throughput --data data/results/synthetic.tsv --config kaggle --batch-size 2048
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from training.dlrm.cli import load_splits
from training.dlrm.embeddings import Method, TableEmbedding
from training.dlrm.factory import EmbeddingSpec, build_embedding, full_bytes
from training.dlrm.model import DLRM, DLRMConfig
from training.dlrm.trainer import Split, TrainConfig, make_optimizers

logger = logging.getLogger(__name__)

DEFAULT_VARIANTS = ("full", "robe:16:1000", "robe:1:1000", "robe:16:16", "hash:0:1000", "lma:4:1000")


def parse_variant(text: str, dim: int) -> tuple[str, EmbeddingSpec, float | None]:
    """``method[:Z[:compression]]`` -> (label, spec, compression); Z = 0 means the default."""
    method, *rest = text.split(":")
    block = int(rest[0]) if rest and int(rest[0]) > 0 else None
    compression = float(rest[1]) if len(rest) > 1 else None
    spec = EmbeddingSpec(Method(method), block_size=block, signature_rows=125_000)
    shape = "" if method == "hash" else f" Z={block or dim}"
    label = method if method == "full" else f"{method}{shape} {compression:g}x"
    return label, spec, compression


def build(text: str, config: DLRMConfig, train: Split, reference: int,
          device: torch.device) -> tuple[str, DLRM]:
    label, spec, compression = parse_variant(text, config.embedding_dim)
    budget = None if spec.method is Method.FULL else int(reference / (compression or 1.0))
    embedding = build_embedding(spec, config.embedding_dim, train.categorical, budget)
    if isinstance(embedding, TableEmbedding):
        embedding.sparse_grad = True
    return label, DLRM(config, embedding).to(device)


def time_steps(model: DLRM, batches: list[tuple[torch.Tensor, ...]], device: torch.device) -> float:
    """Samples/s of ``len(batches)`` optimizer steps (forward, backward, Adagrad + Adam)."""
    optimizers = make_optimizers(model, TrainConfig())
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for dense, categorical, labels in batches:
        loss = F.binary_cross_entropy_with_logits(model(dense, categorical), labels)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(len(b[2]) for b in batches) / (time.perf_counter() - started)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    train, _, _, _ = load_splits(args.data, args.cache_dir)
    config = DLRMConfig.preset(args.config, train.dense.shape[1], train.categorical.shape[1])
    reference = full_bytes(train.categorical, config.embedding_dim)
    rng = np.random.default_rng(0)
    batches = [train.batch(rng.integers(0, len(train), args.batch_size), device) for _ in range(args.steps)]
    models = [build(v, config, train, reference, device) for v in args.variants]
    for _, model in models:  # warm-up: allocator, optimizer state, page cache
        time_steps(model, batches[:3], device)
    rates: dict[str, list[float]] = {label: [] for label, _ in models}
    for _ in range(args.rounds):
        for label, model in models:
            rates[label].append(time_steps(model, batches, device))
    medians = {label: statistics.median(r) for label, r in rates.items()}
    full = medians.get("full")
    return {
        "device": str(device), "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "config": args.config, "batch_size": args.batch_size,
        "steps_per_round": args.steps, "rounds": args.rounds,
        "variants": [{"label": label, "samples_per_s": medians[label], "rounds": rates[label],
                      "ratio_vs_full": medians[label] / full if full else None} for label in medians],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.dlrm.throughput", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", default="kaggle")
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--cache-dir", type=Path)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    logging.basicConfig(force=True, level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = measure(args)
    except ValueError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
