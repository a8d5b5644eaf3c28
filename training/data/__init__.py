"""Data pipelines: streaming readers (Criteo, Avazu, UJIIndoorLoc), .npy shards, a synthetic Criteo generator.

- :mod:`~training.data.readers`: Criteo TSV / header CSV and Avazu CSV, gzip or plain, in batches.
- :mod:`~training.data.shards`: ``ShardSet`` (memory-mapped train/val/test arrays) and ``prepare``.
- :mod:`~training.data.uji`: ``load_uji`` for the UJIIndoorLoc WiFi fingerprints.
- :mod:`~training.data.synth` / :mod:`~training.data.synth_file`: the synthetic Criteo-like log.
- :mod:`~training.data.stats`: per-feature statistics; ``python -m training.data`` is the CLI.
"""

from training.data.errors import (
    BadHexError,
    BadNumberError,
    ColumnCountError,
    DataError,
    HeaderError,
    MalformedRowError,
    UnknownFormatError,
)
from training.data.readers import Batch, DataFormat, read_batches, sniff_format
from training.data.shards import ShardSet, Split, SplitFractions, prepare, preprocess
from training.data.synth import SynthConfig, SyntheticCriteo
from training.data.uji import UjiData, load_uji

__all__ = [
    "BadHexError",
    "BadNumberError",
    "Batch",
    "ColumnCountError",
    "DataError",
    "DataFormat",
    "HeaderError",
    "MalformedRowError",
    "ShardSet",
    "Split",
    "SplitFractions",
    "SynthConfig",
    "SyntheticCriteo",
    "UjiData",
    "UnknownFormatError",
    "load_uji",
    "prepare",
    "preprocess",
    "read_batches",
    "sniff_format",
]
