"""Readers of the click logs: real samples, a Python reference parse, gzip vs plain, malformed rows."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data.errors import (
    BadHexError,
    BadNumberError,
    ColumnCountError,
    DataError,
    HeaderError,
    MalformedRowError,
    UnknownFormatError,
)
from training.data.parse import hash_string
from training.data.readers import DataFormat, read_batches, sniff_format
from training.data.tsv import format_criteo_rows

CRITEO_HEADER = ",".join(["label", *(f"I{i}" for i in range(1, 14)), *(f"C{i}" for i in range(1, 27))])


def read_all(path: Path, data_format: DataFormat | None = None, chunk_bytes: int = 8 << 20):
    batches = list(read_batches(path, data_format, chunk_bytes))
    return (
        np.concatenate([b.labels for b in batches]),
        np.concatenate([b.dense for b in batches]),
        np.concatenate([b.categorical for b in batches]),
    )


def criteo_line(label: str = "0", dense: str = "1", hexes: str = "68fd1e64", sep: str = "\t") -> str:
    return sep.join([label, *[dense] * 13, *[hexes] * 26]) + "\n"


def reference_criteo(lines: list[list[str]]):
    """The slow, obvious parse the vectorised reader must match exactly."""
    labels = np.array([int(r[0]) for r in lines], dtype=np.int8)
    dense = np.array([[float(x) if x else np.nan for x in r[1:14]] for r in lines])
    categorical = np.array([[int(x, 16) if x else 0 for x in r[14:]] for r in lines], dtype=np.int64)
    return labels, dense, categorical


def test_criteo_15k_counts_and_values(shared_data: Path) -> None:
    path = shared_data / "criteo" / "criteo_15k.tsv.gz"
    labels, dense, categorical = read_all(path)
    assert sniff_format(path) is DataFormat.CRITEO
    assert labels.shape == (15764,) and dense.shape == (15764, 13) and categorical.shape == (15764, 26)
    assert round(float(labels.mean()), 3) == 0.220
    with gzip.open(path, "rt") as stream:
        expected = reference_criteo([line.rstrip("\n").split("\t") for line in stream])
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(dense, expected[1])
    np.testing.assert_array_equal(categorical, expected[2])


def test_criteo_header_csv_sample(shared_data: Path) -> None:
    path = shared_data / "criteo" / "criteo_sample.txt"
    assert sniff_format(path) is DataFormat.CRITEO_CSV
    labels, dense, categorical = read_all(path)
    with path.open() as stream:
        rows = list(csv.reader(stream))[1:]
    assert len(labels) == len(rows) == 200
    expected = reference_criteo(rows)
    np.testing.assert_array_equal(labels, expected[0])
    np.testing.assert_array_equal(dense, expected[1])  # fields like "260.0" and "-1"
    np.testing.assert_array_equal(categorical, expected[2])


def test_avazu_9k_counts_and_hashes(shared_data: Path) -> None:
    path = shared_data / "avazu" / "avazu_9k.csv.gz"
    assert sniff_format(path) is DataFormat.AVAZU
    labels, dense, categorical = read_all(path)
    assert labels.shape == (8999,) and dense.shape == (8999, 0) and categorical.shape == (8999, 22)
    assert round(float(labels.mean()), 3) == 0.174
    with gzip.open(path, "rt") as stream:
        rows = list(csv.reader(stream))[1:]
    np.testing.assert_array_equal(categorical, [[hash_string(x) for x in row[2:]] for row in rows])
    assert categorical.min() > 0 and categorical.max() < 1 << 62


def test_hash_is_pinned() -> None:
    # Pinned values: changing the hash silently would orphan every trained Avazu model.
    assert hash_string("1fbe01fe") == 472037606878443968
    assert hash_string("14102100") == 3374260159573903961
    assert hash_string("") == 0


def test_gzip_plain_and_chunking_agree(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "criteo" / "criteo_15k.tsv.gz"
    plain = tmp_path / "plain.data"  # no telling suffix: gzip is sniffed from the magic bytes
    plain.write_bytes(gzip.decompress(source.read_bytes()))
    reference = read_all(source)
    for got in (read_all(plain), read_all(plain, chunk_bytes=4093), read_all(source, chunk_bytes=100_000)):
        for a, b in zip(got, reference, strict=True):
            np.testing.assert_array_equal(a, b)


def test_line_endings_short_and_long_hex(write_text) -> None:
    text = (
        criteo_line(hexes="a")
        + criteo_line(label="1", dense="-1", hexes="00ff").replace("\n", "\r\n")
        + criteo_line(dense="", hexes="0123456789abcde").rstrip("\n")
    )  # no newline at the end
    labels, dense, categorical = read_all(write_text("t.tsv", text), DataFormat.CRITEO)
    np.testing.assert_array_equal(labels, [0, 1, 0])
    np.testing.assert_array_equal(dense[:2, 0], [1.0, -1.0])
    assert np.isnan(dense[2]).all()
    np.testing.assert_array_equal(categorical[:, 0], [10, 255, 0x0123456789ABCDE])


@pytest.mark.parametrize(
    ("text", "error", "line"),
    [
        (criteo_line() * 2 + "0\t1\t2\n", ColumnCountError, 3),
        (criteo_line() + criteo_line().replace("\t", "\t\t", 1), ColumnCountError, 2),
        (criteo_line() * 4 + criteo_line(hexes="68fd1e6z"), BadHexError, 5),
        (criteo_line(hexes="0123456789abcdef"), BadHexError, 1),
        (criteo_line() + criteo_line(dense="abc"), BadNumberError, 2),
        (criteo_line() + criteo_line(dense="1-2"), BadNumberError, 2),
        (criteo_line() + criteo_line(dense="-"), BadNumberError, 2),
        (criteo_line(label="2"), BadNumberError, 1),
        (criteo_line() + "\n", ColumnCountError, 2),
        (criteo_line() + criteo_line(dense="9" * 5000), BadNumberError, 2),
    ],
    ids=[
        "short-row",
        "long-row",
        "bad-hex",
        "hex-too-long",
        "non-numeric",
        "inner-minus",
        "lone-minus",
        "bad-label",
        "blank-line",
        "huge-field",
    ],
)
def test_malformed_criteo_rows_name_file_and_line(write_text, text: str, error: type, line: int) -> None:
    path = write_text("bad.tsv", text)
    with pytest.raises(error) as caught:
        read_all(path, DataFormat.CRITEO)
    assert isinstance(caught.value, MalformedRowError)
    assert caught.value.line == line
    assert f"{path}: line {line}:" in str(caught.value)


def test_malformed_row_found_past_the_first_block(write_text) -> None:
    path = write_text("late.tsv", criteo_line() * 3000 + criteo_line(dense="x1"))
    with pytest.raises(BadNumberError, match="line 3001"):
        read_all(path, DataFormat.CRITEO, chunk_bytes=10_000)


def test_header_csv_errors(write_text) -> None:
    good = CRITEO_HEADER + "\n" + criteo_line(sep=",")
    with pytest.raises(BadHexError, match="line 3"):
        read_all(write_text("a.csv", good + criteo_line(sep=",", hexes="xyz")))
    with pytest.raises(HeaderError, match="C26"):
        read_all(write_text("b.csv", good.replace(",C26", ",C99")))
    with pytest.raises(ColumnCountError, match="line 2"):
        read_all(write_text("c.csv", CRITEO_HEADER + "\n0,1,2\n"))


def test_avazu_errors(shared_data: Path, write_text) -> None:
    header = (shared_data / "avazu" / "avazu_sample.txt").read_text().splitlines()[0]
    row = "1,0," + ",".join(["5"] * (header.count(",") - 1))
    assert read_all(write_text("ok.csv", f"{header}\n{row}\n"))[2].shape == (1, 22)
    with pytest.raises(ColumnCountError, match="line 3"):
        read_all(write_text("a.csv", f"{header}\n{row}\n{row},extra\n"))
    with pytest.raises(BadNumberError, match="line 2"):
        read_all(write_text("b.csv", f"{header}\n{row.replace('1,0,', '1,yes,', 1)}\n"))


def test_sniffing(write_text, tmp_path: Path) -> None:
    assert sniff_format(write_text("x.tsv", criteo_line())) is DataFormat.CRITEO
    assert sniff_format(write_text("y.csv", CRITEO_HEADER + "\n")) is DataFormat.CRITEO_CSV
    gz = tmp_path / "day_0.gz"
    gz.write_bytes(gzip.compress(criteo_line().encode()))
    assert sniff_format(gz) is DataFormat.CRITEO
    with pytest.raises(UnknownFormatError):
        sniff_format(write_text("notes.txt", "hello\n"))
    with pytest.raises(DataError, match="no such file"):
        sniff_format(tmp_path / "missing.tsv")


rows_strategy = st.integers(min_value=1, max_value=40).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 1), min_size=n, max_size=n),
        st.lists(
            st.lists(st.one_of(st.none(), st.integers(-5, 10**12)), min_size=13, max_size=13),
            min_size=n,
            max_size=n,
        ),
        st.lists(st.lists(st.integers(0, (1 << 32) - 1), min_size=26, max_size=26), min_size=n, max_size=n),
    )
)


@settings(max_examples=40, deadline=None)
@given(rows_strategy)
def test_tsv_writer_round_trips_through_reader(tmp_path_factory, rows) -> None:
    labels = np.array(rows[0], dtype=np.int8)
    dense = np.array([[np.nan if x is None else float(x) for x in r] for r in rows[1]])
    categorical = np.array(rows[2], dtype=np.int64)
    data = format_criteo_rows(labels, dense, categorical)
    expected = "".join(
        "\t".join(
            [
                str(label),
                *("" if x is None else str(x) for x in d),
                *("" if c == 0 else f"{c:08x}" for c in cs),
            ]
        )
        + "\n"
        for label, d, cs in zip(*rows, strict=True)
    )
    assert data == expected.encode()
    path = tmp_path_factory.mktemp("rt") / "rows.tsv"
    path.write_bytes(data)
    got = read_all(path, DataFormat.CRITEO)
    np.testing.assert_array_equal(got[0], labels)
    np.testing.assert_array_equal(got[1], dense)
    np.testing.assert_array_equal(got[2], categorical)


def test_gzip_stream_is_not_required_to_be_named_gz(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as stream:
        stream.write(criteo_line().encode() * 3)
    path = tmp_path / "criteo.tsv"
    path.write_bytes(buffer.getvalue())
    assert read_all(path)[0].shape == (3,)
