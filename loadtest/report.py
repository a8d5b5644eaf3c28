"""Small helpers shared by the benchmark reports: tables, sizes, JSON and PNG output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table whose columns line up in a terminal too.

    Example:
        >>> print(table(["a", "b"], [[1, "x"]]))
        | a | b |
        |--:|--:|
        | 1 | x |
    """
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)


def rate(value: float) -> str:
    """Samples per second with thousands separators: 1234567.8 -> ``1,234,568``."""
    return f"{value:,.0f}"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def size(num_bytes: float) -> str:
    """Binary size: 2255 MiB, 1.9 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:,.1f} {unit}" if unit == "GiB" else f"{num_bytes / scale:,.0f} {unit}"
    return f"{num_bytes:.0f} B"


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def last_json(text: str) -> dict[str, Any]:
    """The last line of ``text`` that parses as a JSON object (a probe's answer after any log lines)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    raise ValueError(f"no JSON object in the output: {text[-200:]!r}")
