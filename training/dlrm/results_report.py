"""Write docs/results/dlrm.json, dlrm.md's generated section and dlrm_auc_vs_memory.png from finished runs.

Everything quoted is computed here from the runs: test AUC/log loss per seed, mean and spread over seeds,
paired-bootstrap 95% intervals of each AUC difference (same test rows, resampled jointly), the oracle
table, and the targets of issue 11 marked met / not met with their figures. ``dlrm.md`` keeps its
hand-written text: only the part between ``<!-- results:begin -->`` and ``<!-- results:end -->`` is
replaced.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.dlrm.budget import format_size
from training.dlrm.metrics import PairedDifference, paired_bootstrap_auc

logger = logging.getLogger(__name__)

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DESIGN_FIELDS = ("dataset", "method", "block_size", "seed", "compression", "array_bytes", "parameter_bytes",
                 "auc", "logloss", "config", "epochs", "ran_on")
FLOAT_BYTES = 4
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
V2, NULL = "synthetic-v2", "synthetic-null"
TITLES = {V2: "synthetic-v2 (generator v2)", NULL: "synthetic-null (null control: the generator's old "
          "behaviour)"}


def result_row(run: dict[str, Any]) -> dict[str, Any]:
    """One run as a docs/results/dlrm.json ``results`` entry: exactly DESIGN.md section 8's fields, with
    ``auc`` and ``logloss`` on the held-out test split."""
    m = run["metrics"]
    return {
        "dataset": run["dataset"], "method": m["method"], "block_size": m.get("block_size"),
        "seed": run["seed"], "compression": m["compression"], "array_bytes": m.get("array_bytes"),
        "parameter_bytes": m["parameter_bytes"], "auc": m.get("test_auc"), "logloss": m.get("test_logloss"),
        "config": m["config"]["name"], "epochs": m["epochs"], "ran_on": m.get("ran_on", m.get("device")),
    }


def detail_row(run: dict[str, Any]) -> dict[str, Any]:
    """The rest of a run (``details`` in dlrm.json, same order as ``results``)."""
    m = run["metrics"]
    array = m.get("array_bytes")
    frequent = m.get("frequent_values")
    epochs = m["epochs"]
    return {
        "dataset": run["dataset"], "label": run["label"], "seed": run["seed"],
        "nominal_compression": run["nominal_compression"], "val_auc": m["auc"], "val_logloss": m["logloss"],
        "test_rows": m.get("test_rows"), "val_rows": m.get("val_rows"), "best_epoch": m.get("best_epoch"),
        "stopped_early": m.get("stopped_early"), "steps": m["steps"], "embedding_bytes": m["embedding_bytes"],
        "full_embedding_bytes": m.get("full_embedding_bytes"), "frequent_values": frequent,
        "slots_per_frequent_value": array / FLOAT_BYTES / frequent if array and frequent else None,
        "train_seconds": m.get("train_seconds"),
        "seconds_per_epoch": m["train_seconds"] / epochs if m.get("train_seconds") and epochs else None,
        "samples_per_s": m.get("samples_per_s"), "command": run["command"],
    }


@dataclass
class Point:
    """One (dataset, label, nominal compression) with its seeds' runs."""

    dataset: str
    label: str
    nominal: float
    runs: list[dict[str, Any]]

    def values(self, key: str) -> list[float]:
        return [float(r["metrics"][key]) for r in self.runs if r["metrics"].get(key) is not None]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return float(np.mean(values)) if values else None

    def std(self, key: str) -> float | None:
        values = self.values(key)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    def predictions(self) -> tuple[np.ndarray, list[np.ndarray]] | None:
        """Test labels and each seed's test logits (None when a run has none)."""
        logits, labels = [], None
        for run in self.runs:
            path = Path(run["run_dir"]) / "test_predictions.npz"
            if not path.exists():
                return None
            with np.load(path) as saved:
                logits.append(saved["logits"])
                if labels is None:
                    labels = saved["labels"]
                elif not np.array_equal(labels, saved["labels"]):
                    raise ValueError(f"{path} was scored on other test rows than its seed siblings")
        return (labels, logits) if labels is not None else None


def points(runs: list[dict[str, Any]]) -> list[Point]:
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        groups[(run["dataset"], run["label"], float(run["nominal_compression"]))].append(run)
    return [Point(d, label, x, sorted(group, key=lambda r: r["seed"]))
            for (d, label, x), group in groups.items()]


Lookup = Callable[[str, str, float], Point | None]


def _lookup(all_points: list[Point]) -> Lookup:
    index = {(p.dataset, p.label, p.nominal): p for p in all_points}
    return lambda dataset, label, x: index.get((dataset, label, float(x)))


def compare(a: Point | None, b: Point | None) -> PairedDifference | None:
    """Paired bootstrap of AUC(a) - AUC(b) on the test rows (every seed of each side), or None."""
    if a is None or b is None:
        return None
    pa, pb = a.predictions(), b.predictions()
    if pa is None or pb is None:
        return None
    if not np.array_equal(pa[0], pb[0]):
        raise ValueError(f"{a.label} and {b.label} on {a.dataset} were scored on different test rows")
    return paired_bootstrap_auc(pa[0], pa[1], pb[1], BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED)


def best_robe(find: Lookup, dataset: str, x: float, dim: int) -> Point | None:
    """ROBE's better block size at budget ``x``, chosen on the VALIDATION AUC (never on test)."""
    found = [p for p in (find(dataset, "robe Z=1", x), find(dataset, f"robe Z={dim}", x)) if p is not None]
    return max(found, key=lambda p: p.mean("auc") or -1.0) if found else None


def summarize(all_points: list[Point], find: Lookup) -> list[dict[str, Any]]:
    """Per point: means and seed spreads, memory on both axes, and the interval of the gap to full."""
    summary = []
    for p in all_points:
        entry: dict[str, Any] = {"dataset": p.dataset, "label": p.label, "nominal_compression": p.nominal,
                                 "seeds": len(p.runs)}
        for key in ("test_auc", "test_logloss", "auc", "compression", "array_bytes", "embedding_bytes",
                    "parameter_bytes", "epochs", "best_epoch", "train_seconds"):
            mean = p.mean(key)
            if mean is not None:
                entry[key] = mean
                entry[f"{key}_std"] = p.std(key)
        frequent = p.mean("frequent_values")
        if frequent and entry.get("array_bytes"):
            entry["slots_per_frequent_value"] = entry["array_bytes"] / FLOAT_BYTES / frequent
        if p.label != "full":
            difference = compare(p, find(p.dataset, "full", 1.0))
            entry["vs_full"] = difference.to_dict() if difference is not None else None
        summary.append(entry)
    order = {name: i for i, name in enumerate(TITLES)}
    return sorted(summary, key=lambda e: (order.get(e["dataset"], 99), e["nominal_compression"], e["label"]))


def _interval(d: PairedDifference | dict[str, Any] | None) -> str:
    if d is None:
        return "-"
    values = d.to_dict() if isinstance(d, PairedDifference) else d
    return f"{values['difference']:+.4f} [{values['low']:+.4f}, {values['high']:+.4f}]"


@dataclass(frozen=True)
class Target:
    """One target of issue 11 as evaluated from the runs."""

    name: str
    measured: str
    met: bool | None  # None: not evaluated (runs missing) or only reported

    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "not evaluated"}[self.met]

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.name, "measured": self.measured, "met": self.met}


def _missing(name: str, what: str) -> Target:
    return Target(name, f"runs missing: {what}", None)


def lma_rows(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """The LMA labels the targets are evaluated for, each with its memory accounting."""
    rows = [("lma", "equal serving bytes (array + signature tables = ROBE's budget)")]
    if facts.get("lma_equal_array"):
        rows.append((facts["lma_equal_array"], "equal array bytes, the LMA paper's accounting (signature "
                     "tables on top)"))
    if facts.get("lma_tuned"):
        rows.append((facts["lma_tuned"], "equal serving bytes, hyper-parameter chosen on validation"))
    return rows


def _serving(lma: Point, robe: Point) -> str:
    """LMA's serving bytes against ROBE's, when they differ by more than rounding."""
    a, b = lma.mean("embedding_bytes"), robe.mean("embedding_bytes")
    if not a or not b or abs(a / b - 1) < 0.01:
        return ""
    return f"; serving bytes {format_size(a)} vs ROBE's {format_size(b)} ({a / b - 1:+.0%})"


def lma_targets(find: Lookup, dim: int, label: str, accounting: str) -> list[Target]:
    """The LMA targets of issue 11 for one LMA label, named with its memory accounting."""
    targets = []
    tag = f" [{label}: {accounting}]"
    for x in (16.0, 64.0):
        name = f"generator v2: LMA - ROBE >= +0.002 AUC at {x:g}x with the 95% interval above 0{tag}"
        lma, robe = find(V2, label, x), best_robe(find, V2, x, dim)
        d = compare(lma, robe)
        targets.append(_missing(name, f"{label}/robe at {x:g}x") if d is None or robe is None or lma is None
                       else Target(name, f"{label} - {robe.label}: {_interval(d)}{_serving(lma, robe)}",
                                   d.difference >= 0.002 and d.above_zero))
        name = f"null control: LMA - ROBE within its interval of 0 at {x:g}x{tag}"
        lma, robe = find(NULL, label, x), best_robe(find, NULL, x, dim)
        d = compare(lma, robe)
        targets.append(_missing(name, f"null-control {label}/robe at {x:g}x") if d is None or robe is None
                       or lma is None else
                       Target(name, f"{label} - {robe.label}: {_interval(d)}", d.contains_zero))
    name = f"generator v2: LMA at 16x >= full - 0.001 (the paper's claim){tag}"
    d = compare(find(V2, label, 16), find(V2, "full", 1))
    targets.append(_missing(name, f"{label} at 16x, full") if d is None else Target(
        name, f"{label} - full: {_interval(d)}", d.difference >= -0.001))
    return targets


def lma_selection(find: Lookup, facts: dict[str, Any]) -> dict[str, Any] | None:
    """The LMA hyper-parameter selection: default and candidates at one budget on generator v2, first
    seed, ranked by VALIDATION AUC; says whether the tuned label is the one validation picks."""
    candidates = facts.get("lma_candidates") or {}
    x = facts.get("lma_selection_compression")
    if not candidates or x is None:
        return None
    seed = facts["seeds"][0]
    rows = []
    for label, options in [("lma", []), *candidates.items()]:
        point = find(V2, label, x)
        run = next((r for r in point.runs if r["seed"] == seed), None) if point is not None else None
        if run is not None:
            m = run["metrics"]
            rows.append({"label": label, "options": " ".join(options) or "(defaults)", "val_auc": m["auc"],
                         "test_auc": m.get("test_auc"), "array_bytes": m.get("array_bytes"),
                         "embedding_bytes": m.get("embedding_bytes")})
    best = max(rows, key=lambda r: r["val_auc"])["label"] if rows else None
    tuned = facts.get("lma_tuned")
    versus = []  # the tuned row against the default, every seed, on the test rows (after the choice)
    for dataset in (V2, NULL):
        for budget in facts.get("key_compressions") or []:
            d = compare(find(dataset, tuned, budget), find(dataset, "lma", budget)) if tuned else None
            if d is not None:
                versus.append({"dataset": dataset, "nominal_compression": budget, **d.to_dict()})
    return {"dataset": V2, "nominal_compression": x, "seed": seed, "rows": rows,
            "chosen_on_validation": best, "tuned": tuned, "complete": len(rows) == len(candidates) + 1,
            "tuned_vs_default": versus}


def selection_lines(selection: dict[str, Any] | None) -> list[str]:
    if not selection or not selection["rows"]:
        return []
    lines = [f"### LMA hyper-parameters (generator v2, {selection['nominal_compression']:g}x, seed "
             f"{selection['seed']}, chosen on the validation AUC)", "",
             "| LMA | options | val AUC | test AUC | array bytes | serving bytes |",
             "|---|---|---|---|---|---|"]
    for r in sorted(selection["rows"], key=lambda r: -r["val_auc"]):
        mark = " (best on validation)" if r["label"] == selection["chosen_on_validation"] else ""
        lines.append(f"| {r['label']}{mark} | `{r['options']}` | {r['val_auc']:.4f} | "
                     f"{r['test_auc']:.4f} | {format_size(r['array_bytes'])} | "
                     f"{format_size(r['embedding_bytes'])} |")
    tuned = selection.get("tuned")
    if tuned is None:
        verdict = "no tuned LMA row run yet"
    elif tuned == selection["chosen_on_validation"]:
        verdict = f"`{tuned}` (the tuned row) is the best on validation"
    else:
        verdict = (f"the tuned row `{tuned}` is NOT the best on validation "
                   f"(`{selection['chosen_on_validation']}`)")
    complete = "" if selection["complete"] else " (not every candidate has run)"
    lines += ["", f"Selection: {verdict}{complete}."]
    if selection.get("tuned_vs_default"):
        lines += ["", f"Afterwards, on the test split with every seed: `{tuned}` - `lma` (the default)", "",
                  "| data set | budget | test AUC difference [95%] |", "|---|---|---|"]
        lines += [f"| {v['dataset']} | {v['nominal_compression']:g}x | {_interval(v)} |"
                  for v in selection["tuned_vs_default"]]
    return [*lines, ""]


def evaluate_targets(find: Lookup, dim: int, compressions: list[float],
                     oracles: dict[str, dict[str, Any]], facts: dict[str, Any] | None = None) -> list[Target]:
    """The accuracy targets of issue 11, each from the runs (test AUC; ROBE's Z chosen on validation); the
    LMA targets once per LMA label of ``lma_rows`` (both memory accountings)."""
    targets = []
    name = "generator v2: ROBE (best Z) at 16x >= full - 0.001"
    robe16, full = best_robe(find, V2, 16, dim), find(V2, "full", 1)
    d = compare(robe16, full)
    targets.append(_missing(name, "full, robe at 16x") if d is None or robe16 is None else Target(
        name, f"{robe16.label}: {_interval(d)} (mean test AUC difference over seeds, 95% interval)",
        d.difference >= -0.001))
    for x in [c for c in compressions if c >= 64]:
        name = f"generator v2: ROBE beats the hashing trick by >= 0.01 AUC at {x:g}x"
        robe, hashed = best_robe(find, V2, x, dim), find(V2, "hash", x)
        d = compare(robe, hashed)
        targets.append(_missing(name, f"robe/hash at {x:g}x") if d is None or robe is None else Target(
            name, f"{robe.label} - hash: {_interval(d)}", d.difference >= 0.01))
    name = "generator v2: ROBE at 1000x reported against the oracle's 1000x row"
    robe = best_robe(find, V2, 1000, dim)
    row = _oracle_row(oracles.get(V2, {}), 1000)
    if robe is None:
        targets.append(_missing(name, "robe at 1000x"))
    else:
        oracle_text = (f"oracle {row['auc']:.4f} ({row['values_kept']} values kept)" if row is not None
                       else f"no oracle ({oracles.get(V2, {}).get('error', 'not computed')})")
        measured = f"{robe.label} test AUC {robe.mean('test_auc'):.4f}; {oracle_text}"
        targets.append(Target(name, measured, None))
    for label, accounting in lma_rows(facts or {}):
        targets += lma_targets(find, dim, label, accounting)
    return targets


def _oracle_row(table: dict[str, Any], x: float) -> dict[str, Any] | None:
    for row in table.get("rows") or []:
        if row.get("nominal_compression") is not None and float(row["nominal_compression"]) == float(x):
            return dict(row)
    return None


def _cell(entry: dict[str, Any], key: str, digits: int = 4) -> str:
    if entry.get(key) is None:
        return "-"
    if entry.get(f"{key}_std") is not None:
        return f"{entry[key]:.{digits}f} ± {entry[key + '_std']:.{digits}f}"
    return f"{entry[key]:.{digits}f}"


def markdown(summary: list[dict[str, Any]], targets: list[Target], oracles: dict[str, dict[str, Any]],
             rows: list[dict[str, Any]], facts: dict[str, Any], selection: list[str] | None = None) -> str:
    ran_on = sorted({str(r["ran_on"]) for r in rows})
    lines = [f"Profile `{facts['profile']}`: {facts['rows']:,} generated rows per data set (80/10/10), "
             f"`{facts['config']}` config, batch {facts['batch_size']}, up to {facts['max_epochs']} epochs "
             f"with early stopping (validation AUC {facts['evals_per_epoch']}x per epoch, stop after "
             f"{facts['patience']} evaluation{'s' * (facts['patience'] != 1)} without a better one, best "
             f"weights "
             f"kept), seeds {facts['seeds']} for full tables"
             f"{''.join(f', {x:g}x' for x in facts['key_compressions'])}, "
             f"seed {facts['seeds'][0]} elsewhere. "
             f"AUC and log loss are on the held-out "
             f"test split, scored once; intervals are paired-bootstrap 95% intervals "
             f"({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED}) of the difference of mean test "
             f"AUCs on the same rows. Ran on: {'; '.join(ran_on) or '-'}.", "",
             "### Targets (issue 11), evaluated by `training.dlrm.results_report`", "",
             "| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t.name} | {t.measured} | {t.verdict()} |" for t in targets]
    lines.append("")
    lines += selection or []
    for dataset, title in TITLES.items():
        entries = [e for e in summary if e["dataset"] == dataset]
        if not entries:
            continue
        lines += [f"### {title}", "",
                  "| method | compression (nominal / actual) | array bytes | slots per value seen >= 10x | "
                  "seeds | test AUC | test AUC - full [95%] | test logloss | val AUC | epochs (best) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for e in entries:
            slots = e.get("slots_per_frequent_value")
            lines.append(
                f"| {e['label']} | {e['nominal_compression']:g}x / {e['compression']:.0f}x | "
                f"{format_size(e['array_bytes']) if e.get('array_bytes') else '-'} | "
                f"{f'{slots:.2f}' if slots is not None else '-'} | {e['seeds']} | {_cell(e, 'test_auc')} | "
                f"{_interval(e.get('vs_full'))} | {_cell(e, 'test_logloss')} | {_cell(e, 'auc')} | "
                f"{e.get('epochs', 0):.1f} ({e.get('best_epoch', 0):.1f}) |")
        lines.append("")
        lines += oracle_lines(dataset, oracles.get(dataset, {}), facts, entries)
    return "\n".join(lines)


def oracle_lines(dataset: str, table: dict[str, Any], facts: dict[str, Any],
                 entries: list[dict[str, Any]]) -> list[str]:
    if "error" in table or not table.get("rows"):
        return [f"Oracle table of {dataset}: not available ({table.get('error', 'not computed')}).", ""]
    lines = [f"Oracle of {dataset} (true logits on the test split; per-value effects kept only for the "
             f"values each budget holds): ceiling AUC {table['ceiling_auc']:.4f}, no per-value effects "
             f"{table['no_per_value_auc']:.4f}.", "",
             "| budget | bytes | values kept | oracle AUC | best method (test AUC) |",
             "|---|---|---|---|---|"]
    for row in sorted(table["rows"], key=lambda r: -int(r["budget_bytes"])):
        x = row.get("nominal_compression")
        here = [e for e in entries if x is not None and e["nominal_compression"] == float(x)
                and e.get("test_auc") is not None]
        best = max(here, key=lambda e: e["test_auc"], default=None)
        best_text = f"{best['label']} ({best['test_auc']:.4f})" if best else "-"
        budget = f"{float(x):g}x" if x is not None else "-"
        lines.append(f"| {budget} | {format_size(row['budget_bytes'])} | {row['values_kept']:,} | "
                     f"{row['auc']:.4f} | {best_text} |")
    return [*lines, ""]


def plot(summary: list[dict[str, Any]], oracles: dict[str, dict[str, Any]], path: Path) -> None:
    """Test AUC vs memory, as the compression ratio (top) and as slots per frequent value (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [d for d in TITLES if any(e["dataset"] == d for e in summary)] or ["-"]
    fig, axes = plt.subplots(2, len(names), figsize=(6.5 * len(names), 9), squeeze=False)
    for column, dataset in enumerate(names):
        entries = [e for e in summary if e["dataset"] == dataset and e.get("test_auc") is not None]
        full = next((e for e in entries if e["label"] == "full"), None)
        for row, (key, xlabel) in enumerate((("compression", "compression vs full tables (x, log)"),
                                             ("slots_per_frequent_value",
                                              "array floats per value seen >= 10 times (log)"))):
            ax = axes[row][column]
            for label in dict.fromkeys(e["label"] for e in entries if e["label"] != "full"):
                line = sorted((e for e in entries if e["label"] == label and e.get(key)),
                              key=lambda e: e[key])
                ax.errorbar([e[key] for e in line], [e["test_auc"] for e in line],
                            yerr=[e.get("test_auc_std") or 0.0 for e in line], marker="o", capsize=3,
                            label=label)
            if full is not None:
                ax.axhline(full["test_auc"], color="black", linestyle="--", linewidth=1, label="full tables")
            table = oracles.get(dataset, {})
            oracle_rows = sorted((r for r in table.get("rows") or [] if r.get("nominal_compression")),
                                 key=lambda r: r["nominal_compression"])
            if key == "compression" and oracle_rows:
                ax.plot([r["nominal_compression"] for r in oracle_rows], [r["auc"] for r in oracle_rows],
                        color="grey", linestyle=":", marker="x", label="oracle")
            ax.set_xscale("log")
            if key == "compression":
                ax.invert_xaxis()
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test AUC")
            ax.set_title(TITLES.get(dataset, dataset), fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(runs: list[dict[str, Any]], docs: Path, facts: dict[str, Any],
                 oracles: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write dlrm.json, dlrm.md's generated section and the PNG into ``docs``; returns dlrm.json's body."""
    docs.mkdir(parents=True, exist_ok=True)
    oracles = oracles or {}
    rows = [result_row(r) for r in runs]
    all_points = points(runs)
    find = _lookup(all_points)
    summary = summarize(all_points, find)
    targets = evaluate_targets(find, facts["dim"], facts["compressions"], oracles, facts)
    selection = lma_selection(find, facts)
    body = {"results": rows, "details": [detail_row(r) for r in runs], "summary": summary,
            "targets": [t.to_dict() for t in targets], "lma_selection": selection, "oracle": oracles,
            "study": facts}
    (docs / "dlrm.json").write_text(json.dumps(body, indent=1) + "\n")
    only_selection = set(facts.get("lma_candidates") or {}) - {facts.get("lma_tuned")}
    plot([e for e in summary if e["label"] not in only_selection], oracles, docs / "dlrm_auc_vs_memory.png")
    page = docs / "dlrm.md"
    text = page.read_text() if page.exists() else f"# DLRM: AUC vs memory\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    generated = markdown(summary, targets, oracles, rows, facts, selection_lines(selection))
    page.write_text(f"{head}{BEGIN}\n{generated}\n{END}{tail}")
    for target in targets:
        logger.info("%s: %s (%s)", target.name, target.verdict(), target.measured)
    logger.info("wrote %s, %s and the plot (%d runs)", docs / "dlrm.json", page, len(rows))
    return body
