"""``python -m export RUN_DIR --repository models --name NAME [--version N] [--portable]``."""

from __future__ import annotations

import sys
from pathlib import Path

from export.cli import Parser, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m export", description=(
        "Export a training run (RUN_DIR/checkpoint.pt) to ONNX, verify it against torch and "
        "kernels/reference, and publish it as REPOSITORY/NAME/VERSION/{model.onnx,model.json}."))
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="training run directory")
    parser.add_argument("--repository", type=Path, required=True, help="model repository root (e.g. models)")
    parser.add_argument("--name", required=True, help="model name, e.g. dlrm-robe")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument("--portable", action="store_true",
                        help="standard ONNX ops only, no ai.robe nodes (every export already runs anywhere)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)

    from export.exporter import ExportError, ExportOptions, export_run

    try:
        options = ExportOptions(args.repository, args.name, args.version, args.portable)
        final = export_run(args.run_dir, options)
    except (ExportError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
