"""``python -m training {dlrm,noble} ...``: dispatch to the trainer of each model family."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m training {dlrm,noble} [options]  (add --help after the command for its options)"
    if not args or args[0] in ("-h", "--help"):
        print(usage)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "dlrm":
        from training.dlrm.cli import main as run
    elif command == "noble":
        from training.noble.cli import main as run
    else:
        print(f"error: unknown command {command!r}; {usage}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
