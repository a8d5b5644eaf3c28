"""``python -m training.data {preprocess,prepare,synth-criteo,stats}``: data preparation commands.

python -m training.data preprocess --format criteo --input FILE --out DIR [--split 0.8,0.1,0.1]
python -m training.data prepare FILE [--cache-dir DIR]
python -m training.data synth-criteo --rows N --out PATH --seed S [--scale X ...]
python -m training.data stats PATH [PATH ...] [--json] [--plot PNG] [--dependencies]
python -m training.data oracle-plot JSON [JSON ...] --labels A,B --out PNG
python -m training.data oracle --data PATH --budget-bytes B [B ...] [--compression X ...] --dim D --out JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import NoReturn

from training.data.errors import DataError
from training.data.readers import DataFormat
from training.data.shards import SplitFractions, prepare, preprocess
from training.data.stats import (
    DEPENDENCY_ROWS,
    collect_stats,
    format_stats,
    plot_comparison,
    plot_rank_frequency,
)
from training.data.synth_config import SynthConfig
from training.data.synth_file import DEFAULT_CHUNK_ROWS, write_synth_criteo

logger = logging.getLogger("training.data")

PLOT_FEATURES = "C3,C4,C10,C15"


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end with one line, ``error: ...``, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _fractions(text: str) -> SplitFractions:
    try:
        return SplitFractions.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training.data", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    formats = [f.value for f in DataFormat]

    pre = commands.add_parser("preprocess", help="raw Criteo/Avazu file -> memory-mapped .npy shards")
    pre.add_argument("--format", choices=formats, help="default: told from the file's first line")
    pre.add_argument("--input", type=Path, required=True)
    pre.add_argument("--out", type=Path, required=True)
    pre.add_argument("--split", type=_fractions, default=SplitFractions(), help="default 0.8,0.1,0.1")

    prep = commands.add_parser(
        "prepare", help="shards of a raw file in the cache (made once); prints the directory"
    )
    prep.add_argument("path", type=Path)
    prep.add_argument("--cache-dir", type=Path)

    synth = commands.add_parser(
        "synth-criteo", help="write a synthetic Criteo-like TSV with a planted label model"
    )
    synth.add_argument("--rows", type=int, required=True)
    synth.add_argument("--out", type=Path, required=True, help="output path; gzip when it ends in .gz")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS)
    synth.add_argument(
        "--null-control",
        action="store_true",
        help="generator v1 (no rarity decay, head shares or aliases): the null control, same bytes as before",
    )
    for item in dataclasses.fields(SynthConfig):
        name = f"--{item.name.replace('_', '-')}"
        if isinstance(item.default, bool):
            synth.add_argument(name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"default {item.default} (v2), off with --null-control")
        else:
            synth.add_argument(name, type=type(item.default), default=None, help=f"default {item.default}")

    oracle = commands.add_parser(
        "oracle", help="AUC of the planted logits of a synth-criteo file, whole and per memory budget"
    )
    oracle.add_argument("--data", type=Path, required=True, help="a file written by synth-criteo")
    oracle.add_argument("--budget-bytes", type=int, nargs="+", default=[], metavar="B")
    oracle.add_argument("--compression", type=float, nargs="+", default=[], metavar="X",
                        help="budgets as ratios of the full-table bytes (values seen in train * dim * 4)")
    oracle.add_argument("--dim", type=int, required=True)
    oracle.add_argument("--split", default="test", choices=["train", "val", "test"])
    oracle.add_argument("--out", type=Path, required=True, help="JSON output")

    oplot = commands.add_parser("oracle-plot", help="plot oracle tables (JSON from `oracle`) side by side")
    oplot.add_argument("tables", type=Path, nargs="+")
    oplot.add_argument("--labels", help="comma-separated, one per table (default: file names)")
    oplot.add_argument("--out", type=Path, required=True)

    stats = commands.add_parser("stats", help="per-feature cardinality, skew, missing rates, positive rate")
    stats.add_argument("paths", type=Path, nargs="+")
    stats.add_argument("--format", choices=formats)
    stats.add_argument("--json", action="store_true", help="print JSON instead of tables")
    stats.add_argument("--plot", type=Path, help="write a rank-frequency PNG comparing the files")
    stats.add_argument("--plot-features", default=PLOT_FEATURES)
    stats.add_argument("--plot-compare", type=Path, metavar="PNG",
                       help="top-value shares, dependency rates (--dependencies) vs the LAST file")
    stats.add_argument("--labels", help="comma-separated names of the files in plots (default: file names)")
    stats.add_argument("--dependencies", action="store_true",
                       help="also the dependency rates between features (first --dependency-rows rows)")
    stats.add_argument("--dependency-rows", type=int, default=DEPENDENCY_ROWS,
                       help=f"default {DEPENDENCY_ROWS}, the real Criteo sample's size")
    return parser


def _synth(args: argparse.Namespace) -> None:
    given = {
        item.name: getattr(args, item.name)
        for item in dataclasses.fields(SynthConfig)
        if getattr(args, item.name) is not None
    }
    config = SynthConfig.null_control(**given) if args.null_control else SynthConfig(**given)
    started = time.perf_counter()
    meta = write_synth_criteo(args.out, args.rows, args.seed, config, args.chunk_rows)
    print(
        f"wrote {args.rows} rows to {args.out} in {time.perf_counter() - started:.1f} s; positive rate "
        f"{meta['positive_rate']:.4f}; ceiling AUC {meta['ceiling_auc']:.4f}"
    )


def _stats(args: argparse.Namespace) -> None:
    dependency_rows = args.dependency_rows if args.dependencies else 0
    all_stats = [collect_stats(path, args.format, dependency_rows) for path in args.paths]
    if args.json:
        print(json.dumps([stats.to_dict() for stats in all_stats], indent=2))
    else:
        print("\n\n".join(format_stats(stats) for stats in all_stats))
    labels = _labels(args.labels, args.paths)
    if args.plot:
        plot_rank_frequency(all_stats, labels, args.plot_features.split(","), args.plot)
        logger.info("wrote %s", args.plot)
    if args.plot_compare:
        plot_comparison(all_stats, labels, args.plot_compare)
        logger.info("wrote %s", args.plot_compare)


def _labels(text: str | None, paths: list[Path]) -> list[str]:
    if text is None:
        return [path.name for path in paths]
    labels = text.split(",")
    if len(labels) != len(paths):
        raise ValueError(f"--labels names {len(labels)} files, {len(paths)} given")
    return labels


def _oracle_plot(args: argparse.Namespace) -> None:
    from training.data.oracle import plot_oracle

    tables = [json.loads(path.read_text()) for path in args.tables]
    plot_oracle(tables, _labels(args.labels, args.tables), args.out)
    print(f"wrote {args.out}")


def _oracle(args: argparse.Namespace) -> None:
    from training.data.oracle import oracle_table

    if not args.budget_bytes and not args.compression:
        raise ValueError("give --budget-bytes or --compression (or both)")
    table = oracle_table(args.data, args.budget_bytes, args.dim, args.split, compressions=args.compression)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=2) + "\n")
    print(f"ceiling AUC {table['ceiling_auc']:.4f}, no per-value effects {table['no_per_value_auc']:.4f}, "
          f"full tables {table['full_table_bytes']} bytes ({table['distinct_train_values']} values x "
          f"{args.dim} x 4)")
    for row in table["rows"]:
        print(f"  {row['budget_bytes']:>12} bytes ({row['compression']:g}x): {row['values_kept']:>9} values, "
              f"AUC {row['auc']:.4f}")


def _run(args: argparse.Namespace) -> None:
    if args.command == "preprocess":
        shards = preprocess(args.input, args.out, args.format, args.split)
        print(f"wrote {shards.root}: {shards.meta['rows']}")
    elif args.command == "prepare":
        print(prepare(args.path, args.cache_dir).root)
    elif args.command == "synth-criteo":
        _synth(args)
    elif args.command == "oracle":
        _oracle(args)
    elif args.command == "oracle-plot":
        _oracle_plot(args)
    else:
        _stats(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler()
    if args.log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(force=True, level=args.log_level, handlers=[handler])
    try:
        _run(args)
    except (DataError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
