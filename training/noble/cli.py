"""``python -m training noble --data DIR --out DIR ...``: train a NObLe ensemble on UJIIndoorLoc.

Writes ``DIR/checkpoint.pt`` (layout in ``training.noble.train``) and ``DIR/metrics.json``: the standard
validation file's metrics with the model's own decode (``--decode``, saved in the checkpoint and
exported) at the top level (``mean_error_m``, ``median_error_m``, ``p75_error_m``, ``p95_error_m``,
``building_hit``, ``floor_hit``, ``evaal_error_m``), every decode kind under ``decodes``,
``parameter_bytes``, ``train_seconds`` and the configuration. With ``--holdout-users`` the listed
training users are left out of training and their rows are scored too (``holdout``).

``--from-results PATH`` trains exactly the configuration a results page reports (``noble.json``'s
``served`` entry, chosen by cross-validation, with its decode), seed ``--seed``: seed 0 is the model
whose validation figures the page lists as served.

``--demo`` trains that configuration from ``docs/results/noble.json`` of this repository (a quick 1-net
fallback when the file is absent) on ``--data`` or, without it, on ``../shared/data/ujiindoorloc`` beside
the repository, or, when that is absent too, on a small synthetic UJIIndoorLoc-format set written into
the run directory (logged as a warning).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NoReturn

import torch

from training.dlrm.checkpoint import write_metrics
from training.noble.data import UjiSplit, load_splits, user_holdout, write_synthetic_uji
from training.noble.decoding import Decode, DecodeConfig
from training.noble.metrics import evaluate
from training.noble.model import NobleLocalizer
from training.noble.selection import chosen_configs
from training.noble.train import NobleTrainConfig, predict, save_noble, train_noble

logger = logging.getLogger(__name__)

VERIFY_ROWS = 256  # validation rows kept in the checkpoint so an export can be verified without the data
DEMO_MEMBERS = 1
DEMO_EPOCHS = 15
SHARED_UJI = Path(__file__).resolve().parents[3] / "shared" / "data" / "ujiindoorloc"
RESULTS_JSON = Path(__file__).resolve().parents[2] / "docs" / "results" / "noble.json"


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


class UsageError(ValueError):
    """A command-line mistake, reported as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    defaults = NobleTrainConfig()
    parser = _Parser(prog="python -m training noble", description="Train a NObLe ensemble on UJIIndoorLoc.")
    add = parser.add_argument
    add("--data", type=Path, help="UJIIndoorLoc folder (trainingData.csv[.gz]); required unless --demo")
    add("--demo", action="store_true", help="quick demo model (see the module docstring)")
    add("--out", type=Path, required=True, help="run directory to write")
    add("--cell-sizes", type=_floats, default=defaults.cell_sizes, help="metres, finest first, e.g. 2,4,8")
    add("--members", type=int, help=f"ensemble size (default {defaults.members}, demo {DEMO_MEMBERS})")
    add("--epochs", type=int, help=f"epochs per member (default {defaults.epochs}, demo {DEMO_EPOCHS})")
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--lr", type=float, default=defaults.lr)
    add("--weight-decay", type=float, default=defaults.weight_decay)
    add("--offset-db", type=float, default=defaults.offset_db, help="RSSI offset augmentation (dB)")
    add("--drop-prob", type=float, default=defaults.drop_prob, help="access point dropping augmentation")
    add("--hidden", type=_ints, default=defaults.hidden, help="hidden widths, e.g. 512,512")
    add("--dropout", type=float, default=defaults.dropout)
    add("--relative-db", type=float, default=defaults.relative_db,
        help="span of the gain-free relative input channel in dB (0: powed RSSI only)")
    add("--top-k", type=int, default=defaults.top_k,
        help="cells averaged by the topk, plan and building decodes")
    add("--decode", choices=[d.value for d in Decode], default=Decode.PLAN.value,
        help="the model's decode (training.noble.decoding)")
    add("--snap-m", type=float, default=None,
        help="plan and building decodes: snap beyond this distance to the floor's occupied cells "
             "(default: finest cell)")
    add("--from-results", type=Path,
        help="train the configuration (and decode) a results noble.json reports as served")
    add("--seed", type=int, default=defaults.seed)
    add("--holdout-users", type=_ints, default=(), help="training users to hold out, e.g. 1,11")
    add("--threads", type=int, default=1,
        help="torch CPU threads (default 1: this small MLP gains little from more, and on a busy machine "
             "spinning threads made training several times slower)")
    add("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def scores(model: NobleLocalizer, split: UjiSplit) -> dict[str, dict[str, float]]:
    """Metrics on ``split`` of the model's decode (``served``) and of every decode kind with the
    model's top-k and resolutions (plan: snapping beyond the finest cell)."""
    decodes = {"served": model.decode}
    for kind in Decode:
        snap = model.cell_sizes[0] if kind in (Decode.PLAN, Decode.BUILDING) else None
        decodes[kind.value] = DecodeConfig(kind, model.decode.top_k, model.decode.cell_sizes, snap)
    truth = split.truth()
    return {name: evaluate(predict(model, split.rssi, d), truth).to_dict() for name, d in decodes.items()}


def reported_config(path: Path) -> tuple[NobleTrainConfig, DecodeConfig]:
    """The served configuration of a results ``noble.json`` (``served``, else the CV choice)."""
    try:
        result = json.loads(path.read_text())
        chosen = result.get("served") or result["cv"]["chosen"]
        return chosen_configs(chosen)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} holds no chosen NObLe configuration ({exc})") from exc


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return Path(args.data)
    if not args.demo:
        raise UsageError("--data is required (or --demo)")
    if SHARED_UJI.is_dir():
        return SHARED_UJI
    logger.warning("%s not found: the demo model is trained on synthetic fingerprints", SHARED_UJI)
    return write_synthetic_uji(Path(args.out) / "synthetic-data", seed=args.seed)


def run(args: argparse.Namespace) -> dict[str, Any]:
    defaults = NobleTrainConfig()
    reported = None
    if args.from_results is not None:
        reported = reported_config(Path(args.from_results))
    elif args.demo and RESULTS_JSON.is_file():
        try:
            reported = reported_config(RESULTS_JSON)
        except UsageError as exc:
            logger.warning("%s: the quick demo configuration is used instead", exc)
    if reported is not None:
        config, decode = replace(reported[0], seed=args.seed), reported[1]
        logger.info("reported configuration: %s, decode %s", config, decode.label())
    else:
        quick = DEMO_MEMBERS if args.demo else defaults.members
        members = args.members if args.members is not None else quick
        epochs = args.epochs if args.epochs is not None else DEMO_EPOCHS if args.demo else defaults.epochs
        config = NobleTrainConfig(
            cell_sizes=args.cell_sizes, members=members, epochs=epochs, batch_size=args.batch_size,
            lr=args.lr, weight_decay=args.weight_decay, offset_db=args.offset_db, drop_prob=args.drop_prob,
            hidden=args.hidden, dropout=args.dropout, top_k=args.top_k, seed=args.seed,
            relative_db=args.relative_db)
        snap = args.snap_m if args.snap_m is not None else config.cell_sizes[0]
        decode = DecodeConfig(Decode(args.decode), args.top_k, None,
                              snap if args.decode in ("plan", "building") else None)
    args.data = _data_dir(args)
    train, validation = load_splits(args.data)
    holdout = None
    if args.holdout_users:
        train, holdout = user_holdout(train, args.holdout_users)
    started = time.perf_counter()
    model = train_noble(train, config, decode)
    seconds = time.perf_counter() - started
    decodes = scores(model, validation)
    metrics: dict[str, Any] = {
        **decodes["served"], "decodes": decodes, "decode": decode.to_dict(), "method": "noble",
        "dataset": "ujiindoorloc",
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.state_dict().values()),
        "train_seconds": round(seconds, 1), "train_rows": len(train), "config": asdict(config)}
    if holdout is not None:
        metrics["holdout"] = {"users": list(args.holdout_users), "rows": len(holdout),
                              **scores(model, holdout)}
    data = {"path": str(args.data.resolve()), "dataset": "ujiindoorloc",
            "rows": {"train": len(train), "validation": len(validation)},
            "verify_rssi": validation.rssi[:VERIFY_ROWS].copy()}
    save_noble(args.out, model, data, metrics, config)
    write_metrics(args.out, metrics)
    return metrics


def main(argv: list[str]) -> int:
    """CLI entry (``training.__main__`` dispatches ``noble`` here)."""
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(force=True, level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        metrics = run(args)
    except (ValueError, OSError) as error:
        logger.debug("user error", exc_info=True)
        sys.stderr.write(f"error: {error}\n")
        return 2
    logger.info("validation (model's decode): mean %.2f m, median %.2f m, building %.4f, floor %.4f -> %s",
                metrics["mean_error_m"], metrics["median_error_m"], metrics["building_hit"],
                metrics["floor_hit"], args.out)
    return 0
