"""The GPU benchmark's report, without torch: ``python -m loadtest.gpu_report [--out DIR]``.

Merges the per-shape files ``DIR/gpu_bench_<shape>.json`` written by ``python -m loadtest.gpu_bench run``
into ``DIR/gpu_bench.json`` (the run format of ``docs/benchmarks/engine.json``) and prints the ratio table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.report import rate, ratio, size, table, write_json

RESULT_PREFIX = "gpu_bench_"
MERGED = "gpu_bench.json"


def merge(out_dir: Path) -> dict[str, Any]:
    """Every shape's results in out_dir, merged into out_dir/gpu_bench.json (engine.json's run format)."""
    shapes = [json.loads(p.read_text()) for p in sorted(out_dir.glob(f"{RESULT_PREFIX}*.json"))]
    provider = "pytorch-cuda"
    runs = []
    for result in shapes:
        provider = f"pytorch-{result['config']['device']}"
        for record in result["runs"]:
            runs.append({"provider": provider, "device": result["hardware"]["device"], **record})
    merged = {"provider": provider, "shapes": shapes, "runs": runs}
    write_json(out_dir / MERGED, merged)
    return merged


def ratio_table(merged: dict[str, Any]) -> str:
    """The headline: samples/s of each variant and its ratio to full tables, per shape, ids and batch."""
    lines = []
    for result in merged["shapes"]:
        hw, shape, kernel = result["hardware"], result["shape"], result["kernel"]
        card = (f"{hw['device']} ({size(hw['memory_bytes'])}, CUDA {hw['cuda']}, torch {hw['torch']})"
                if hw.get("cuda") else f"CPU {hw['device']} ({hw['cpu_count']} cores, torch {hw['torch']})")
        kernel_note = (f"CUDA kernel via {kernel['backend']}, equal to PyTorch ops: "
                       f"{kernel.get('matches_pytorch_ops')}" if kernel["available"] else
                       f"NO CUDA KERNEL ({kernel['reason']}): ROBE measured as PyTorch ops only")
        lines.append(f"{shape['name']}: {card}; rows at {100 * shape['rows_scale']:.1f}% of the published "
                     f"cardinalities ({shape['total_rows']:,} rows, {size(shape['table_bytes'])} of tables), "
                     f"ROBE array {size(shape['robe_bytes'])}; {kernel_note}")
        lines += [f"  skipped: {s}" for s in result["skipped"]] + [f"  error: {e}" for e in result["errors"]]
    lines += ["", "ROBE-Z vs full tables, samples/s (medians of alternating rounds; random weights)",
              table(["shape", "ids", "batch", "full", "robe", "robe/full", "robe-torch", "robe-torch/full",
                     "embedding robe/full"], _ratio_rows(merged["runs"]))]
    return "\n".join(lines)


def _ratio_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    index = {(r["shape"], r["ids"], r["batch"], r["stage"], r["method"]): r for r in runs}
    rows = []
    for key in dict.fromkeys((r["shape"], r["ids"], r["batch"]) for r in runs):
        end_to_end = {m: index.get((*key, "end_to_end", m)) for m in ("full", "robe", "robe-torch")}
        embedding = index.get((*key, "embedding", "robe")) or index.get((*key, "embedding", "robe-torch"))
        cells = [str(k) for k in key]
        cells.append(rate(end_to_end["full"]["samples_per_s"]) if end_to_end["full"] else "-")
        for method in ("robe", "robe-torch"):
            record = end_to_end[method]
            measured = [rate(record["samples_per_s"]), ratio(record["ratio_robe_vs_full"])] if record else []
            cells += measured or ["-", "-"]
        cells.append(ratio(embedding["ratio_robe_vs_full"]) if embedding else "-")
        rows.append(cells)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.gpu_report", description="merge and print")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "build/gpu_bench"),
                        help="results directory (default: $OUT, else build/gpu_bench)")
    args = parser.parse_args(argv)
    try:
        merged = merge(args.out)
    except (ValueError, OSError, KeyError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    print(ratio_table(merged))  # noqa: T201 - the CLI's output: the ratio table comes last
    return 0 if merged["runs"] else 1


if __name__ == "__main__":
    sys.exit(main())
