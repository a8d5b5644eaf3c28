"""Result pages of the engine benchmark: ``engine.json`` (DESIGN.md section 8), ``engine.md`` and plots.

``engine.json`` holds every provider's runs side by side (``onnxruntime-cpu`` from ``python -m
loadtest.engine``; ``pytorch-cuda`` from gpu_bench v1, ``loadtest/gpu_bench.py`` as of commit 6c3d4b3, kept
and rendered as measured); publishing one provider keeps the others, and the Markdown page and plots are
always regenerated from the whole file. The GPU benchmark now in the tree (v2, ``bash loadtest/gpu_bench.sh``)
compares other variants and writes its own report (``loadtest.gpu_bench_report``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from loadtest.report import rate, ratio, size, table, write_json

logger = logging.getLogger(__name__)

JSON_FILE, MD_FILE, PNG_FILE, GPU_PNG_FILE = "engine.json", "engine.md", "engine.png", "engine_gpu.png"
METHOD_ORDER = ("full", "hash", "robe", "lma")
GPU_COMMAND = "bash loadtest/gpu_bench.sh  # gpu_bench v2; its report: python -m loadtest.gpu_bench_report"


def load(out_dir: Path) -> dict[str, Any]:
    path = out_dir / JSON_FILE
    return json.loads(path.read_text()) if path.exists() else {"runs": [], "memory": [], "sources": {}}


def _replace(
    data: dict[str, Any],
    provider: str,
    runs: list[dict[str, Any]],
    memory: list[dict[str, Any]],
    source: dict[str, Any],
) -> None:
    data["runs"] = [r for r in data["runs"] if r["provider"] != provider] + runs
    data["memory"] = [m for m in data.get("memory", []) if m["provider"] != provider] + memory
    data.setdefault("sources", {})[provider] = {**source, "measured": time.strftime("%Y-%m-%d %H:%M %Z")}


def publish(result: dict[str, Any], out_dir: Path) -> None:
    """Put one ``loadtest.engine`` run into ``out_dir/engine.json`` and regenerate the pages."""
    data = load(out_dir)
    device = result["conditions"]["cpu"]
    runs = [{"device": device, **r} for r in result["runs"]]
    source = {k: result[k] for k in ("command", "conditions", "shape")}
    _replace(data, result["provider"], runs, result["memory"], source)
    write_pages(data, out_dir)


def write_pages(data: dict[str, Any], out_dir: Path) -> None:
    write_json(out_dir / JSON_FILE, data)
    (out_dir / MD_FILE).write_text(markdown(data))
    plot(data, out_dir)
    logger.info("wrote %s, %s and plots in %s", JSON_FILE, MD_FILE, out_dir)


def _methods(runs: Iterable[dict[str, Any]]) -> list[str]:
    present = {r["method"] for r in runs}
    return [m for m in METHOD_ORDER if m in present] + sorted(present - set(METHOD_ORDER))


def _select(runs: list[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in runs if all(r.get(k) == v for k, v in match.items())]


def cpu_table(runs: list[dict[str, Any]]) -> str:
    """Samples/s of each method per batch size, then each compressed method's ratio to full."""
    methods = _methods(runs)
    others = [m for m in methods if m != "full"]
    rows = []
    for batch in sorted({r["batch"] for r in runs}):
        by_method = {r["method"]: r for r in _select(runs, batch=batch)}
        rows.append(
            [
                batch,
                *(rate(by_method[m]["samples_per_s"]) if m in by_method else "-" for m in methods),
                *(ratio(by_method[m]["ratio_robe_vs_full"]) if m in by_method else "-" for m in others),
            ]
        )
    return table(["batch", *methods, *(f"{m}/full" for m in others)], rows)


def memory_table(memory: list[dict[str, Any]]) -> str:
    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    rows = [[m["method"], m["precision"], size(m["parameter_bytes"]), size(m["file_bytes"]),
             size(m["rss_loaded_bytes"]), size(m["rss_bytes"]), seconds(m["cold_start_s"]),
             seconds(m.get("resident_s")), seconds(m.get("cold_start_disk_s")),
             seconds(m.get("resident_disk_s"))]
            for m in memory if m["rss_bytes"] is not None]  # fmt: skip
    return table(["method", "MLPs", "parameters", "model files", "RSS after load", "RSS, weights paged in",
                  "first answer", "weights resident", "first answer, from disk", "resident, from disk"], rows)


def findings(runs: list[dict[str, Any]], memory: list[dict[str, Any]]) -> list[str]:
    """The issue's CPU targets, checked against these numbers (computed, never typed in)."""
    lines = []
    for precision in ("fp32", "int8"):
        robe = _select(runs, method="robe", precision=precision, stage="end_to_end")
        if robe:
            worst = min(robe, key=lambda r: r["ratio_robe_vs_full"])
            slower = worst["ratio_robe_vs_full"] < 1.0
            verdict = "SLOWER at some batch than" if slower else "never slower than"
            lines.append(
                f"- ROBE end to end ({precision} MLPs): {verdict} full; lowest ratio "
                f"{worst['ratio_robe_vs_full']:.3f}x at batch {worst['batch']}, highest "
                f"{ratio(max(r['ratio_robe_vs_full'] for r in robe))}."
            )
    stage = _select(runs, method="robe", stage="embedding")
    if stage:
        lines.append(
            f"- Embedding stage alone: ROBE {ratio(min(r['ratio_robe_vs_full'] for r in stage))} to "
            f"{ratio(max(r['ratio_robe_vs_full'] for r in stage))} of full's samples/s."
        )
    rows = {(m["method"], m["precision"]): m for m in memory if m["rss_bytes"] is not None}
    full, robe_row = rows.get(("full", "fp32")), rows.get(("robe", "fp32"))
    if full and robe_row:
        lines.append(
            f"- Resident memory (weights paged in): full {size(full['rss_bytes'])}, ROBE "
            f"{size(robe_row['rss_bytes'])}: {full['rss_bytes'] / robe_row['rss_bytes']:.1f}x less."
        )
        for label, key in (("first answer", "cold_start"), ("weights resident", "resident")):
            for cache, suffix in (("page cache warm", "_s"), ("model files read from disk", "_disk_s")):
                slow, fast = full.get(key + suffix), robe_row.get(key + suffix)
                if slow and fast:
                    lines.append(f"- Cold start to {label} ({cache}): full {slow:.2f} s, ROBE {fast:.2f} s: "
                                 f"{slow / fast:.1f}x faster.")
    return lines


def markdown(data: dict[str, Any]) -> str:
    lines = [
        "# Engine benchmark: ROBE-Z vs full embedding tables",
        "",
        "Generated by `loadtest/engine_report.py` from `engine.json`; every figure below comes from the "
        "command printed with it. One DLRM architecture per shape (DESIGN.md section 7), only the "
        "embedding differs; weights are random (throughput does not depend on their values). Each "
        "figure is the median of alternating rounds after a warm-up; ratios are samples/s over full's.",
        "",
    ]
    for provider in sorted({r["provider"] for r in data["runs"]}):
        runs = _select(data["runs"], provider=provider)
        source = data["sources"].get(provider, {})
        if provider.startswith("onnxruntime"):
            lines += _cpu_section(
                provider, runs, [m for m in data.get("memory", []) if m["provider"] == provider], source
            )
        else:
            lines += _gpu_section(provider, runs, source)
    if not any(r["provider"].startswith("pytorch-cuda") for r in data["runs"]):
        lines += [
            "## GPU",
            "",
            "Not measured yet. On a machine with one NVIDIA H100 or H200:",
            "",
            f"    {GPU_COMMAND}",
            "",
        ]
    return "\n".join(lines) + "\n"


def _cpu_section(
    provider: str, runs: list[dict[str, Any]], memory: list[dict[str, Any]], source: dict[str, Any]
) -> list[str]:
    c, shape = source.get("conditions", {}), source.get("shape", {})
    scale = shape.get("rows_scale", 1.0)
    lines = [
        f"## {provider}: {shape.get('name')} shape" + (f" (rows scaled to {scale:g})" if scale != 1 else ""),
        "",
        f"Command: `{source.get('command')}` (measured {source.get('measured')})",
        "",
        f"Machine: {c.get('cpu')}, {c.get('cores')} cores ({', '.join(c.get('isa', []))}), onnxruntime "
        f"{c.get('onnxruntime')}, {c.get('threads_per_session')} intra-op thread(s) per session, spinning "
        f"off, weights paged in before timing; load average at start {c.get('load_average_at_start')}, "
        f"nice {c.get('nice')}. Tables: {shape.get('table_bytes', 0) / 1e9:.2f} GB full, "
        f"{size(shape.get('robe_bytes', 0))} for each compressed method.",
        "",
        "### Findings",
        "",
        *findings(runs, memory),
        "",
    ]
    for title, match in (
        ("End to end, fp32 MLPs", {"precision": "fp32", "stage": "end_to_end"}),
        ("End to end, int8-quantized MLPs", {"precision": "int8", "stage": "end_to_end"}),
        ("Embedding stage alone (lookup + gather)", {"precision": "fp32", "stage": "embedding"}),
    ):
        selected = _select(runs, **match)
        if selected:
            lines += [f"### {title}: samples/s", "", cpu_table(selected), ""]
    if memory:
        lines += [
            "### Memory and cold start",
            "",
            "Each model started in a fresh process (`python -m loadtest.sessions`: onnxruntime and the "
            "custom-op library, no torch, like the service); medians of the starts. Times run from process "
            "start to the first answer (onnxruntime maps external weights lazily) and to every weight page "
            "resident (full speed from then on), with the page cache warm and with the model's files evicted "
            "from it first (`posix_fadvise(DONTNEED)`: read from disk, as on a fresh node).",
            "",
            memory_table(memory),
            "",
        ]
    return lines


def _gpu_section(provider: str, runs: list[dict[str, Any]], source: dict[str, Any]) -> list[str]:
    lines = [
        f"## {provider}: PyTorch DLRM on the GPU",
        "",
        f"Command: `{source.get('command')}` "
        f"(measured {source.get('measured')}); full tables are one concatenated `F.embedding` table, "
        "ROBE-Z the project's CUDA kernel (`kernels.torch_ext`) and the same lookup in PyTorch ops.",
        "",
        *([str(source["note"]), ""] if source.get("note") else []),
        "```",
        ratio_table({"shapes": [{**s, "runs": []} for s in source.get("shapes", [])], "runs": runs}),
        "```",
        "",
    ]
    return lines


def ratio_table(merged: dict[str, Any]) -> str:
    """The GPU rows (gpu_bench v1's format): samples/s of each variant and its ratio to full tables, per
    shape, ids and batch, under one line per shape on the card, the row scale and the kernel."""
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


def plot(data: dict[str, Any], out_dir: Path) -> None:
    """engine.png (CPU: samples/s, ratios, memory) and, when measured, engine_gpu.png (GPU ratios)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cpu = [r for r in data["runs"] if r["provider"].startswith("onnxruntime")]
    if cpu:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
        memory = [m for m in data.get("memory", []) if m["precision"] == "fp32" and m["rss_bytes"]]
        _plot_cpu(axes, cpu, memory)
        fig.tight_layout()
        fig.savefig(out_dir / PNG_FILE, dpi=110)
        plt.close(fig)
    gpu = [r for r in data["runs"] if r["provider"].startswith("pytorch-cuda") and r["stage"] == "end_to_end"]
    if gpu:
        fig, axis = plt.subplots(figsize=(7, 4.6))
        keys = sorted({(r["shape"], r["ids"], r["method"]) for r in gpu if r["method"] != "full"})
        series = {" ".join(k): _select(gpu, shape=k[0], ids=k[1], method=k[2]) for k in keys}
        _lines(axis, series, "ratio_robe_vs_full", "GPU: ROBE-Z vs full tables", "samples/s over full",
               ratio=True)  # fmt: skip
        fig.tight_layout()
        fig.savefig(out_dir / GPU_PNG_FILE, dpi=110)
        plt.close(fig)


def _plot_cpu(axes: Any, cpu: list[dict[str, Any]], memory: list[dict[str, Any]]) -> None:
    """Samples/s per method, ROBE's ratios (fp32, int8, embedding stage), resident memory per method."""
    throughput = {m: _select(cpu, method=m, precision="fp32", stage="end_to_end") for m in _methods(cpu)}
    _lines(axes[0], throughput, "samples_per_s", "End to end, fp32", "samples/s", log_y=True)
    groups = {"end to end, fp32": {"precision": "fp32", "stage": "end_to_end"},
              "end to end, int8 MLPs": {"precision": "int8", "stage": "end_to_end"},
              "embedding stage": {"stage": "embedding"}}  # fmt: skip
    ratios = {label: _select(cpu, method="robe", **match) for label, match in groups.items()}
    _lines(axes[1], ratios, "ratio_robe_vs_full", "ROBE speed-up", "ROBE / full samples/s", log_y=True,
           ratio=True)  # fmt: skip
    if memory:
        bars = axes[2].bar([m["method"] for m in memory], [m["rss_bytes"] / 2**20 for m in memory])
        axes[2].bar_label(bars, fmt="%.0f")
        axes[2].set(yscale="log", ylabel="MiB", title="Resident memory, weights paged in")
    else:
        axes[2].axis("off")


def _lines(
    axis: Any,
    series: dict[str, list[dict[str, Any]]],
    key: str,
    title: str,
    ylabel: str,
    log_y: bool = False,
    ratio: bool = False,
) -> None:
    """One line per series over the batch size (log axis); a ratio plot gets the 1.0x line."""
    plotted = False
    for label, runs in series.items():
        points = sorted(runs, key=lambda r: r["batch"])
        if points:
            axis.plot([r["batch"] for r in points], [r[key] for r in points], "o-", label=label)
            plotted = True
    axis.set(title=title, xlabel="batch", ylabel=ylabel)
    if not plotted:
        return
    axis.set_xscale("log")
    if log_y:
        axis.set_yscale("log")
    if ratio:
        axis.axhline(1.0, color="grey", lw=0.8)
    axis.legend(fontsize=8)


def summary(result: dict[str, Any]) -> str:
    """What the CLI prints: the findings and the fp32 end-to-end table."""
    runs = _select(result["runs"], precision="fp32", stage="end_to_end")
    return "\n".join([*findings(result["runs"], result["memory"]), "", cpu_table(runs)])
