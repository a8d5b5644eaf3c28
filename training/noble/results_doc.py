"""docs/results/noble.md from the result dict of ``training.noble.results`` (every number comes from it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.noble.selection import CRITERIA, network_name

SEARCHES_JSON = "noble_searches.json"  # the search history, beside noble.json
FOLD_CHECK_JSON = "noble_fold_check.json"  # python -m training.noble.fold_check, beside noble.json
CRITERION_WORDS = {"covered": "covered rows", "pooled": "all rows"}
METRIC_COLUMNS = ("mean_error_m", "median_error_m", "p75_error_m", "p95_error_m", "building_hit", "floor_hit",
                  "evaal_error_m")
HEADER = "| method | mean (m) | median (m) | p75 (m) | p95 (m) | building hit | floor hit | EvAAL (m) |"
# Published figures on the same validation file (not measured here): mean 2D error, floor hit rate.
PUBLISHED = (("Kim et al. 2018 (hierarchical auxiliary DNN)", 9.29, None),
             ("CNNLoc (Song et al. 2019)", 11.78, 0.9603))
TARGET_MEAN_M, TARGET_BUILDING, TARGET_FLOOR, TARGET_IMU = 6.0, 0.998, 0.96, 0.30
PF = "map-matching particle filter"
HYBRID = "particle filter x NObLe cell likelihood"
ANCHORED = "NObLe cells on the map-matched track"
LABELS = {"knn-k1": "weighted kNN, k = 1 (powed RSSI)", "knn-k3": "weighted kNN, k = 3 (powed RSSI)",
          "mlp-regression": "MLP coordinate regression (MSE), same body, augmentation and epochs"}


def _cells(row: dict[str, Any]) -> str:
    return " | ".join(f"{100 * row[c]:.2f}%" if c.endswith("_hit") else f"{row[c]:.2f}"
                      for c in METRIC_COLUMNS)


def _spread(stat: dict[str, float], percent: bool = False) -> str:
    if percent:
        return f"{100 * stat['mean']:.2f}% ± {100 * stat['std']:.2f}"
    return f"{stat['mean']:.2f} ± {stat['std']:.2f}"


def _targets(result: dict[str, Any]) -> list[str]:
    lines = ["| target | measured | met |", "|---|---:|:---:|"]
    final = result.get("final")
    if final is not None:
        s = final["summary"]["noble"]
        seeds = len(s["seeds"])
        checks = [
            (f"mean 2D error <= {TARGET_MEAN_M} m ({seeds}-seed mean)", f"{_spread(s['mean_error_m'])} m",
             s["mean_error_m"]["mean"] <= TARGET_MEAN_M),
            (f"building hit rate >= {100 * TARGET_BUILDING:.1f}%", _spread(s["building_hit"], True),
             s["building_hit"]["mean"] >= TARGET_BUILDING),
            (f"floor hit rate >= {100 * TARGET_FLOOR:.0f}%", _spread(s["floor_hit"], True),
             s["floor_hit"]["mean"] >= TARGET_FLOOR),
        ]
        lines += [f"| {n} | {v} | {'yes' if ok else 'NO'} |" for n, v, ok in checks]
    imu = result.get("imu")
    if imu is not None and "noble_reduction_vs_map_aware_at_100m" in imu:
        r = imu["noble_reduction_vs_map_aware_at_100m"]
        name = imu.get("target_tracker", "NObLe tracker")
        errors = imu["errors"]
        measured = (f"{name}: {errors[name]['at_100m']:.2f} m vs {errors[PF]['at_100m']:.2f} m, "
                    f"{abs(100 * r):.1f}% {'lower' if r >= 0 else 'HIGHER'}") if PF in errors else \
            f"{abs(100 * r):.1f}% {'lower' if r >= 0 else 'HIGHER'}"
        lines.append(f"| IMU: NObLe tracker >= {100 * TARGET_IMU:.0f}% below the map-aware baseline after "
                     f"100 m | {measured} | {'yes' if r >= TARGET_IMU else 'NO'} |")
    return lines


def _criterion(cv: dict[str, Any]) -> tuple[str, str]:
    """(row key, words) of the CV criterion (searches written before it was a setting used ``pooled``)."""
    criterion = cv["search"].get("criterion", "pooled")
    return CRITERIA[criterion], "covered rows" if criterion == "covered" else "all rows"


def _cv_tables(cv: dict[str, Any]) -> list[str]:
    rows = cv["rows"]
    key, words = _criterion(cv)
    kinds = cv["search"].get("choose_kinds", ["plan", "building"])
    settings = list(dict.fromkeys((r["stage"], r["setting"]) for r in rows))
    lines = [f"CV mean 2D error (m) over the {words} (the criterion); the best on-plan decode's pooled "
             "mean over all rows beside it.", "",
             "| stage | training setting | best on-plan decode | CV, criterion | CV, all rows | "
             "best centre | best topk | old topk, k = 4, all cells (the first decode) | best plan | "
             "best building | CV floor hit | CV building hit |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    sizes = [float(s) for s in cv["search"]["base"]["cell_sizes"]]
    first_decode = {"kind": "topk", "top_k": 4, "cell_sizes": sizes, "snap_m": None}
    for stage, setting in settings:
        group = [r for r in rows if r["setting"] == setting and r["stage"] == stage]
        best = min((r for r in group if r["decode_config"]["kind"] in kinds), key=lambda r: r[key])

        def of(kind: str, group: list[dict[str, Any]] = group) -> str:
            of_kind = [r for r in group if r["decode_config"]["kind"] == kind]
            return f"{min(r[key] for r in of_kind):.2f}" if of_kind else "-"

        first = [r for r in group if r["decode_config"] == first_decode]
        first_text = f"{first[0][key]:.2f}" if first else "-"
        lines.append(f"| {stage} | {setting} | {best['decode']} | {best[key]:.2f} | "
                     f"{best['cv_mean_error_m']:.2f} | "
                     f"{of('centre')} | {of('topk')} | {first_text} | {of('plan')} | {of('building')} | "
                     f"{100 * best['cv_floor_hit']:.2f}% | {100 * best['cv_building_hit']:.2f}% |")
    return lines


def _criterion_text(cv: dict[str, Any]) -> str:
    search = cv["search"]
    if search.get("criterion", "pooled") == "pooled":
        return "The CV error is the mean over all training rows (pooled)."
    rows = next((r for r in cv["rows"] if "cv_covered_share" in r), None)
    share = f" ({100 * rows['cv_covered_share']:.1f}% of the training rows)" if rows else ""
    return (f"The criterion is the mean error over the COVERED held-out rows{share}: those within "
            f"{search['covered_radius_m']:g} m of a training position of their building-floor in the other "
            "folds. The users each surveyed their own areas, so the other rows lie where no remaining user "
            "measured and a fingerprint model can only guess; a deployed model, like the validation file, "
            "is asked about new phones and people in the surveyed places. The pooled mean over all rows is "
            "shown beside it (the first two searches chose on it; see the search history below).")


def _history(searches: list[dict[str, Any]]) -> list[str]:
    """Every search design whose choice was scored on the validation file, in order (noble_searches.json)."""
    lines = ["## Search history: every search design scored on the validation file", "",
             "The validation file is read once per search design, after its CV choice. Designs changed "
             "between searches (grids, criterion, decodes); every one that reached the validation file is "
             f"listed here ({SEARCHES_JSON}), so a reader sees how many times it was read. The newest design "
             "is the one this page reports and `make demo-models` serves.", "",
             "| search | commit | CV criterion | chooses among | grid | chosen setting | chosen decode | "
             "validation mean (m), over its seeds | floor hit | building hit |",
             "|---|---|---|---|---|---|---|---:|---:|---:|"]
    for s in searches:
        v = s["summary"]["noble"]
        seeds, planned = s["seeds"], s.get("seeds_planned", s["seeds"])
        spread = f" ± {v['mean_error_m']['std']:.2f} ({seeds} seeds)" if seeds > 1 else \
            f" (seed 0 only; {planned - seeds} of {planned} seeds not run)"
        grid = (f"augmentation {s['augmentations']}, epochs {s['epochs']}, networks "
                f"{_networks(s['networks'])}, "
                f"members {s['members']}, {s['decodes']} decodes")
        lines.append(f"| {s['name']} | {s['commit'] or '-'} | {s['criterion']} | "
                     f"{'/'.join(s['choose_kinds'])} | {grid} | {s['chosen']['setting']} | "
                     f"{s['chosen']['decode_label']} | {v['mean_error_m']['mean']:.2f}{spread} | "
                     f"{100 * v['floor_hit']['mean']:.2f}% | "
                     f"{100 * v['building_hit']['mean']:.2f}% |")
    return [*lines, ""]


def _fold_check(check: dict[str, Any]) -> list[str]:
    """One line per fold design: which checked setting each CV criterion prefers, against the validation
    file's order (the searches' means over their seeds)."""
    def label(searches: list[str]) -> str:
        numbers = [name.split(":")[0] for name in searches]
        return f"search{'es' if len(numbers) > 1 else ''} {', '.join(numbers)}"

    validation = {label(s["searches"]): min(s["validation_mean_error_m"].values()) for s in check["settings"]}
    by_validation = sorted(validation, key=validation.__getitem__)
    page = FOLD_CHECK_JSON.replace(".json", ".md")
    lines = [f"Does the fold design explain it? [{page}]({page}) (`{check['command']}`, "
             f"{check['seconds'] / 60:.0f} min) trains each search's chosen setting, one net per fold, under "
             "each fold design. It reads the training file only and chooses nothing (its settings were "
             "picked after their validation scores were known). Validation order: "
             + " < ".join(f"{name} ({validation[name]:.2f} m)" for name in by_validation) + ".", ""]
    for design in check["designs"]:
        parts = []
        for criterion in ("covered", "pooled"):
            ranked: list[dict[str, Any]] = sorted(design["settings"],
                                                  key=lambda e: float(e[criterion]["best_error_m"]))
            order = [label(e["searches"]) for e in ranked]
            scores = " < ".join(f"{name} ({e[criterion]['best_error_m']:.2f} m)"
                                for name, e in zip(order, ranked, strict=True))
            verdict = "the validation order" if order == by_validation else "not the validation order"
            parts.append(f"{CRITERION_WORDS[criterion]}: {scores}, {verdict}")
        lines.append(f"- {design['folds']} folds: " + "; ".join(parts) + ".")
    return [*lines, ""]


def _networks(networks: list[list[Any]]) -> str:
    """Stage-3 candidates ``[[hidden, relative_db], ...]`` as text."""
    return "[" + ", ".join(network_name(tuple(h), float(r)) for h, r in networks) + "]"


def _top_decodes(cv: dict[str, Any], count: int = 8) -> list[str]:
    chosen = cv["chosen"]
    group = [r for r in cv["rows"] if r["setting"] == chosen["setting"]]
    key, words = _criterion(cv)
    group = sorted({r["decode"]: r for r in group}.values(), key=lambda r: r[key])[:count]
    lines = [f"| decode | CV mean, {words} (m) | CV mean, all rows (m) | CV median, all rows (m) | "
             "per-fold means, all rows (m) |", "|---|---:|---:|---:|---|"]
    for r in group:
        folds = ", ".join(f"{e:.2f}" for e in r["fold_mean_error_m"])
        lines.append(f"| {r['decode']} | {r[key]:.2f} | {r['cv_mean_error_m']:.2f} | "
                     f"{r['cv_median_error_m']:.2f} | {folds} |")
    return lines


def _validation(result: dict[str, Any]) -> list[str]:
    final = result["final"]
    lines = [HEADER.replace("| method |", "| method (seed) |"), "|---|" + "---:|" * len(METRIC_COLUMNS)]
    for row in final["rows"]:
        name = "**NObLe, chosen decode**" if row["method"] == "noble" else row["method"]
        lines.append(f"| {name} ({row['decode']}), seed {row['seed']} | {_cells(row)} |")
    lines += ["", f"Mean ± sample standard deviation over the {final['seeds_done']} seeds "
              f"({final['seeds_done']} of {final['seeds_planned']} planned):", "",
              "| method | mean (m) | median (m) | p95 (m) | building hit | floor hit | EvAAL (m) | "
              "mean range (m) |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for method, s in final["summary"].items():
        lines.append(f"| {method} | {_spread(s['mean_error_m'])} | {_spread(s['median_error_m'])} | "
                     f"{_spread(s['p95_error_m'])} | {_spread(s['building_hit'], True)} | "
                     f"{_spread(s['floor_hit'], True)} | {_spread(s['evaal_error_m'])} | "
                     f"{s['mean_error_m']['min']:.2f} - {s['mean_error_m']['max']:.2f} |")
    summary = final["summary"]
    if "noble" in summary and "noble, old topk decode" in summary:
        new = summary["noble"]["mean_error_m"]["mean"]
        old = summary["noble, old topk decode"]["mean_error_m"]["mean"]
        verdict = "lower" if new < old else "HIGHER"
        lines += ["", f"The CV-chosen decode gives a {verdict} mean error on the validation file than the "
                  "old "
                  f"top-k decode of the same networks ({new:.2f} vs {old:.2f} m)"
                  + ("" if new < old else ": the decode ranking of the leave-users-out CV did not carry over "
                     "to the validation file; the choice stands, as the protocol requires") + "."]
    return lines


def _references(result: dict[str, Any]) -> list[str]:
    lines = [HEADER, "|---|" + "---:|" * len(METRIC_COLUMNS)]
    for row in result.get("baselines", []):
        lines.append(f"| {LABELS.get(row['method'], row['method'])} (measured here) | {_cells(row)} |")
    for name, mean, floor in PUBLISHED:
        floor_text = f"{100 * floor:.2f}%" if floor is not None else "-"
        lines.append(f"| {name} (published, not run here) | {mean:.2f} | - | - | - | - | {floor_text} | - |")
    return lines


def _error_rows(errors: dict[str, dict[str, float]], marks: list[str], label: str = "tracker") -> list[str]:
    lines = [f"| {label} | mean along walks (m) | " + " | ".join(f"after {m[3:]}" for m in marks) + " |",
             "|---|---:|" + "---:|" * len(marks)]
    for name, e in errors.items():
        lines.append(f"| {name} | {e['mean']:.2f} | " + " | ".join(f"{e[m]:.2f}" for m in marks) + " |")
    return lines


def _percent(r: float) -> str:
    return f"{abs(100 * r):.1f}% {'lower' if r >= 0 else 'higher'}"


def _imu(imu: dict[str, Any]) -> list[str]:
    errors = imu["errors"]
    marks = [k for k in next(iter(errors.values())) if k.startswith("at_")]
    walks, sim, pf = imu["walks"], imu["sim"], imu["particle_filter"]
    ordering = sorted(errors, key=lambda n: errors[n]["at_100m"])
    target = imu.get("target_tracker", "NObLe tracker")
    r_map, r_pdr = imu["noble_reduction_vs_map_aware_at_100m"], imu["noble_reduction_vs_pdr_at_100m"]
    text = [
        "No public IMU data set is available offline, so walks are simulated (assumptions in "
        "`training/imu/simulator.py`): a walkable graph per building-floor from the UJIIndoorLoc reference "
        "positions (nodes within 8 m linked, plus a minimum spanning tree), walks along shortest paths to "
        "random destinations with rounded corners, a step model (length U(0.6, 0.8) m, cadence U(1.6, 2.0) "
        f"Hz, Weinberg vertical acceleration with a per-walker constant), {sim['rate_hz']:g} Hz "
        f"accelerometer and gyroscope with white noise, constant biases (sigma {sim['gyro_bias']} rad/s on "
        "the gyroscope) and a gyroscope bias random walk. Every walk starts with "
        f"{walks['rest_s']:g} s at rest.",
        "",
    ]
    selection = imu.get("selection")
    if selection is None:  # an older results file
        text += [f"**Held-out floors**: trained on {walks['train']} walks on {walks['train_floors']}, "
                 f"scored on {walks['test']} walks on {walks['test_floors']}.", "",
                 *_error_rows(errors, marks)]
        return text
    hybrid, anchored = selection["hybrid"], selection["anchored"]
    chosen, a_config = anchored["chosen"], imu["anchored_tracker"]
    seeds = imu["anchored_seeds"]
    reduction = seeds["reduction_vs_map_aware_at_100m"]
    text += [
        f"**Protocol**: the trackers train on {walks['train']} walks on building-floors "
        f"{walks['train_floors']} (building x 5 + floor); their settings are chosen on "
        f"{selection['validation_walks']} walks on floors {walks['validation_floors']} (floor 2 of each "
        "building, held out of the trackers' training; criterion: mean error along the walks); everything "
        f"is then scored once on {walks['test']} walks of {walks['duration_s']:g} s on floors "
        f"{walks['test_floors']} (floor 1 of each building), whose walks and graphs no tracker saw before "
        "the test. Every method gets the same information: the test floor's walkable graph, the start pose "
        "and the calibrated PDR of the walk (the NObLe networks also read the raw IMU windows PDR is "
        "computed from).",
        "",
        "- **PDR**: peak step detection, Weinberg step length (population K = 0.5), gyroscope heading with "
        "the bias calibrated as a phone does: the mean yaw rate over the first "
        f"{imu['pdr']['calibration_s']:g} s at rest is subtracted. `PDR, no calibration` is the same "
        "without it (for reference).",
        f"- **{PF}** (the map-aware baseline, `training/imu/mapmatch.py`, settings unchanged): "
        f"{pf['particles']} particles (position, heading offset, step-length scale "
        f"U{tuple(pf['scale_range'])}) moved by the calibrated PDR displacement of each 1 s window, weighted "
        f"by a Gaussian (sigma {pf['map_sigma_m']:g} m) of their distance to the walkable graph, "
        "resampled when the effective sample size halves; estimate = weighted mean.",
        "- **NObLe tracker** (the earlier page's network and settings, now trained on the tracker floors "
        "only): a GRU over 1 s windows of raw IMU + the calibrated "
        "PDR position and heading + the start pose classifies the "
        f"{imu['tracker']['cell_size_m']:g} m cells along the floor's walkable graph "
        f"({walks['test_cells']} cells on the test floors); a cell's logit is a "
        "learned query dotted with the position encoding of the cell centre plus a learned prior on its "
        "distance to the PDR position (no per-floor or per-cell weights, so it runs on unseen floors); "
        f"top-{imu['tracker']['top_k']} decode. One seed (0).",
        f"- **{HYBRID}**: the baseline filter, same settings, with each particle's weight also multiplied by "
        "the NObLe tracker's probability of the cell it lies in, tempered: "
        f"((1 - {hybrid['evidence_floor']}) p + {hybrid['evidence_floor']} / C) ^ w; w chosen on the "
        f"validation floors from {[r['weight'] for r in hybrid['rows']]}: w = {hybrid['chosen_weight']:g}.",
        f"- **{ANCHORED}**: the NObLe tracker's network with the map-matched position (the baseline filter's "
        "output, computed on the training walks too) in place of the PDR position, so its cells' prior is "
        "centred on the filter's estimate and the learned part refines it from the raw IMU; optionally a "
        "learned shift of the prior's centre. Cell size, shift and top-k chosen on the validation floors "
        f"(candidates trained on {anchored['walks']} walks for {anchored['epochs']} epochs): "
        f"{chosen['cell_size_m']:g} m cells ({walks['test_cells_anchored']} on the test floors), shift "
        f"{'on' if chosen['shift'] else 'off'}, top-{chosen['top_k']}; then trained at the full budget "
        f"({a_config['epochs']} epochs) with seeds {seeds['seeds']}; its row is the mean over the seeds. "
        "It uses no map information beyond the baseline's (the graph, through the filter, and the cells "
        "along the same graph); what it adds is the learned classifier.",
        "",
        "Held-out test floors:",
        "",
        *_error_rows(errors, marks),
        "",
        f"{ANCHORED}, per seed after 100 m: "
        + ", ".join(f"seed {s} {e['at_100m']:.2f} m" for s, e in zip(seeds["seeds"], seeds["errors"],
                                                                       strict=True))
        + f"; reduction vs the {PF}: mean {100 * reduction['mean']:.1f}%, range "
        f"{100 * reduction['min']:.1f}% to {100 * reduction['max']:.1f}%.",
        "",
        f"Ordering after 100 m (lowest error first): {' < '.join(ordering)}. The NObLe variant the target "
        f"compares (lowest validation error): **{target}**, after 100 m {_percent(r_map)} than the {PF}, "
        f"{_percent(r_pdr)} than calibrated PDR. After 100 m vs the {PF}: "
        + ", ".join(f"{n} {_percent(r)}" for n, r in imu["reductions_vs_map_aware_at_100m"].items())
        + ". First 10 m: " + ", ".join(f"{n} {e['at_10m']:.2f} m" for n, e in errors.items()) + ".",
        "",
        "Validation floors (the choices):",
        "",
        *_error_rows(selection["validation_errors"], marks, "tracker (chosen settings)"),
        "",
        "| cell likelihood weight w | mean along walks (m) | after 100m |", "|---:|---:|---:|",
        *[f"| {r['weight']:g} | {r['mean']:.2f} | {r['at_100m']:.2f} |" for r in hybrid["rows"]],
        "",
        "| cells (m) | shift | top-k | mean along walks (m) | after 100m |", "|---:|:---:|---:|---:|---:|",
        *[f"| {r['cell_size_m']:g} | {'on' if r['shift'] else 'off'} | {r['top_k']} | {r['mean']:.2f} | "
          f"{r['at_100m']:.2f} |" for r in anchored["rows"]],
    ]
    pf_val = selection["validation_errors"][PF]["mean"]
    hybrid_worse = all(r["mean"] > pf_val for r in hybrid["rows"])
    anchored_val = selection["validation_errors"][ANCHORED]["mean"]
    if r_map < TARGET_IMU:
        text += ["", "Why the target is not met: in this simulation the walks follow the graph to within "
                 "~0.3 m (corner rounding only) and the graph is given to the filter exactly, so weighting "
                 "hypotheses by their distance to it removes most of PDR's heading and step-length drift. "
                 "The NObLe tracker's cell probabilities are centred on the drifting PDR position (its "
                 "prior is a distance to it), so as an extra likelihood they pull the filter towards PDR"
                 + (" (every weight tried raised the validation error above the filter's "
                    f"{pf_val:.2f} m, table above)." if hybrid_worse else ".")
                 + " Anchored on the filter's track instead, the classifier starts from the baseline's "
                 "answer and has to learn what the filter gets wrong from the raw IMU windows; on the "
                 f"validation floors it reached {anchored_val:.2f} m mean against the filter's "
                 f"{pf_val:.2f} m. Not tried: a network that reads the particle cloud (not just its mean) "
                 "or the graph's shape around it, and training on more floors (7 training floors here).",
                 "", "Where the filter's error lies ([noble_imu_components.md](noble_imu_components.md), "
                 "`python -m training.imu.diagnose`): about 0.9 m of it is along the walking direction at "
                 "every distance walked, i.e. how far the walker went, which depends on each walker's "
                 "step-length scale: a step's acceleration amplitude gives only the ratio of step length "
                 "to the walker's Weinberg constant, drawn independently. Given the walker's true scale "
                 "(an oracle), the same filter's error on the validation floors halves; given a scale "
                 "estimated from the centripetal acceleration in turns (the one cue the IMU has), it does "
                 "not improve. The target needs a tracker that knows how far the walker went nearly as "
                 "well as that oracle; figures on the linked page."]
    return text


def _threads(result: dict[str, Any]) -> str:
    """Torch threads (``--threads``) per part, e.g. "2 torch threads (WiFi part), 1 (IMU part)"."""
    by_part = result.get("threads_by_part") or {"all": result["threads"]}
    parts = [f"{n} ({'WiFi' if part == 'wifi' else 'IMU' if part == 'imu' else 'both'} part"
             f"{'s' if part == 'all' else ''})" for part, n in sorted(by_part.items(), reverse=True)]
    return "torch threads (`--threads`): " + ", ".join(parts)


def _timing(result: dict[str, Any]) -> list[str]:
    lines = ["| stage | seconds |", "|---|---:|"]
    lines += [f"| {stage} | {seconds:.0f} |" for stage, seconds in result["seconds"].items()]
    return [*lines, f"| **total** | **{result['total_seconds']:.0f}** |"]


def write_markdown(result: dict[str, Any], path: Path) -> Path:
    """Render the page (sections whose part has not run are left out and the page says so)."""
    cv = result.get("cv")
    partial = result.get("partial", True)
    minutes = result["total_seconds"] / 60
    text = [
        "# NObLe localization results",
        "",
        "Reproduce with `make results-noble` (= `nice python -m training.noble.results`), CPU only, "
        f"{_threads(result)}, on this project's shared 2-core VM (no GPU); the stages below "
        f"took {minutes:.0f} min in total (the WiFi and IMU parts ran as `--part wifi` and `--part imu`"
        + (f"; the IMU part last finished at {result['imu']['finished_utc']} UTC"
           if result.get("imu", {}).get("finished_utc") else "")
        + "; on a machine shared with other jobs, so timings are upper bounds). Every number on "
        "this page comes from `noble.json` beside it.",
        "",
    ]
    if cv is not None and any(r.get("reused") for r in cv["rows"]):
        text += ["The WiFi part was interrupted once after the CV search and resumed with `--resume`: the CV "
                 "candidates (flagged `reused` in `noble.json`) were scored by the first process and not "
                 "trained again; the final seeds were trained by the second.", ""]
    if partial:
        note = f" ({result['partial_note']})" if result.get("partial_note") else ""
        text += ["**PARTIAL RESULTS**: the run had not finished every stage when this page was written "
                 f"(`noble.json` has `\"partial\": true`){note}; missing sections are marked.", ""]
    text += ["## Targets", "", *_targets(result), ""]
    if cv is not None:
        folds = "; ".join(f"fold {i + 1}: users {f['users']} / phones {f['phones']}, {f['rows']:,} rows"
                          for i, f in enumerate(cv["folds"]))
        search = cv["search"]
        text += [
            "## Selection: leave-users-out cross-validation on `trainingData.csv` only",
            "",
            f"Every choice is made on the {result['data']['train_rows']:,} training rows; the validation "
            "file is read once, at the end. Folds group rows by person and phone (users sharing a phone stay "
            f"together): {folds}. Each fold's network is trained on the other folds and scores its held-out "
            "rows (each training row is scored once, by a network that never saw its person or phone). "
            f"{_criterion_text(cv)} The search is staged to fit the CPU: (1) augmentation (offset dB, "
            f"drop probability) in {search['augmentations']} at {search['epochs'][0]} epochs; (2) epochs in "
            f"{search['epochs']} at the chosen augmentation; (3) the network (hidden widths, and the input: "
            "powed RSSI alone or with the gain-free relative channel, `relative N dB`) in "
            f"{_networks(search.get('networks') or [[search['base']['hidden'], 0.0]])}; (4) ensemble size "
            f"in {search['members']}: the "
            f"smallest within {search['tolerance_m']} m of the best. Each network has heads for cells of "
            f"{'/'.join(f'{s:g}' for s in search['base']['cell_sizes'])} m; the cell sizes used to decode, "
            f"the decode kind, top-k and snapping ({search['decodes']} decodes) are scored on every fold "
            "model and chosen with the training setting (decoding needs no training).",
            "",
            "Decodes: `centre` = the most probable cell's centre; `topk` (the first decode of this "
            "project) = probability-weighted mean of the top-k cells of ALL building-floors; `plan` (new) = "
            "the same restricted to the predicted building-floor, snapped to the nearest occupied cell of "
            "that floor when farther than `snap` from all of them; `building` (new) = the weighted mean over "
            "the top-k cells of every floor of the predicted building (floors are stacked, so a neighbouring "
            "floor's probability still says where in the plan the phone is), then snapped onto the predicted "
            "building-floor as `plan` does (`training/noble/decoding.py`). `plan` and `building` keep the "
            "prediction on the predicted building-floor, within `snap` of an occupied cell.",
            "",
            *_cv_tables(cv),
            "",
            "CV errors are larger than validation errors: each training user surveyed particular areas, so "
            "many held-out rows lie where none of the remaining users measured (the uncovered rows). CV "
            "ranks the settings; it does not predict the validation error.",
            "",
        ]
        if cv.get("chosen"):
            chosen = cv["chosen"]
            text += [f"**Chosen** ({chosen['rule']}): {chosen['setting']}, decode "
                     f"`{chosen['decode_label']}`, CV mean {chosen[_criterion(cv)[0]]:.2f} m over the "
                     f"{_criterion(cv)[1]} ({chosen['cv_mean_error_m']:.2f} m over all rows). Best "
                     "decodes of that setting:", "",
                     *_top_decodes(cv), ""]
        else:
            text += ["(The search had not finished: no choice yet.)", ""]
    if "final" in result:
        final = result["final"]
        text += [
            f"## UJIIndoorLoc validation file ({result['data']['validation_rows']:,} rows), scored once",
            "",
            f"The chosen setting trained on all training rows with seeds 0, 100, ... "
            f"({final['seeds_done']} of {final['seeds_planned']} seeds done). The chosen decode is the "
            "headline; the two old decodes of the same networks are shown beside it for comparison only "
            "(nothing was chosen on them).",
            "",
            *_validation(result),
            "",
        ]
        served = result.get("served")
        if served:
            v = served["validation"]
            what = "the chosen setting with ONE net (the first net of the seed-0 ensemble: `noble, 1 net` " \
                "above), so that `make serve` trains one net, not an ensemble" if served.get("method") == \
                "noble, 1 net" else "this configuration, seed 0"
            text += [f"Served model (`make demo-models` -> `noble-wifi`): {what}: mean "
                     f"{v['mean_error_m']:.2f} m, floor {100 * v['floor_hit']:.2f}%, building "
                     f"{100 * v['building_hit']:.2f}% on the validation rows; "
                     "`tests/integration/test_noble_serving.py` checks that the service reproduces it over "
                     "HTTP.", ""]
    history = path.parent / SEARCHES_JSON
    if history.exists():
        text += _history(json.loads(history.read_text()))
    fold_check = path.parent / FOLD_CHECK_JSON
    if fold_check.exists():
        text += _fold_check(json.loads(fold_check.read_text()))
    if result.get("baselines"):
        text += ["## References", "", *_references(result), "",
                 "EvAAL error = 2D error + 4 m per floor miss + 50 m per building miss.", ""]
        if any(r["method"] == "mlp-regression" for r in result["baselines"]):  # the WiFi part finished
            text += ["![error CDF](noble_error_cdf.png)", "",
                     "![predicted vs true positions](noble_positions.png)", ""]
        else:
            text += ["(The MLP regression baseline and the WiFi figures come at the end of the run: not "
                     "reached.)", ""]
    if result.get("imu") and "particle_filter" in result["imu"]:
        text += ["## IMU tracking (simulated)", "", *_imu(result["imu"]), "",
                 "![error growth](noble_imu_error.png)", "", "![trajectories](noble_trajectories.png)", ""]
    else:
        text += ["## IMU tracking (simulated)", "", "(Not run yet in this results file.)", ""]
    text += ["## Timings", "", *_timing(result), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text))
    return path
