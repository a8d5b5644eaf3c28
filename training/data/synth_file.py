"""Write the synthetic log as a Criteo TSV file (gzip when the name ends in ``.gz``) with a sidecar.

``PATH.meta.json`` records the generator variant (``v2`` or ``null-control``), the seed, the configuration,
the drawn parameters, the observed positive rate and the ceiling: the AUC and log loss of the true logits
on the drawn labels. The data file is written under a temporary name and renamed when complete, so a
killed run never leaves a partial file.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from training.data.synth import BLOCK_ROWS, SynthConfig, SyntheticCriteo
from training.data.tsv import format_criteo_rows

logger = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".meta.json"
DEFAULT_CHUNK_ROWS = 4 * BLOCK_ROWS
GZIP_LEVEL = 3  # fast; a fixed level and mtime=0 keep the bytes a function of the seed


class StreamingAuc:
    """ROC AUC and log loss of logits against 0/1 labels, accumulated in bounded memory.

    Logits are binned (2^16 bins over [-20, 20]); ties within a bin count one half, which moves the
    AUC by less than 1e-4 here.
    """

    BINS, LIMIT = 1 << 16, 20.0

    def __init__(self) -> None:
        self.positives = np.zeros(self.BINS, dtype=np.int64)
        self.negatives = np.zeros(self.BINS, dtype=np.int64)
        self.log_loss_sum = 0.0

    def update(self, logits: npt.NDArray[np.float64], labels: npt.NDArray[np.int8]) -> None:
        scaled = (np.clip(logits, -self.LIMIT, self.LIMIT) + self.LIMIT) / (2 * self.LIMIT)
        bins = np.minimum((scaled * self.BINS).astype(np.int64), self.BINS - 1)
        positive = labels.astype(bool)
        self.positives += np.bincount(bins[positive], minlength=self.BINS)
        self.negatives += np.bincount(bins[~positive], minlength=self.BINS)
        signed = np.where(positive, logits, -logits)
        self.log_loss_sum += float(np.sum(np.logaddexp(0.0, -signed)))

    def auc(self) -> float:
        positives, negatives = int(self.positives.sum()), int(self.negatives.sum())
        if positives == 0 or negatives == 0:
            return float("nan")
        below = np.cumsum(self.negatives) - self.negatives
        wins = np.sum(self.positives * (below + 0.5 * self.negatives))
        return float(wins / (positives * negatives))

    def log_loss(self) -> float:
        total = int(self.positives.sum() + self.negatives.sum())
        return self.log_loss_sum / total if total else float("nan")


def _open_output(path: Path) -> BinaryIO:
    raw = path.open("wb")
    if path.name.endswith(".gz.partial"):
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0)  # type: ignore[return-value]
    return raw


def write_synth_criteo(
    path: Path, rows: int, seed: int, config: SynthConfig | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> dict[str, Any]:
    """Write ``rows`` synthetic rows to ``path`` and its sidecar; returns the sidecar's content."""
    if rows < 1 or chunk_rows < 1:
        raise ValueError(f"rows and chunk_rows must be positive, got {rows}, {chunk_rows}")
    config = config or SynthConfig()
    started = time.perf_counter()
    generator = SyntheticCriteo(seed, config)
    ceiling = StreamingAuc()
    positives = 0
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            _open_output(partial) as stream,
            tqdm(total=rows, unit="row", desc="synth-criteo", disable=None) as progress,
        ):
            for start in range(0, rows, chunk_rows):
                chunk = generator.rows(start, min(rows, start + chunk_rows))
                stream.write(format_criteo_rows(chunk.labels, chunk.dense, chunk.categorical))
                ceiling.update(chunk.logits, chunk.labels)
                positives += int(chunk.labels.sum())
                progress.update(len(chunk))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    meta = {
        "generator": "synth-criteo",
        "variant": "null-control" if config.is_null_control else "v2",
        "format": "criteo",
        "rows": rows,
        "seed": seed,
        "config": asdict(config),
        "parameters": generator.parameters(),
        "positive_rate": round(positives / rows, 6),
        "ceiling_auc": round(ceiling.auc(), 6),
        "ceiling_logloss": round(ceiling.log_loss(), 6),
    }
    path.with_name(path.name + SIDECAR_SUFFIX).write_text(json.dumps(meta, indent=2) + "\n")
    logger.info(
        "wrote %d rows to %s in %.1f s: positive rate %.4f, ceiling AUC %.4f (log loss %.4f)",
        rows,
        path,
        time.perf_counter() - started,
        meta["positive_rate"],
        meta["ceiling_auc"],
        meta["ceiling_logloss"],
    )
    return meta
