"""Shards: preprocessing round trip, split sizes, memory maps, the prepare() cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from training.data.errors import DataError
from training.data.readers import DataFormat, read_batches
from training.data.shards import (
    ShardSet,
    SplitFractions,
    default_cache_dir,
    prepare,
    preprocess,
    transform_dense,
)
from training.data.synth_file import write_synth_criteo


def raw(path: Path):
    batches = list(read_batches(path))
    return (
        np.concatenate([b.labels for b in batches]),
        np.concatenate([b.dense for b in batches]),
        np.concatenate([b.categorical for b in batches]),
    )


def test_criteo_round_trip(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "criteo" / "criteo_15k.tsv.gz"
    shards = preprocess(source, tmp_path / "shards", chunk_bytes=300_000)  # several blocks across split edges
    labels, dense, categorical = raw(source)
    assert shards.meta["rows"] == {"train": 12611, "val": 1576, "test": 1577}
    assert shards.meta["dataset"] == "criteo" and shards.meta["num_dense"] == 13
    assert shards.meta["num_categorical"] == 26 and shards.meta["source"]["path"] == str(source.resolve())
    start = 0
    for name in ("train", "val", "test"):
        split = shards.split(name)
        end = start + len(split)
        assert isinstance(split.categorical, np.memmap) and not split.categorical.flags.writeable
        assert (split.dense.dtype, split.categorical.dtype, split.labels.dtype) == (
            np.float32,
            np.int64,
            np.int8,
        )
        np.testing.assert_array_equal(split.labels, labels[start:end])
        np.testing.assert_array_equal(split.categorical, categorical[start:end])
        np.testing.assert_array_equal(split.dense, transform_dense(dense[start:end]))
        assert shards.meta["positives"][name] == int(labels[start:end].sum())
        start = end
    assert start == 15764
    reopened = ShardSet.open(tmp_path / "shards")
    assert reopened.meta == shards.meta


def test_dense_transform() -> None:
    got = transform_dense(np.array([[np.nan, -1.0, 0.0, np.e - 1, 1e6]]))
    np.testing.assert_allclose(got, [[0.0, 0.0, 0.0, 1.0, np.log1p(1e6)]], rtol=1e-6)
    assert got.dtype == np.float32


def test_avazu_custom_split(shared_data: Path, tmp_path: Path) -> None:
    shards = preprocess(
        shared_data / "avazu" / "avazu_9k.csv.gz",
        tmp_path / "a",
        DataFormat.AVAZU,
        SplitFractions.parse("0.5,0.25,0.25"),
    )
    assert shards.meta["rows"] == {"train": 4499, "val": 2249, "test": 2251}
    train = shards.split("train")
    assert train.dense.shape == (4499, 0) and train.categorical.shape == (4499, 22)


def test_split_fraction_validation() -> None:
    for text in ("0.8,0.1", "a,b,c", "0.8,0.3,0.1", "0,0.5,0.5", "1.2,-0.1,-0.1"):
        with pytest.raises(ValueError):
            SplitFractions.parse(text)
    assert SplitFractions(1.0, 0.0, 0.0).sizes(7) == {"train": 7, "val": 0, "test": 0}


def test_prepare_caches_by_source_identity(shared_data: Path, tmp_path: Path) -> None:
    source = tmp_path / "sample.csv"
    source.write_bytes((shared_data / "criteo" / "criteo_sample.txt").read_bytes())
    cache = tmp_path / "cache"
    first = prepare(source, cache)
    assert first.meta["format"] == "criteo-csv" and sum(first.meta["rows"].values()) == 200
    stamp = (first.root / "meta.json").stat().st_mtime_ns
    again = prepare(source, cache)
    assert again.root == first.root and (again.root / "meta.json").stat().st_mtime_ns == stamp
    os.utime(source, ns=(stamp + 10**9, stamp + 10**9))
    changed = prepare(source, cache)
    assert changed.root != first.root
    assert prepare(first.root).root == first.root  # a shard directory is used as is
    assert prepare(source, cache, fractions=SplitFractions(0.5, 0.25, 0.25)).root not in (
        first.root,
        changed.root,
    )


def test_prepare_default_cache_from_environment(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROBESERVE_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    shards = prepare(shared_data / "criteo" / "criteo_sample.txt")
    assert shards.root.parent == tmp_path / "env-cache"


def test_synthetic_source_is_labelled(tmp_path: Path) -> None:
    path = tmp_path / "synth.tsv"
    write_synth_criteo(path, 500, seed=2)
    shards = prepare(path, tmp_path / "cache")
    assert shards.meta["dataset"] == "synthetic-criteo"
    assert (
        shards.meta["synthetic"]["ceiling_auc"]
        == json.loads(Path(f"{path}.meta.json").read_text())["ceiling_auc"]
    )


def test_errors(tmp_path: Path, shared_data: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        prepare(tmp_path / "nothing.tsv")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="not a shard directory"):
        prepare(tmp_path / "empty_dir")
    out = tmp_path / "taken"
    out.mkdir()
    (out / "file").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        preprocess(shared_data / "criteo" / "criteo_sample.txt", out)
    header_only = tmp_path / "header.csv"
    header_only.write_text((shared_data / "criteo" / "criteo_sample.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match="no data rows"):
        preprocess(header_only, tmp_path / "none")
    assert not list(tmp_path.glob(".none.tmp-*"))
