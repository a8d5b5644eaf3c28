"""Write docs/results/dlrm.json, dlrm.md's generated tables and dlrm_auc_vs_memory.png from finished runs.

``dlrm.md`` keeps its hand-written text: only the part between ``<!-- results:begin -->`` and
``<!-- results:end -->`` is replaced.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from training.dlrm.budget import format_size

logger = logging.getLogger(__name__)

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DATASET_TITLES = {"synthetic": "synthetic (synth-criteo defaults, kaggle config)",
                  "criteo_15k": "criteo_15k (real, tiny config, 3 seeds)",
                  "avazu_9k": "avazu_9k (real, tiny config, 3 seeds)"}


def result_row(run: dict[str, Any]) -> dict[str, Any]:
    """One run as a docs/results/dlrm.json entry (DESIGN.md section 8 fields first)."""
    m = run["metrics"]
    return {
        "dataset": run["dataset"], "method": m["method"], "compression": m["compression"],
        "parameter_bytes": m["parameter_bytes"], "auc": m["auc"], "logloss": m["logloss"],
        "config": m["config"]["name"], "steps": m["steps"],
        "label": run["label"], "block_size": m.get("block_size"), "embedding_bytes": m["embedding_bytes"],
        "nominal_compression": round(m["full_embedding_bytes"] / m["budget_bytes"]) if m.get("budget_bytes")
        else 1, "test_auc": m.get("test_auc"), "test_logloss": m.get("test_logloss"), "seed": run["seed"],
        "samples_per_s": m["samples_per_s"], "device": m.get("device"), "command": run["command"],
    }


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation over seeds of each (dataset, label, nominal compression)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["label"], row["nominal_compression"])].append(row)
    summary = []
    for (dataset, label, nominal), group in groups.items():
        entry: dict[str, Any] = {"dataset": dataset, "label": label, "nominal_compression": nominal,
                                 "seeds": len(group)}
        for key in ("auc", "test_auc", "logloss", "compression", "embedding_bytes", "parameter_bytes",
                    "samples_per_s", "steps"):
            values = [r[key] for r in group if r.get(key) is not None]
            if values:
                entry[key] = float(np.mean(values))
                entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary.append(entry)
    order = {name: i for i, name in enumerate(DATASET_TITLES)}
    return sorted(summary, key=lambda e: (order.get(e["dataset"], 99), e["nominal_compression"], e["label"]))


def _cell(entry: dict[str, Any], key: str, digits: int = 4) -> str:
    if key not in entry:
        return "-"
    if entry["seeds"] > 1:
        return f"{entry[key]:.{digits}f} ± {entry[key + '_std']:.{digits}f}"
    return f"{entry[key]:.{digits}f}"


def markdown_tables(summary: list[dict[str, Any]]) -> str:
    lines = []
    for dataset, title in DATASET_TITLES.items():
        entries = [e for e in summary if e["dataset"] == dataset]
        if not entries:
            continue
        full = next((e for e in entries if e["label"] == "full"), None)
        lines += [f"### {title}", "",
                  "| method | compression (nominal / actual) | embedding bytes | val AUC | test AUC | "
                  "val AUC - full | val logloss | train samples/s | steps |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in entries:
            delta = f"{e['auc'] - full['auc']:+.4f}" if full is not None else "-"
            lines.append(
                f"| {e['label']} | {e['nominal_compression']}x / {e['compression']:.0f}x | "
                f"{format_size(e['embedding_bytes'])} | {_cell(e, 'auc')} | {_cell(e, 'test_auc')} | "
                f"{delta} | "
                f"{_cell(e, 'logloss')} | {e['samples_per_s']:.0f} | {e['steps']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d for d in DATASET_TITLES if any(e["dataset"] == d for e in summary)]
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(6 * max(len(names), 1), 4.5), squeeze=False)
    for ax, dataset in zip(axes[0], names, strict=False):
        entries = [e for e in summary if e["dataset"] == dataset]
        for label in dict.fromkeys(e["label"] for e in entries):
            points = sorted((e for e in entries if e["label"] == label), key=lambda e: e["embedding_bytes"])
            x = [p["embedding_bytes"] for p in points]
            y = [p["auc"] for p in points]
            err = [p.get("auc_std", 0.0) for p in points]
            if label == "full":
                ax.axhline(y[0], color="black", linestyle="--", linewidth=1,
                           label=f"full ({format_size(x[0])})")
            else:
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("embedding bytes (log scale)")
        ax.set_ylabel("validation AUC")
        ax.set_title(DATASET_TITLES[dataset], fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def throughput_table(report: dict[str, Any]) -> str:
    lines = [f"### CPU training throughput ({report['config']} config, batch {report['batch_size']}, "
             f"{report['threads']} threads on {report['cpu_count']} cores, median of {report['rounds']} "
             "alternating rounds)", "", "| embedding | samples/s | vs full |", "|---|---|---|"]
    lines += [f"| {v['label']} | {v['samples_per_s']:.0f} | {v['ratio_vs_full']:.2f}x |"
              for v in report["variants"]]
    return "\n".join([*lines, ""])


def write_report(runs: list[dict[str, Any]], docs: Path, speed: dict[str, Any] | None = None) -> None:
    """Write dlrm.json, dlrm.md's generated section and the PNG into ``docs``."""
    docs.mkdir(parents=True, exist_ok=True)
    rows = [result_row(r) for r in runs]
    summary = summarize(rows)
    body = {"results": rows, "summary": summary, "throughput_cpu": speed}
    (docs / "dlrm.json").write_text(json.dumps(body, indent=1) + "\n")
    plot(summary, docs / "dlrm_auc_vs_memory.png")
    page = docs / "dlrm.md"
    text = page.read_text() if page.exists() else f"# DLRM: AUC vs memory\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    tables = markdown_tables(summary) + ("\n" + throughput_table(speed) if speed else "")
    page.write_text(f"{head}{BEGIN}\n{tables}\n{END}{tail}")
    logger.info("wrote %s, %s and the plot (%d runs)", docs / "dlrm.json", page, len(rows))
