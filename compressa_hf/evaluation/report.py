"""Cells -> the report: a Table-1-style markdown table per network, the same numbers as JSON, a PNG of accuracy
against stored bytes, and a significance section (chance, standard error, paired bootstrap vs the best baseline).

A cell is one (method, ratio, seed, network) run, stored as a dict (see `compressa_hf.evaluation.runner`); the
full-data reference has `ratio` None. Methods of kind "ours" and the reference are never "the best baseline", nor
are the variant rows, `<method>+soft` (`--soft_labels`) and `<row>+aug` (`--augment`): each of those is compared
with the row it varies (its hard-label row; the same row without augmentation).
Under `--folds` a cell also has a `fold`: per seed, the cells of all folds together test every pooled clip once, so
a seed's correctness vector is their `correct` lists in fold order, and means and stds are over folds x seeds. A
seed counts only when every one of its cells is "ok" (a method that cannot meet the budget on one fold is not
averaged over the others).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from compressa_hf.evaluation.stats import binomial_se, paired_bootstrap


def is_variant(row: str) -> bool:
    """Whether `row` is a method's row with soft labels or augmentation (`uniform+soft`, `dm+aug`, ...)."""
    return "+" in row


def parent_row(row: str) -> str:
    """The row a variant is compared with: its name less the last `+...` (`uniform+soft+aug` -> `uniform+soft`)."""
    return row.rsplit("+", 1)[0]


def ratio_key(ratio: float | None) -> str:
    return "full" if ratio is None else f"{ratio:g}"


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n}"


def _complete_seeds(group: list[dict]) -> dict[int, list[dict]]:
    """seed -> its cells in fold order, for the seeds all of whose cells (one per fold) are "ok"."""
    by_seed: dict[int, list[dict]] = defaultdict(list)
    for c in sorted(group, key=lambda c: (c["seed"], c.get("fold", 0))):
        by_seed[c["seed"]].append(c)
    return {s: cs for s, cs in by_seed.items() if all(c["status"] == "ok" for c in cs)}


def summarise(cells: list[dict], methods: list[str], ratios: list[float], archs: list[str], meta: dict) -> dict:
    """Aggregate cells into the report dict (means, stds, times, significance, held-out clips per number)."""
    by = defaultdict(list)
    for c in cells:
        by[(c["arch"], c["method"], ratio_key(c["ratio"]))].append(c)
    rkeys = [ratio_key(r) for r in ratios]
    tables: dict[str, dict] = {}
    for arch in archs:
        table: dict[str, dict] = {}
        for method in [*methods, "full"]:
            row = {}
            for rk in [*rkeys, "full"]:
                group = by.get((arch, method, rk), [])
                if not group:
                    continue
                complete = _complete_seeds(group)
                ok = [c for seed_cells in complete.values() for c in seed_cells]
                if not ok:
                    bad = next(
                        c for c in sorted(group, key=lambda c: (c["seed"], c.get("fold", 0))) if c["status"] != "ok"
                    )
                    where = f"fold {bad['fold']}: " if "fold" in bad else ""
                    row[rk] = {"status": bad["status"], "reason": where + bad.get("reason", "")}
                    continue
                mean, std = _mean_std([c["accuracy"] for c in ok])
                row[rk] = {
                    "status": "ok",
                    # Held-out clips behind each seed's number (all folds' test clips under --folds).
                    "clips": sum(len(c["correct"]) for c in next(iter(complete.values()))),
                    "mean": mean,
                    "std": std,
                    "seeds": [c["seed"] for c in ok],
                    "accuracies": [c["accuracy"] for c in ok],
                    "train_accuracy": float(np.mean([c["train_accuracy"] for c in ok])),
                    "stored_bytes": float(np.mean([c["stored_bytes"] for c in ok])),
                    "budget_bytes": ok[0].get("budget_bytes"),
                    "compress_s": float(np.mean([c["compress_s"] for c in ok])),
                    "train_s": float(np.mean([c["train_s"] for c in ok])),
                }
                if any("fold" in c for c in ok):
                    row[rk]["folds"] = [c["fold"] for c in ok]
                stats = [c["frames_per_row_stats"] for c in ok if "frames_per_row_stats" in c]
                if stats:  # rows of different K (PRISM's key frames), over every cell's rows
                    row[rk]["frames_per_row"] = {
                        "mean": float(np.mean([s["mean"] for s in stats])),
                        "min": min(s["min"] for s in stats),
                        "max": max(s["max"] for s in stats),
                    }
            if row:
                table[method] = row
        tables[arch] = table

    kinds = {c["method"]: c.get("kind", "") for c in cells}
    significance: dict[str, dict] = {}
    for arch in archs:
        per_ratio = {}
        for rk in rkeys:
            means = {
                m: tables[arch][m][rk]["mean"]
                for m in methods
                if rk in tables[arch].get(m, {}) and tables[arch][m][rk]["status"] == "ok"
            }
            baselines = sorted(
                (m for m in means if kinds.get(m) not in ("ours", "reference") and not is_variant(m)),
                key=lambda m: -means[m],
            )
            if not baselines:
                continue
            matrices = {  # (seeds, pooled held-out clips)
                m: np.array(
                    [
                        [x for c in seed_cells for x in c["correct"]]
                        for seed_cells in _complete_seeds(by[(arch, m, rk)]).values()
                    ]
                )
                for m in means
            }
            comparisons = {}
            for m in sorted(means, key=lambda m: m != baselines[0]):  # the best first: its row is the pair's
                ref = baselines[0] if m != baselines[0] else (baselines[1] if len(baselines) > 1 else None)
                if is_variant(m):  # soft labels / augmentation against the same row without them
                    ref = parent_row(m) if parent_row(m) in means else None
                if ref is None or comparisons.get(ref, {}).get("against") == m:
                    continue  # one row per pair: the runner-up against the best is the best against it, mirrored
                comparisons[m] = {"against": ref, **paired_bootstrap(matrices[m], matrices[ref]).to_dict()}
            tied = [m for m in baselines if means[m] == means[baselines[0]]]
            per_ratio[rk] = {"best_baseline": baselines[0], "comparisons": comparisons}
            if len(tied) > 1:
                per_ratio[rk]["tied_best_baselines"] = tied
        significance[arch] = per_ratio

    times = defaultdict(list)
    for c in cells:
        if c["status"] == "ok":
            times[c["method"]].append(c["compress_s"])
    return {
        **meta,
        "methods": methods,
        "ratios": ratios,
        "archs": archs,
        "kinds": kinds,
        "tables": tables,
        "significance": significance,
        "compress_seconds_per_cell": {m: float(np.mean(v)) for m, v in times.items()},
        "cells": cells,
    }


def to_markdown(report: dict) -> str:
    """The report as markdown: one table per network, then what the differences mean."""
    rkeys = [ratio_key(r) for r in report["ratios"]]
    budgets = report.get("budget_bytes", {})
    n_test = report["test_clips"]
    chance = report["chance"]
    lines = [f"# Evaluation: {report['source']}", "", _protocol_md(report), ""]
    if report.get("augment"):
        aug = report["augment"]
        lines[-1:-1] = [
            "",
            f"Rows `+aug` train on the same sets as their rows with augmentation `{aug['strategy']}` "
            f"({'one transform per batch' if aug['mode'] == 'single' else 'every transform'}, one draw per clip for "
            "all its frames; `compressa_hf.evaluation.augment`).",
        ]
    for arch in report["archs"]:
        table = report["tables"].get(arch, {})
        header = ["Method", "Kind", *[f"{rk} %" for rk in rkeys], "Full data", "Compress s / cell", "Train s / run"]
        lines += [f"## {arch}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for method in [*report["methods"], "full"]:
            row = table.get(method)
            if row is None:
                continue
            cells = []
            for rk in [*rkeys, "full"]:
                entry = row.get(rk)
                if entry is None:
                    cells.append("")
                elif entry["status"] != "ok":
                    cells.append(entry["status"])
                else:
                    cells.append(f"{100 * entry['mean']:.1f} +- {100 * entry['std']:.1f}")
            ok = [e for e in row.values() if e.get("status") == "ok"]
            # A row with no finished cell (n/a at every ratio) has no time to show: a dash, not "nan".
            comp = f"{np.mean([e['compress_s'] for e in ok]):.1f}" if ok else "-"
            train = f"{np.mean([e['train_s'] for e in ok]):.1f}" if ok else "-"
            kind = report["kinds"].get(method, "")
            lines.append("| " + " | ".join([method, kind, *cells, comp, train]) + " |")
        per_fold = report.get("protocol", {}).get("budget_bytes_per_fold")
        if per_fold:
            span = {rk: f"{_fmt_bytes(min(v))} - {_fmt_bytes(max(v))}" for rk, v in per_fold.items()}
            full = report["protocol"]["full_bytes_per_fold"]
            lines += [
                "",
                "Budgets (per fold's training set): "
                + "; ".join(f"{rk} % = {span[rk]}" for rk in rkeys if rk in span)
                + f"; full data = {_fmt_bytes(min(full))} - {_fmt_bytes(max(full))}.",
            ]
        elif budgets:
            lines += [
                "",
                "Budgets: "
                + "; ".join(f"{rk} % = {_fmt_bytes(budgets[rk])}" for rk in rkeys if rk in budgets)
                + f"; full data = {_fmt_bytes(report['full_bytes'])}.",
            ]
        varying = [
            f"{method} at {rk} %: mean {e['frames_per_row']['mean']:.2f}, min {e['frames_per_row']['min']}, "
            f"max {e['frames_per_row']['max']}"
            for method, row in table.items()
            for rk, e in row.items()
            if "frames_per_row" in e
        ]
        if varying:
            lines += ["", "Frames per video of sets whose videos keep different numbers: " + "; ".join(varying) + "."]
        lines += ["", *_significance_md(report, arch, rkeys, n_test, chance), ""]
    return "\n".join(lines)


def _protocol_md(report: dict) -> str:
    """The paragraph saying what was trained on, what was tested on and how many clips stand behind each number."""
    protocol = report.get("protocol") or {"name": "split"}
    n, frames, train = report["test_clips"], report.get("test_frames"), report.get("train_config")
    if protocol["name"] == "folds":
        k, (a, b) = protocol["folds"], protocol["splits"]
        lo, hi = min(protocol["fold_train_clips"]), max(protocol["fold_train_clips"])
        return (
            f"Accuracy (%) of a network trained from scratch on each compressed set, by {k}-fold stratified "
            f"cross-validation over the {a!r} and {b!r} splits pooled ({n} clips, fold seed {protocol['fold_seed']}): "
            f"for each fold a network trains on the compressed set of the other {k - 1} folds "
            f"({lo if lo == hi else f'{lo}-{hi}'} clips; budgets are per fold's "
            f"training set) and is tested on the fold ({frames} uniform frames per clip), so every one of the {n} "
            f"clips is tested once per seed. Mean +- std over {k} folds x seeds, last epoch. Folds suit a random split "
            "whose scenes appear in both train and test (arid6_iid); a scene- or subject-disjoint split keeps its "
            f"test split. Train: {train}."
        )
    if protocol["name"] == "validation":
        return (
            f"Accuracy (%) of a network trained from scratch on each compressed set of {protocol['train_clips']} "
            f"clips of the {protocol['split']!r} split and tested on a stratified held-out "
            f"{protocol['fraction']:g} of it ({n} clips, {frames} uniform frames each; fold seed "
            f"{protocol['fold_seed']}), mean +- std over seeds, last epoch. The test split was not read: these "
            f"numbers are for choosing settings, not for reporting. Train: {train}."
        )
    return (
        f"Accuracy (%) of a network trained from scratch on each compressed set and tested on {n} real test "
        f"clips ({frames} uniform frames each), mean +- std over seeds, last epoch. Train: {train}."
    )


def _significance_md(report: dict, arch: str, rkeys: list[str], n_test: int, chance: dict) -> list[str]:
    table = report["tables"].get(arch, {})
    accs = [e["mean"] for row in table.values() for e in row.values() if e.get("status") == "ok"]
    typical = float(np.median(accs)) if accs else 0.5
    split = report.get("protocol", {}).get("name", "split") == "split"
    if split:
        clips = (
            f"The test set has {n_test} clips, so one clip is {100 / max(n_test, 1):.1f} points and one run's accuracy"
        )
    else:  # folds / validation: a seed's number pools every held-out clip
        clips = (
            f"Each seed's number pools {n_test} held-out clips, so one clip is {100 / max(n_test, 1):.1f} points and "
            "one seed's accuracy"
        )
    lines = [
        f"**What the differences mean ({arch}).** Chance is {100 * chance['uniform']:.1f} % "
        f"(always guessing the most common {'test' if split else 'held-out'} class: {100 * chance['majority']:.1f} %). "
        f"{clips} near {100 * typical:.0f} % has a standard error of {100 * binomial_se(typical, n_test):.1f} points. "
        "Below, each method against the best baseline at the same ratio (the best baseline against the runner-up): "
        "the difference in points and its 95 % paired bootstrap interval over test clips and seeds.",
        "",
        "| Ratio | Method | vs | Difference (points) | 95 % interval | Verdict |",
        "|---|---|---|---|---|---|",
    ]
    sig = report["significance"].get(arch, {})
    ties = []
    for rk in rkeys:
        if rk not in sig:
            continue
        if sig[rk].get("tied_best_baselines"):
            ties.append(f"{rk} %: {', '.join(sig[rk]['tied_best_baselines'])}")
        comps = sig[rk]["comparisons"]
        for method in sorted(comps, key=lambda m: -comps[m]["diff"]):
            c = comps[method]
            lines.append(
                f"| {rk} % | {method} | {c['against']} | {100 * c['diff']:+.1f} | "
                f"[{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] | {c['verdict']} |"
            )
    if ties:
        lines += ["", "Tied for the best baseline (the first named is compared with the others): " + "; ".join(ties)]
    return lines


#: One marker per method (in the order of the report's methods), so two methods on the same point stay apart.
MARKERS = "osD^vP*Xh<>pd"


def point_offsets(n: int, spread: float = 0.06) -> list[float]:
    """Factors that set the points of `n` methods side by side around one budget on the log bytes axis.

    Every method at a ratio stores about the same bytes, so without them the points (and error bars) of methods
    with close accuracies sit on each other and one hides another. The whole group stays within a factor e^0.5
    (1.65) of the budget, narrower than the distance between ratios a factor 2 apart (`k1`, `k2`).
    """
    if n <= 1:
        return [1.0]
    step = min(spread, 0.5 / (n - 1))
    return [math.exp(step * (i - (n - 1) / 2)) for i in range(n)]


def plot(report: dict, path: str) -> None:
    """Accuracy against stored bytes (log scale), one panel per network, full data as a reference line. Methods get
    distinct markers and are set side by side at each budget (`point_offsets`); the legend sits outside the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    archs = report["archs"]
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.5), squeeze=False)
    rkeys = [ratio_key(r) for r in report["ratios"]]
    offsets = point_offsets(len(report["methods"]))
    for ax, arch in zip(axes[0], archs):
        table = report["tables"].get(arch, {})
        for i, method in enumerate(report["methods"]):
            row = table.get(method, {})
            pts = [
                (row[rk]["stored_bytes"], row[rk]["mean"], row[rk]["std"])
                for rk in rkeys
                if rk in row and row[rk]["status"] == "ok"
            ]
            if not pts:
                continue
            x, y, e = (np.array(v) for v in zip(*pts))
            ours = report["kinds"].get(method) == "ours"
            ax.errorbar(
                x * offsets[i],
                100 * y,
                yerr=100 * e,
                fmt="-" + MARKERS[i % len(MARKERS)],
                capsize=3,
                label=method,
                lw=2.5 if ours else 1.2,
                markersize=7 if ours else 5,
                alpha=0.85,
            )
        full = table.get("full", {}).get("full")
        if full and full["status"] == "ok":
            ax.axhline(
                100 * full["mean"], color="k", ls="--", lw=1, label=f"full data ({_fmt_bytes(full['stored_bytes'])})"
            )
        full_aug = table.get("full+aug", {}).get("full")
        if full_aug and full_aug["status"] == "ok":
            ax.axhline(100 * full_aug["mean"], color="k", ls="-.", lw=1, label="full data, augmented")
        ax.axhline(100 * report["chance"]["uniform"], color="grey", ls=":", lw=1, label="chance")
        ax.set_xscale("log")
        ax.set_xlabel("stored bytes")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{report['source']} - {arch}")
        ax.grid(alpha=0.3)
    legend: dict[str, object] = {}  # one entry per label over all panels
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.tight_layout()
    fig.legend(list(legend.values()), list(legend), fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
