"""``python -m loadtest.gpu_bench_report build/gpu_bench/gpu_bench.json``: the GPU benchmark (v2) as a table.

Per (ids, dtype, batch): samples/s of every variant, ROBE's ratio against each, and the Amdahl ceiling of
ROBE against the in-HBM tables (the step time if the lookup took no time: ``(lookup + dense) / dense`` of
``full-hbm-vec``, else ``full-hbm``). Checks the issue-12 targets and prints which hold.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

TARGET_VS_HOST = 3.1
CEILING_SHARE = 0.9


def ceiling(records: dict[str, dict[str, Any]]) -> float | None:
    """Amdahl ceiling of ROBE vs tables in HBM: (lookup + dense) / dense of the strongest HBM baseline."""
    for name in ("full-hbm-vec", "full-hbm"):
        stages = records.get(name, {}).get("stages_ms") or {}
        if stages.get("dense"):
            return (stages["lookup"] + stages["dense"]) / stages["dense"]
    return None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Rows of the table and the target checks."""
    groups: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = defaultdict(dict)
    for run in result.get("runs", []):
        groups[(run["ids"], run["dtype"], run["batch"])][run["variant"]] = run
    rows, checks = [], []
    for (ids, dtype, batch), records in sorted(groups.items()):
        robe = records.get("robe")
        row: dict[str, Any] = {
            "ids": ids,
            "dtype": dtype,
            "batch": batch,
            "samples_per_s": {v: r["samples_per_s"] for v, r in records.items()},
            "amdahl_ceiling_vs_hbm": ceiling(records),
        }
        if robe is not None:
            row["robe_vs"] = {
                v: robe["samples_per_s"] / r["samples_per_s"] for v, r in records.items() if v != "robe"
            }
        rows.append(row)
        if robe is not None and batch == 16384:
            host = max(
                (records[v]["samples_per_s"] for v in ("full-host", "full-host-db") if v in records),
                default=None,
            )
            if host:
                ratio = robe["samples_per_s"] / host
                checks.append(
                    {
                        "check": f"robe vs best full-host >= {TARGET_VS_HOST}x ({ids}, {dtype}, 16384)",
                        "value": ratio,
                        "holds": ratio >= TARGET_VS_HOST,
                    }
                )
        hbm = max(
            (records[v]["samples_per_s"] for v in ("full-hbm", "full-hbm-vec") if v in records), default=None
        )
        if robe is not None and hbm and row["amdahl_ceiling_vs_hbm"]:
            ratio = robe["samples_per_s"] / hbm
            checks.append(
                {
                    "check": f"robe vs best full-hbm within 10% of the Amdahl ceiling: {ids} {dtype} {batch}",
                    "value": ratio,
                    "ceiling": row["amdahl_ceiling_vs_hbm"],
                    "holds": ratio >= CEILING_SHARE * row["amdahl_ceiling_vs_hbm"],
                }
            )
    by_variant: dict[tuple[str, str, str], dict[int, float]] = defaultdict(dict)
    for run in result.get("runs", []):
        by_variant[(run["variant"], run["ids"], run["dtype"])][run["batch"]] = run["samples_per_s"]
    for (variant, ids, dtype), rates in sorted(by_variant.items()):
        if 512 in rates and 2048 in rates:
            checks.append(
                {
                    "check": f"{variant} ({ids}, {dtype}) not slower per sample at 512 than at 2048",
                    "value": rates[512] / rates[2048],
                    "holds": rates[512] >= rates[2048],
                }
            )
    return {"rows": rows, "checks": checks}


def render(result: dict[str, Any], summary: dict[str, Any]) -> str:
    shape = result.get("shape", {})
    machine = result.get("preflight", {})
    lines = [
        f"device: {machine.get('device')}  pcie: {machine.get('pcie')}",
        f"shape {shape.get('name')} rows scale {shape.get('rows_scale')} tables {shape.get('table_bytes')}",
        "",
    ]
    variants = sorted({v for row in summary["rows"] for v in row["samples_per_s"]})
    lines.append("ids      dtype batch  " + " ".join(f"{v:>14}" for v in variants) + "   ceiling")
    for row in summary["rows"]:
        rates = " ".join(f"{row['samples_per_s'].get(v, float('nan')):>14,.0f}" for v in variants)
        ceiling_text = f"{row['amdahl_ceiling_vs_hbm']:.2f}x" if row["amdahl_ceiling_vs_hbm"] else "-"
        lines.append(f"{row['ids']:<8} {row['dtype']:<5} {row['batch']:<6} {rates}   {ceiling_text}")
        if "robe_vs" in row:
            lines.append(
                "    robe vs: " + ", ".join(f"{v} {r:.2f}x" for v, r in sorted(row["robe_vs"].items()))
            )
    lines.append("")
    for check in summary["checks"]:
        lines.append(f"[{'ok' if check['holds'] else 'NOT MET'}] {check['check']}: {check['value']:.3f}")
    for item in result.get("skipped", []) + result.get("errors", []):
        lines.append(f"note: {item}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m loadtest.gpu_bench_report RESULT.json\n")
        return 2
    path = Path(args[0])
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: cannot read {path}: {exc}\n")
        return 2
    summary = summarize(result)
    path.with_name(path.stem + "_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    sys.stdout.write(render(result, summary) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
