"""Shared command-line plumbing of the export CLIs: one-line errors, logging set-up."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are ONE line (``error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)  # noqa: T201 (CLI output)
        raise SystemExit(2)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(force=True, level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("torch", "onnxscript", "onnx_ir"):  # the exporter's own progress chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
