"""Memory-mapped ``.npy`` shards: a raw click log preprocessed once, then read by training without loading it.

Layout of a shard directory::

    DIR/meta.json
    DIR/{train,val,test}/dense.npy        float32 [N, num_dense]   log(1 + max(x, 0)), missing -> 0
    DIR/{train,val,test}/categorical.npy  int64   [N, num_cat]     raw ids, missing -> 0
    DIR/{train,val,test}/labels.npy       int8    [N]

Rows are split by position (time order), as DLRM splits Criteo: the first 80% train, the next 10%
validation, the last 10% test by default. Preprocessing streams the file block by block straight into
``np.lib.format.open_memmap`` arrays, so it never holds the file in memory.

Example:
    >>> shards = prepare(Path("../shared/data/criteo/criteo_15k.tsv.gz"))  # doctest: +SKIP
    >>> train = shards.split("train")
    >>> train.categorical.shape, train.dense.dtype
    ((12611, 26), dtype('float32'))
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from training.data.errors import DataError
from training.data.readers import SCHEMAS, DataFormat, read_batches, sniff_format
from training.data.text import DEFAULT_CHUNK_BYTES, count_lines

logger = logging.getLogger(__name__)

SHARD_VERSION = 1
META_FILE = "meta.json"
ARRAYS = {"dense": np.float32, "categorical": np.int64, "labels": np.int8}
CACHE_ENV = "ROBESERVE_CACHE_DIR"


class SplitName(StrEnum):
    """The three splits, in file order."""

    TRAIN = "train"
    VAL = "val"
    TEST = "test"


@dataclass(frozen=True)
class SplitFractions:
    """Shares of the rows for train, validation and test, in that (time) order.

    Args:
        train: share of the first rows, > 0.
        val: share of the rows after them.
        test: share of the last rows.
    """

    train: float = 0.8
    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        shares = (self.train, self.val, self.test)
        if min(shares) < 0 or self.train <= 0 or abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0, train > 0, summing to 1; got {shares}")

    @classmethod
    def parse(cls, text: str) -> SplitFractions:
        """From ``"0.8,0.1,0.1"``."""
        try:
            train, val, test = (float(part) for part in text.split(","))
        except ValueError as exc:
            raise ValueError(
                f"split must be three comma-separated fractions like 0.8,0.1,0.1, got {text!r}"
            ) from exc
        return cls(train, val, test)

    def sizes(self, rows: int) -> dict[SplitName, int]:
        """Rows per split; the test split takes the rounding remainder."""
        train, val = int(rows * self.train), int(rows * self.val)
        return {SplitName.TRAIN: train, SplitName.VAL: val, SplitName.TEST: rows - train - val}


@dataclass(frozen=True)
class Split:
    """One split's arrays, memory-mapped read-only.

    Args:
        name: train, val or test.
        dense: float32 [N, num_dense].
        categorical: int64 [N, num_categorical].
        labels: int8 [N].
    """

    name: SplitName
    dense: npt.NDArray[np.float32]
    categorical: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


class ShardSet:
    """A preprocessed shard directory (module docstring).

    Args:
        root: the directory.
        meta: its meta.json (dataset, format, num_dense, num_categorical, rows, source, ...).
    """

    def __init__(self, root: Path, meta: dict[str, Any]) -> None:
        self.root = root
        self.meta = meta

    @classmethod
    def open(cls, root: Path) -> ShardSet:
        """Open ``root``, raising DataError when it is not a complete shard directory."""
        meta_path = Path(root) / META_FILE
        if not meta_path.is_file():
            raise DataError(f"{root}: not a shard directory (no {META_FILE})")
        meta = json.loads(meta_path.read_text())
        if meta.get("version") != SHARD_VERSION:
            raise DataError(
                f"{root}: shard version {meta.get('version')!r}, expected {SHARD_VERSION}; preprocess again"
            )
        for split in SplitName:
            for name in ARRAYS:
                if not (Path(root) / split.value / f"{name}.npy").is_file():
                    raise DataError(f"{root}: missing {split.value}/{name}.npy")
        return cls(Path(root), meta)

    def split(self, name: str | SplitName) -> Split:
        """The memory-mapped arrays of split ``name`` (train, val or test)."""
        split = SplitName(name)
        arrays = {key: np.load(self.root / split.value / f"{key}.npy", mmap_mode="r") for key in ARRAYS}
        return Split(split, arrays["dense"], arrays["categorical"], arrays["labels"])

    def __repr__(self) -> str:
        return f"ShardSet({str(self.root)!r}, rows={self.meta.get('rows')})"


def transform_dense(raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
    """DLRM's dense transform: log(1 + x) with negatives clipped to 0 and missing (NaN) as 0."""
    return np.log1p(np.clip(np.nan_to_num(raw, nan=0.0), 0.0, None)).astype(np.float32)


def preprocess(
    path: Path,
    out: Path,
    data_format: DataFormat | None = None,
    fractions: SplitFractions = SplitFractions(),
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> ShardSet:
    """Read ``path`` once (format sniffed when not given) into a new shard directory ``out``."""
    data_format = sniff_format(path) if data_format is None else DataFormat(data_format)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: exists and is not empty; remove it or choose another output directory")
    header = 0 if data_format is DataFormat.CRITEO else 1
    rows = count_lines(path, chunk_bytes) - header
    if rows <= 0:
        raise DataError(f"{path}: no data rows")
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        meta = _write(path, temporary, data_format, fractions, rows, chunk_bytes)
        (temporary / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.rmdir()
        os.rename(temporary, out)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    logger.info("preprocessed %s into %s: %s", path, out, meta["rows"])
    return ShardSet.open(out)


def _write(
    path: Path, out: Path, data_format: DataFormat, fractions: SplitFractions, rows: int, chunk_bytes: int
) -> dict[str, Any]:
    schema = SCHEMAS[data_format]
    sizes = fractions.sizes(rows)
    shapes = {"dense": (len(schema.dense),), "categorical": (len(schema.categorical),), "labels": ()}
    arrays: dict[SplitName, dict[str, np.memmap]] = {}
    for split, size in sizes.items():
        (out / split.value).mkdir(parents=True)
        arrays[split] = {
            name: np.lib.format.open_memmap(
                out / split.value / f"{name}.npy", mode="w+", dtype=dtype, shape=(size, *shapes[name])
            )
            for name, dtype in ARRAYS.items()
        }
    bounds = np.cumsum([0, *sizes.values()])  # split k holds rows bounds[k] .. bounds[k + 1] - 1
    position = 0
    with tqdm(total=rows, unit="row", desc=f"preprocess {path.name}", disable=None) as progress:
        for batch in read_batches(path, data_format, chunk_bytes):
            if position + len(batch) > rows:
                raise DataError(f"{path}: changed while being read (more rows than counted)")
            columns: dict[str, npt.NDArray[Any]] = {
                "dense": transform_dense(batch.dense),
                "categorical": batch.categorical,
                "labels": batch.labels,
            }
            for index, split_arrays in enumerate(arrays.values()):
                _store(split_arrays, int(bounds[index]), int(bounds[index + 1]), position, columns)
            position += len(batch)
            progress.update(len(batch))
    if position != rows:
        raise DataError(f"{path}: changed while being read ({position} rows, counted {rows})")
    positives = {split.value: int(np.count_nonzero(arrays[split]["labels"])) for split in sizes}
    for split_arrays in arrays.values():
        for array in split_arrays.values():
            array.flush()
    return _meta(path, data_format, fractions, sizes, positives)


def _store(arrays: dict[str, np.memmap], first: int, stop: int, position: int,
           columns: dict[str, npt.NDArray[Any]]) -> None:
    """Copy the part of a batch starting at file row ``position`` that falls in rows [first, stop)."""
    size = len(columns["labels"])
    low, high = max(position, first), min(position + size, stop)
    if low < high:
        for name, values in columns.items():
            arrays[name][low - first:high - first] = values[low - position:high - position]


def _meta(
    path: Path,
    data_format: DataFormat,
    fractions: SplitFractions,
    sizes: dict[SplitName, int],
    positives: dict[str, int],
) -> dict[str, Any]:
    schema = SCHEMAS[data_format]
    stat = path.stat()
    meta: dict[str, Any] = {
        "version": SHARD_VERSION,
        "dataset": schema.dataset,
        "format": data_format.value,
        "num_dense": len(schema.dense),
        "num_categorical": len(schema.categorical),
        "dense_names": list(schema.dense),
        "categorical_names": list(schema.categorical),
        "dense_transform": "log1p(max(x, 0)), missing -> 0",
        "missing_id": 0,
        "split": asdict(fractions),
        "rows": {split.value: size for split, size in sizes.items()},
        "positives": positives,
        "source": {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
    }
    sidecar = path.with_name(path.name + ".meta.json")
    if sidecar.is_file():  # written by the synthetic generator: keep its parameters and ceiling AUC
        meta["dataset"] = "synthetic-criteo"
        meta["synthetic"] = json.loads(sidecar.read_text())
    return meta


def default_cache_dir() -> Path:
    """``$ROBESERVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/robeserve/shards`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "robeserve" / "shards"


def cache_key(path: Path, data_format: DataFormat, fractions: SplitFractions) -> str:
    """Shard cache key of a source file: its resolved path, size, mtime and the preprocessing options."""
    stat = path.stat()
    identity = {
        "path": str(path.resolve()),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "format": data_format.value,
        "split": asdict(fractions),
        "version": SHARD_VERSION,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def prepare(
    path: Path,
    cache_dir: Path | None = None,
    *,
    data_format: DataFormat | None = None,
    fractions: SplitFractions = SplitFractions(),
) -> ShardSet:
    """A ShardSet for ``path``: a shard directory as is, or a raw file preprocessed once into the cache.

    Args:
        path: a shard directory or a Criteo/Avazu file (format sniffed unless ``data_format`` is given).
        cache_dir: where preprocessed files go (default :func:`default_cache_dir`).
        data_format: the raw file's format, when sniffing is not wanted.
        fractions: the train/val/test split of a raw file.
    """
    path = Path(path)
    if path.is_dir():
        return ShardSet.open(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file or directory")
    data_format = sniff_format(path) if data_format is None else DataFormat(data_format)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / f"{path.name}-{cache_key(path, data_format, fractions)}"
    if (target / META_FILE).is_file():
        logger.info("using cached shards %s for %s", target, path)
        return ShardSet.open(target)
    try:
        return preprocess(path, target, data_format, fractions)
    except (OSError, DataError):
        if (target / META_FILE).is_file():  # another process finished the same shards first
            return ShardSet.open(target)
        raise
