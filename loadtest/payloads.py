"""Request payloads for the load tests: real samples when the data is there, synthetic records otherwise.

- CTR (``/v1/models/{m}/predict``): records ``{"dense": [13 counts or null], "categorical": [26 hex
  strings or null]}`` from the real Criteo rows in ``criteo/criteo_15k.tsv.gz``, or synthetic Criteo-like
  records (the same value ranges and missing rates, ids drawn from a skewed distribution), or ``kaggle``
  records whose integer ids are known to the engine benchmark's kaggle-shape models (feature ``f`` knows
  ``1 .. rows[f]``; log-uniform, so small ids are frequent), so full tables read real rows.
- Localization: ``{"rssi": [520 dBm values, 100 = not seen]}`` from UJIIndoorLoc's validation file.

The data directory is ``$ROBESERVE_DATA`` when set, else ``../shared/data`` beside the repository (the
project never copies the data into itself).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

NUM_DENSE, NUM_CATEGORICAL, NUM_WAPS = 13, 26, 520
CRITEO_FILE = Path("criteo") / "criteo_15k.tsv.gz"
UJI_FILE = Path("ujiindoorloc") / "validationData.csv.gz"
Record = dict[str, list[Any]]


class Source(StrEnum):
    CRITEO = "criteo"  # real rows (falls back to synthetic when the file is absent)
    SYNTHETIC = "synthetic"
    KAGGLE = "kaggle"  # ids of the engine benchmark's kaggle-shape vocabulary


def data_dir() -> Path:
    override = os.environ.get("ROBESERVE_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


def _criteo_rows(path: Path) -> Iterator[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        for line in stream:
            fields = line.rstrip("\n").split("\t")
            if len(fields) == 1 + NUM_DENSE + NUM_CATEGORICAL:
                yield fields


def criteo_records(path: Path, limit: int = 4096) -> list[Record]:
    """Real Criteo rows as v1 CTR records (label dropped; empty fields become null)."""
    records: list[Record] = []
    for fields in _criteo_rows(path):
        dense = [int(v) if v else None for v in fields[1 : 1 + NUM_DENSE]]
        categorical = [v or None for v in fields[1 + NUM_DENSE :]]
        records.append({"dense": dense, "categorical": categorical})
        if len(records) == limit:
            break
    return records


def synthetic_records(count: int, seed: int = 0) -> list[Record]:
    """Criteo-like records: heavy-tailed counts, 8-hex-digit ids from a skewed vocabulary, ~10% missing."""
    rng = np.random.default_rng(seed)
    counts = np.floor(np.expm1(rng.exponential(2.0, size=(count, NUM_DENSE)))).astype(np.int64)
    vocab = (1 + np.arange(NUM_CATEGORICAL, dtype=np.int64)[None, :]) * 1000
    ids = np.floor(np.exp(rng.random((count, NUM_CATEGORICAL)) * np.log(vocab))).astype(np.int64)
    hashes = (ids * 2654435761 + np.arange(NUM_CATEGORICAL)) % (1 << 32)
    missing = rng.random((count, NUM_DENSE + NUM_CATEGORICAL)) < 0.1
    records: list[Record] = []
    for i in range(count):
        dense = [None if missing[i, j] else int(counts[i, j]) for j in range(NUM_DENSE)]
        categorical = [None if missing[i, NUM_DENSE + j] else f"{hashes[i, j]:08x}"
                       for j in range(NUM_CATEGORICAL)]
        records.append({"dense": dense, "categorical": categorical})
    return records


def vocabulary_records(rows: Sequence[int], count: int, seed: int = 0) -> list[Record]:
    """Records whose feature ``f`` ids are log-uniform over ``1 .. rows[f]`` (the engine's inputs)."""
    rng = np.random.default_rng(seed)
    limits = np.asarray(rows, dtype=np.float64)
    picks = np.exp(rng.random((count, len(rows))) * np.log(limits))  # in [1, rows)
    ids = np.minimum(np.floor(picks), limits).astype(np.int64)
    counts = rng.integers(0, 1000, size=(count, NUM_DENSE))
    return [{"dense": counts[i].tolist(), "categorical": ids[i].tolist()} for i in range(count)]


def ctr_records(source: Source, count: int = 4096, seed: int = 0) -> list[Record]:
    path = data_dir() / CRITEO_FILE
    if source is Source.KAGGLE:
        from loadtest.shapes import KAGGLE_ROWS

        return vocabulary_records(KAGGLE_ROWS, count, seed)
    if source is Source.CRITEO and path.is_file():
        return criteo_records(path, count)
    return synthetic_records(count, seed)


def wifi_records(limit: int = 1111) -> list[Record]:
    """UJIIndoorLoc validation fingerprints as v1 localization records (empty when the file is absent)."""
    path = data_dir() / UJI_FILE
    if not path.is_file():
        return []
    with gzip.open(path, "rt", encoding="utf-8") as stream:
        rows = csv.reader(io.StringIO(stream.read()))
        next(rows)  # header
        return [{"rssi": [int(float(v)) for v in row[:NUM_WAPS]]}
                for row, _ in zip(rows, range(limit), strict=False)]


def predict_bodies(records: Sequence[Record], instances: int, count: int = 64) -> list[str]:
    """``count`` pre-encoded ``{"instances": [...]}`` bodies of ``instances`` records each (cycling)."""
    if not records:
        raise ValueError("no records to build requests from")
    bodies = []
    for start in range(0, count * instances, instances):
        chunk = [records[(start + i) % len(records)] for i in range(instances)]
        bodies.append(json.dumps({"instances": chunk}, separators=(",", ":")))
    return bodies


def ctr_tensors(records: Sequence[Record]) -> dict[str, np.ndarray]:
    """The model inputs the service builds from CTR records (null dense -> 0, hex ids -> ints, null -> 0)."""
    dense = np.asarray([[0.0 if v is None else v for v in r["dense"]] for r in records], dtype=np.float32)
    categorical = np.asarray([[0 if v is None else (int(v, 16) if isinstance(v, str) else int(v))
                               for v in r["categorical"]] for r in records], dtype=np.int64)
    return {"dense": dense, "categorical": categorical}
