"""Turn the trial records into report.md (+ PNGs) and machine-readable results.csv/results.json.

Everything is derived from the inputs and sorted, so the same records give byte-identical
report.md, results.csv and results.json (every resampling is seeded).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bench.config import TrainConfig
from bench.errors import BenchError
from bench.records import FINAL_PREFIX, PERIODIC_PREFIX, TrialResult, counts, periodic_key
from bench.stats import CI_METHOD, compare, expected_best, summarize

KEY_METRICS = ["eval/label_accuracy", "eval/code_accuracy", "eval/kid", "eval/classifier_score",
               "eval/class_coverage"]
LABEL_METRIC = "eval/label_accuracy"
CLASS_ACC_PREFIX = "eval/class_acc/"
INTRA_FID_PREFIX = "eval/intra_fid/"
PER_CLASS_PREFIXES = (CLASS_ACC_PREFIX, INTRA_FID_PREFIX)
# Fidelity vs diversity (issue #9): the table with real-data floors, and the trade-off plane.
FIDELITY_METRICS = ["eval/precision", "eval/recall", "eval/density", "eval/coverage", "eval/intra_fid", "eval/cas",
                    "eval/memorization"]
# stored as fractions in [0, 1]
PERCENT_METRICS = {LABEL_METRIC, "eval/code_accuracy", "eval/class_coverage", "eval/cas"}
NAMES = {"eval/fid": "FID", "eval/kid": "KID", "eval/kid_std": "KID std", "eval/label_accuracy": "label accuracy",
         "eval/classifier_score": "classifier score", "eval/class_coverage": "class coverage",
         "eval/class_entropy": "class entropy", "eval/precision": "precision", "eval/recall": "recall",
         "eval/density": "density", "eval/coverage": "coverage", "eval/intra_fid": "intra-FID", "eval/cas": "CAS",
         "eval/memorization": "memorization", "eval/code_accuracy": "code accuracy (matched)",
         "perf/img_per_s": "img/s", "perf/train_s": "train s"}
# Shared by the preset, so a difference from the dataclass default says nothing about a variant.
BUDGET_KEYS = {"seed", "steps", "batch_size", "eval_every", "eval_n", "final_n"}
REQUIRED_COLUMNS = ["run_id", "run_name", "variant", "phase", "seed", "status", "diverged"]
ALPHA = 0.05
MISSING = "—"
TOO_FEW = "n too small"  # in place of a confidence interval of one run


# --- formatting ------------------------------------------------------------------------------
def _is_percent(key: str) -> bool:
    return key in PERCENT_METRICS or key.startswith(CLASS_ACC_PREFIX)


def _by_class(columns: list[str], prefix: str) -> list[str]:
    """The per-class columns of one prefix, in class order."""
    return sorted((c for c in columns if c.startswith(prefix)), key=lambda c: int(c.removeprefix(prefix)))


def fmt(key: str, value: Any, *, signed: bool = False) -> str:
    """Accuracies as percentages with 1 decimal; other metrics with 4 significant digits."""
    if value is None or not np.isfinite(value):
        return MISSING
    sign = "+" if signed else ""
    if _is_percent(key):
        return f"{100 * value:{sign}.1f}" + (" pp" if signed else "%")
    if abs(value) >= 1e4:  # throughput: 12345 rather than 1.234e+04
        return f"{value:{sign},.0f}"
    return f"{value:{sign}.4g}"


def _p(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else MISSING


def _name(key: str, directions: dict[str, bool]) -> str:
    arrow = {True: " ↑", False: " ↓"}.get(directions.get(key), "")
    return NAMES.get(key, key) + arrow


def md_table(table: pd.DataFrame) -> str:
    """A GitHub markdown table; cells are str()-ed with pipes escaped and newlines flattened."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(c) for c in table.columns) + " |",
             "|" + "|".join(" --- " for _ in table.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


# --- inputs ----------------------------------------------------------------------------------
def _parse(value: Any) -> Any:
    # MLflow stores params as strings; compare "0.0002" with the default 2e-4 as numbers.
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _prepare(runs: pd.DataFrame, meta: dict) -> tuple[pd.DataFrame, list[str]]:
    if runs.empty:
        raise BenchError(f"no runs to report in experiment {meta.get('experiment')!r}; run `bench run` first")
    missing = [c for c in REQUIRED_COLUMNS if c not in runs.columns]
    if missing:
        raise BenchError(f"runs lack columns {missing}: these records were not written by this gan-bench; re-run them")
    if "primary_metric" not in meta:
        raise BenchError("the session metadata has no primary_metric (its parent run is missing?); re-run `bench run`")
    primary = meta["primary_metric"]
    metrics = [c for c in runs.columns if c.startswith(("eval/", "perf/"))]
    if primary not in metrics:
        raise BenchError(f"primary metric {primary!r} is not recorded by any run; choose one of {sorted(metrics)}")
    for key in dict.fromkeys([primary, LABEL_METRIC]):
        if key in metrics and key not in meta.get("higher_is_better", {}):
            raise BenchError(f"meta['higher_is_better'] has no direction for {key!r}; add it")
    runs = runs.copy()
    for column in ("preset", "trial_id", "error", "grid_path", "config"):
        if column not in runs.columns:
            runs[column] = None
    runs["seed"] = runs["seed"].astype(int)
    for flag in ("diverged", "pruned"):  # pruned: stopped early by the scheduler, no full-N evaluation
        runs[flag] = runs[flag].fillna(0).astype(int) if flag in runs.columns else 0
    runs["config"] = [{k: _parse(v) for k, v in c.items()} if isinstance(c, dict) else {} for c in runs["config"]]
    flags = zip(runs["status"], runs["diverged"], runs["pruned"], strict=True)
    runs["ok"] = [counts(TrialResult.from_store(status, diverged, pruned, {})) for status, diverged, pruned in flags]
    # A diverged or pruned run may carry a periodic small-N number; it must not be averaged.
    runs.loc[~runs["ok"], metrics] = np.nan
    runs = runs.sort_values(["variant", "phase", "seed", "run_name", "run_id"], kind="stable").reset_index(drop=True)
    ordered = [primary] + [k for k in KEY_METRICS if k in metrics and k != primary]
    return runs, ordered + sorted(set(metrics) - set(ordered))


def _status(run: pd.Series) -> str:
    if run["diverged"]:
        return "diverged"
    if run["pruned"]:
        return "pruned"
    if run["status"] == "FINISHED":
        return "ok"
    if run["status"] == "FAILED":
        error = run["error"] if isinstance(run["error"], str) and run["error"] else "no error recorded"
        return "failed: " + (error if len(error) <= 120 else error[:117] + "...")
    return str(run["status"]).lower()


def _headline(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each variant's seeds-phase runs; a variant without a seeds phase falls back to all its runs
    (named in the second value, since its runs differ in config)."""
    has_seeds = runs.groupby("variant")["phase"].transform(lambda p: (p == "seeds").any())
    headline = runs[(runs["phase"] == "seeds") | ~has_seeds]
    return headline, sorted(runs.loc[~has_seeds, "variant"].unique())


def _best_first(runs: pd.DataFrame, key: str, higher: bool) -> pd.DataFrame:
    """ok runs, best on `key` first (ties by run name); runs without the metric last."""
    ok = runs[runs["ok"]]
    return ok.sort_values([key, "run_name"], ascending=[not higher, True], na_position="last", kind="stable")


# --- aggregates --------------------------------------------------------------------------------
def _defaults(variant: str) -> dict[str, Any]:
    """The variant's config defaults (its recipe's parts included), or the shared ones for a variant
    this installation cannot load."""
    from bench import registry

    try:
        cls = registry.get(variant).Config
    except BenchError:
        cls = TrainConfig
    return {f.name: f.default for f in dataclasses.fields(cls)}


def _shown_config(representative: dict[str, dict]) -> dict[str, dict]:
    """Per variant, the config keys that differ between variants or (optimizer/model keys) from that
    variant's defaults (a `--set` of a part shows); the seed and the preset's budget are left out."""
    defaults = {v: _defaults(v) for v in representative}
    keys = sorted(set().union(*representative.values()) - {"seed"}) if representative else []
    differs = {k for k in keys if len({repr(c.get(k)) for c in representative.values()}) > 1}
    off_default = {k for k in keys if k not in BUDGET_KEYS
                   and any(k in c and k in defaults[v] and c[k] != defaults[v][k] for v, c in representative.items())}
    shown = [k for k in keys if k in differs or k in off_default]
    return {v: {k: c[k] for k in shown if k in c} for v, c in representative.items()}


def _aggregate(headline: pd.DataFrame, metrics: list[str], primary: str, higher: bool) -> list[dict]:
    """One record per variant, best variant on the primary metric first."""
    records = []
    for variant, group in headline.groupby("variant", sort=True):
        best = _best_first(group, primary, higher)
        source = best.iloc[0] if len(best) else group.iloc[0]
        records.append({
            "variant": variant, "n": int(group["ok"].sum()), "n_diverged": int(group["diverged"].sum()),
            "n_pruned": int(group["pruned"].sum()),
            "n_failed": int((~group["ok"] & (group["diverged"] == 0) & (group["pruned"] == 0)).sum()),
            "best_run_id": source["run_id"], "best_config": source["config"],
            "metrics": {key: summarize(group[key].to_numpy(dtype=float)) for key in metrics},
        })
    shown = _shown_config({r["variant"]: r["best_config"] for r in records})
    for record in records:
        record["shown_config"] = shown[record["variant"]]
    mean = [r["metrics"][primary]["mean"] for r in records]
    order = sorted(range(len(records)), key=lambda i: (math.isnan(mean[i]), -mean[i] if higher else mean[i]))
    return [dict(records[i], rank=rank) for rank, i in enumerate(order, start=1)]


def _comparisons(headline: pd.DataFrame, ranked: list[str], key: str,
                 higher: bool) -> tuple[pd.DataFrame | None, list[str]]:
    """compare() over the variants with >= 2 finished values of `key`; also the untested names."""
    groups = {v: headline.loc[headline["variant"] == v, key].dropna().to_numpy(dtype=float) for v in ranked}
    testable = {v: g for v, g in groups.items() if len(g) >= 2}
    untested = [v for v, g in groups.items() if len(g) < 2]
    table = compare(testable, higher_is_better=higher, alpha=ALPHA) if len(testable) >= 2 else None
    return table, untested


# --- figures -----------------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> None:
    # No version stamp in the PNG: the same inputs give the same bytes on every machine.
    fig.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})


def _curves(history: pd.DataFrame, runs: pd.DataFrame, keys: list[str], path: Path) -> bool:
    """The periodic/* histories of `keys` (final eval/* keys), one line per run."""
    keys = [periodic_key(k) for k in keys]
    rows = history[history["run_id"].isin(runs["run_id"]) & history["key"].isin(keys)
                   & np.isfinite(history["value"].to_numpy(dtype=float))]
    keys = [k for k in keys if (rows["key"] == k).any()]
    if not keys:
        return False
    fig = Figure(figsize=(5 * len(keys), 3.5))
    for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys, strict=True):
        final_key = FINAL_PREFIX + key.removeprefix(PERIODIC_PREFIX)
        scale = 100 if _is_percent(final_key) else 1
        for _, run in runs.iterrows():
            line = rows[(rows["run_id"] == run["run_id"]) & (rows["key"] == key)].sort_values("step")
            status = _status(run).split(":")[0]
            ax.plot(line["step"], line["value"] * scale, marker=".", label=f"{run['run_name']} ({status})")
        ax.set_xlabel("generator step")
        ax.set_ylabel(f"{_name(final_key, {})}, periodic" + (" (%)" if scale == 100 else ""))
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def _class_bars(group: pd.DataFrame, metrics: list[str], floors: dict[str, float], path: Path) -> bool:
    """Per class: label accuracy and intra-FID (where scored), mean over finished runs; a black tick
    marks real data's value at the same N."""
    panels = [(prefix, _by_class(metrics, prefix)) for prefix in PER_CLASS_PREFIXES]
    panels = [(p, cols) for p, cols in panels if cols and group.loc[group["ok"], cols].notna().any().any()]
    if not panels:
        return False
    fig = Figure(figsize=(6 * len(panels), 3))
    for ax, (prefix, columns) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        scale = 100 if prefix == CLASS_ACC_PREFIX else 1
        classes = [c.removeprefix(prefix) for c in columns]
        ax.bar(classes, group.loc[group["ok"], columns].mean().to_numpy(dtype=float) * scale)  # NaN-skipping mean
        floor = [floors.get(c, math.nan) * scale for c in columns]
        if any(math.isfinite(v) for v in floor):
            ax.scatter(classes, floor, marker="_", s=300, color="black", label="real data", zorder=3)
            ax.legend(fontsize=7)
        ax.set_xlabel("class")
        ax.set_ylabel("label accuracy (%)" if scale == 100 else "intra-FID ↓")
    _save(fig, path)
    return True


def _tradeoff(runs: pd.DataFrame, floors: dict[str, float], path: Path) -> bool:
    """Precision vs recall and density vs coverage, one point per finished run, coloured by variant:
    sharp-but-narrow sits high on the first axis, diverse-but-blurry far along the second."""
    pairs = [(x, y) for x, y in (("eval/recall", "eval/precision"), ("eval/coverage", "eval/density"))
             if {x, y} <= set(runs.columns) and runs.loc[runs["ok"], [x, y]].notna().all(axis=1).any()]
    if not pairs:
        return False
    fig = Figure(figsize=(5 * len(pairs), 4))
    for ax, (x, y) in zip(fig.subplots(1, len(pairs), squeeze=False)[0], pairs, strict=True):
        for variant, group in runs[runs["ok"]].groupby("variant", sort=True):
            ax.scatter(group[x], group[y], label=variant, alpha=0.8)
        if x in floors and y in floors:
            ax.scatter([floors[x]], [floors[y]], marker="*", s=150, color="black", label="real data")
        ax.set_xlabel(NAMES[x] + " ↑")
        ax.set_ylabel(NAMES[y] + " ↑")
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def _overview(aggregates: list[dict], primary: str, directions: dict[str, bool], path: Path) -> bool:
    """Every variant at a glance: the primary metric's mean with its 95% CI, best on top, and (where
    variants score label accuracy) the primary metric against label accuracy, both with CIs."""
    if len(aggregates) < 2:
        return False

    def spans(key: str, recs: list[dict]) -> tuple[list[float], list[list[float]]]:
        means = [r["metrics"][key]["mean"] for r in recs]
        low = [m - r["metrics"][key]["ci_low"] if r["metrics"][key]["n"] >= 2 else 0.0
               for m, r in zip(means, recs, strict=True)]
        high = [r["metrics"][key]["ci_high"] - m if r["metrics"][key]["n"] >= 2 else 0.0
                for m, r in zip(means, recs, strict=True)]
        scale = 100 if _is_percent(key) else 1
        return [m * scale for m in means], [[v * scale for v in low], [v * scale for v in high]]

    def axis_label(key: str) -> str:
        return f"{NAMES.get(key, key)}{' (%)' if _is_percent(key) else ''} {'↑' if directions[key] else '↓'}"

    labelled = [r for r in aggregates if LABEL_METRIC in r["metrics"] and r["metrics"][LABEL_METRIC]["n"]
                and r["metrics"][primary]["n"]]
    fig = Figure(figsize=(11 if len(labelled) >= 2 else 5.5, 0.45 * len(aggregates) + 1.5))
    axes = fig.subplots(1, 2 if len(labelled) >= 2 else 1, squeeze=False)[0]
    names = [r["variant"] for r in aggregates][::-1]  # rank 1 at the top
    means, err = spans(primary, aggregates[::-1])
    axes[0].errorbar(means, range(len(names)), xerr=err, fmt="o", capsize=4)
    axes[0].set_yticks(range(len(names)), names)
    axes[0].set_xlabel(axis_label(primary))
    if len(labelled) >= 2:
        xs, xerr = spans(primary, labelled)
        ys, yerr = spans(LABEL_METRIC, labelled)
        axes[1].errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o", capsize=4)
        for x, y, r in zip(xs, ys, labelled, strict=True):
            axes[1].annotate(r["variant"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axes[1].set_xlabel(axis_label(primary))
        axes[1].set_ylabel(axis_label(LABEL_METRIC))
    _save(fig, path)
    return True


def _budget(curve: pd.DataFrame, label: str, path: Path) -> None:
    shown = curve[np.isfinite(curve["mean"])]
    band = shown[np.isfinite(shown["low"]) & np.isfinite(shown["high"])]
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot(shown["k"], shown["mean"], marker="o", label="expected best")
    ax.fill_between(band["k"], band["low"], band["high"], alpha=0.3, label="95% of trial orders")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("search trials k")
    ax.set_ylabel(f"best {label} after k trials")
    ax.legend(fontsize=7)
    _save(fig, path)


# --- sections ----------------------------------------------------------------------------------
def _config_text(config: dict) -> str:
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(config.items())]
    return ", ".join(parts) or "defaults"


def _intro(meta: dict, runs: pd.DataFrame, ranked: list[str], without_seeds: list[str]) -> str:
    primary = meta["primary_metric"]
    presets = ", ".join(sorted({str(p) for p in runs["preset"].dropna()})) or "unrecorded"
    if not without_seeds:
        basis = "the seeds phase (the chosen config re-run with fresh seeds)"
    elif len(without_seeds) == len(ranked):
        basis = "all runs, since there is no seeds phase (search trials differ in config)"
    else:
        basis = (f"the seeds phase (the chosen config re-run with fresh seeds), except for "
                 f"{', '.join(without_seeds)}, which has no seeds phase and is ranked over all its runs "
                 f"(search trials differ in config)")
    return (
        f"This report compares {len(ranked)} GAN variant(s) ({', '.join(ranked)}) on MNIST, preset {presets}. "
        f"Every final metric is computed from N = {meta.get('n_samples', '?')} generated samples by the shipped "
        f"evaluator. For scale, real MNIST scored against held-out real MNIST gives FID "
        f"{fmt('eval/fid', meta.get('fid_floor'))} at N = {meta.get('fid_floor_n', '?')}: that is what good looks "
        f"like, and no generator should be expected to go below it. ↑ marks metrics where higher is better, "
        f"↓ where lower is better. Variants are ranked by {_name(primary, meta['higher_is_better'])} over {basis}: "
        f"its mean with a 95% {CI_METHOD} confidence interval (mean ± t·s/√n) in brackets, or '{TOO_FEW}' "
        f"below 2 finished runs; other metrics show mean ± "
        f"standard deviation across runs; n counts finished runs. Diverged and failed runs are counted, never "
        f"averaged in." + (
            " The search phase chooses each variant's config on the validation split (the last 10,000 training "
            "images, which its trials do not train on); the seeds phase trains on all 60,000 and is scored on "
            "the test set (column 'scored on' below)." if (runs["phase"] == "search").any() else ""))


def _mean_cell(key: str, summary: dict, spread: str) -> str:
    """'mean [low, high]' (spread='ci') or 'mean ± std' (spread='std'); below 2 runs the mean alone,
    with TOO_FEW in place of the interval."""
    text = fmt(key, summary["mean"])
    if summary["n"] < 2:
        return f"{text} [{TOO_FEW}]" if spread == "ci" and summary["n"] else text
    if spread == "ci":
        return f"{text} [{fmt(key, summary['ci_low'])}, {fmt(key, summary['ci_high'])}]"
    return f"{text} ± {fmt(key, summary['std'])}"


def _ranking(aggregates: list[dict], metrics: list[str], directions: dict[str, bool]) -> str:
    # A column no variant scored (code accuracy without an InfoGAN) would be dashes only.
    primary, others = metrics[0], [k for k in KEY_METRICS if k in metrics[1:]
                                   and any(a["metrics"][k]["n"] for a in aggregates)]
    rows = []
    for agg in aggregates:
        row = {"#": agg["rank"], "variant": agg["variant"],
               f"{_name(primary, directions)} mean [95% CI]": _mean_cell(primary, agg["metrics"][primary], "ci")}
        row |= {f"{_name(k, directions)} mean ± std": _mean_cell(k, agg["metrics"][k], "std") for k in others}
        lost = f"{agg['n_diverged']} / {agg['n_failed']}" + (f" (+{agg['n_pruned']} pruned)" if agg["n_pruned"] else "")
        row |= {"n": agg["n"], "diverged / failed": lost,
                "config": _config_text(agg["shown_config"])}
        rows.append(row)
    return md_table(pd.DataFrame(rows))


def _overview_lines(aggregates: list[dict], primary: str, directions: dict[str, bool], assets: Path) -> list[str]:
    if not _overview(aggregates, primary, directions, assets / "overview.png"):
        return []
    caption = (f"Mean over each variant's ranked runs with its 95% confidence interval ({CI_METHOD}; a run alone "
               f"has none). Left: {_name(primary, directions)}, best on top. Right, for the variants that score it: "
               f"{_name(primary, directions)} against {_name(LABEL_METRIC, directions)}.")
    if any(a["metrics"].get("eval/code_accuracy", {}).get("n") for a in aggregates):
        caption += (" Code accuracy (unsupervised codes matched to classes after the fact) is not label accuracy "
                    "and is not plotted as such.")
    return [f"![every variant at a glance]({assets.name}/overview.png)", "", caption, ""]


def _fidelity(aggregates: list[dict], headline: pd.DataFrame, metrics: list[str], meta: dict,
              assets: Path) -> list[str]:
    """The fidelity/diversity/memorization table with the real-data floor row, and the trade-off plane."""
    keys, directions = [k for k in FIDELITY_METRICS if k in metrics], meta["higher_is_better"]
    if not keys:
        return []
    floors = meta.get("floors", {})
    rows = [{"variant": a["variant"]} | {_name(k, directions): _mean_cell(k, a["metrics"][k], "std") for k in keys}
            for a in aggregates]
    rows.append({"variant": f"real data (N = {meta.get('n_samples', '?')})"}
                | {_name(k, directions): fmt(k, floors.get(k)) for k in keys})
    out = ["## Fidelity, diversity and memorization", "",
           "Precision is the share of samples inside the real images' manifold and recall the share of real "
           "images inside the samples' (k = 3, Kynkäänniemi et al. 2019); density and coverage are their "
           "outlier-robust versions (k = 5, Naeem et al. 2020; density ≈ 1 for real data). Intra-FID is the mean "
           "over classes of the FID against that class's real images (Miyato & Koyama 2018); CAS the test "
           "accuracy of a classifier trained on the samples (Ravuri & Vinyals 2019); memorization the share of "
           "samples closer to a training image than any other training image is. All are measured on the test "
           "set in the evaluator's feature space, mean ± std over the ranked runs. The last row scores real "
           "training images with their labels at the same N, what good looks like (for memorization: held-out "
           "test images, since training images are copies by definition). Memorization at or below that "
           "floor is what new digits from the data's distribution score; only a value well above it flags "
           "copying.", "",
           md_table(pd.DataFrame(rows)), ""]
    if _tradeoff(headline, floors, assets / "tradeoff.png"):
        out += [f"![fidelity vs diversity]({assets.name}/tradeoff.png)", "",
                "One point per ranked run. High precision with low recall is sharp but narrow; high recall with "
                "low precision diverse but blurry; the star is real data at the same N.", ""]
    return out


def _significance(key: str, table: pd.DataFrame | None, untested: list[str], directions: dict[str, bool]) -> str:
    name = _name(key, directions)
    if table is None:
        return f"**{name}**: too few seeds to test; this needs at least 2 variants with at least 2 finished runs each."
    family = f"at α = {ALPHA} after Holm–Bonferroni over {len(table)} pair(s)"
    wins = table[table["significant"]]
    if wins.empty:
        text = f"**{name}**: no significant difference {family}."
    else:
        lines = []
        for row in wins.itertuples():
            a_wins = row.better == row.a
            loser, (won, lost) = (row.b, (row.mean_a, row.mean_b)) if a_wins else (row.a, (row.mean_b, row.mean_a))
            lines.append(f"- **{row.better}** beats **{loser}** on {name}: {fmt(key, won)} vs {fmt(key, lost)} "
                         f"(Welch p = {_p(row.p_welch_holm)} after Holm).")
        text = f"**{name}**: significant {family}:\n\n" + "\n".join(lines)
    if untested:
        text += f"\n\nNot tested (fewer than 2 finished runs): {', '.join(untested)}."
    shown = pd.DataFrame({
        "A": table["a"], "B": table["b"], "mean A": [fmt(key, v) for v in table["mean_a"]],
        "mean B": [fmt(key, v) for v in table["mean_b"]], "A − B": [fmt(key, v, signed=True) for v in table["diff"]],
        "better": table["better"].fillna(MISSING), "p Welch": table["p_welch"].map(_p),
        "p Welch (Holm)": table["p_welch_holm"].map(_p), "p MWU": table["p_mwu"].map(_p),
        "p MWU (Holm)": table["p_mwu_holm"].map(_p),
        "significant": table["significant"].map({True: "yes", False: "no"}),
    })
    return text + "\n\n" + md_table(shown)


def _trials(runs: pd.DataFrame, metrics: list[str], ranked: list[str], directions: dict[str, bool]) -> str:
    shown = [k for k in metrics if not k.startswith(PER_CLASS_PREFIXES) and k != "eval/kid_std"
             and runs[k].notna().any()]  # a column no run scored (code accuracy without an InfoGAN) says nothing
    order = runs.assign(rank=runs["variant"].map(ranked.index)).sort_values(
        ["rank", "phase", "seed", "run_name"], kind="stable")
    rows = [{"run": r["run_name"], "variant": r["variant"], "phase": r["phase"], "seed": r["seed"],
             "scored on": r["config"].get("eval_split", "test"), "status": _status(r)}
            | {_name(k, directions): fmt(k, r[k]) for k in shown}
            for _, r in order.iterrows()]
    return md_table(pd.DataFrame(rows))


def _variant_section(variant: str, runs: pd.DataFrame, headline: pd.DataFrame, history: pd.DataFrame,
                     metrics: list[str], meta: dict, assets: Path) -> list[str]:
    primary, directions = metrics[0], meta["higher_is_better"]
    higher, slug = bool(directions[primary]), _slug(variant)
    group = headline[headline["variant"] == variant]
    out = [f"### {variant}", ""]

    best = _best_first(group, primary, higher)
    grids = [r for _, r in pd.concat([best, group.drop(best.index)]).iterrows()
             if isinstance(r["grid_path"], str) and Path(r["grid_path"]).is_file()]
    if grids:
        shutil.copyfile(grids[0]["grid_path"], assets / f"{slug}_grid.png")
        out += [f"![samples of {variant}]({assets.name}/{slug}_grid.png)", "",
                f"Samples from `{grids[0]['run_name']}` (row r is label r for conditional variants).", ""]
    else:
        out += ["_No sample grid was recorded._", ""]

    if _curves(history, group, list(dict.fromkeys([primary, LABEL_METRIC])), assets / f"{slug}_curves.png"):
        eval_n = sorted({int(c["eval_n"]) for c in group["config"] if "eval_n" in c})
        caption = ("Training curves, one line per run: the periodic evaluations (MLflow keys `periodic/*`, "
                   "apart from the final `eval/*`).")
        if eval_n != [meta.get("n_samples")]:
            caption += (f" They use {' / '.join(map(str, eval_n)) or 'fewer'} samples rather than "
                        f"N = {meta.get('n_samples', '?')}; FID is biased upward at small N, so periodic points sit "
                        f"above what the final evaluation at N gives.")
        out += [f"![training curves of {variant}]({assets.name}/{slug}_curves.png)", "", caption, ""]
    else:
        out += ["_No training curves were recorded._", ""]

    if _class_bars(group, metrics, meta.get("floors", {}), assets / f"{slug}_classes.png"):
        out += [f"![per-class scores of {variant}]({assets.name}/{slug}_classes.png)", "",
                "Per class: label accuracy and intra-FID (FID against the real images of that class), mean over "
                "finished runs; black ticks: real training images at the same N.", ""]

    return out + _budget_section(variant, runs, primary, directions, assets)


def _budget_section(variant: str, runs: pd.DataFrame, primary: str, directions: dict[str, bool],
                    assets: Path) -> list[str]:
    """The expected-best-after-k-trials curve of a variant's search phase (none without one)."""
    higher, slug = bool(directions[primary]), _slug(variant)
    search = runs[(runs["variant"] == variant) & (runs["phase"] == "search") & (runs["status"] != "RUNNING")]
    if len(search) < 2:
        return []
    curve = expected_best(search[primary].to_numpy(dtype=float), higher_is_better=higher)
    _budget(curve, NAMES.get(primary, primary), assets / f"{slug}_budget.png")
    split = {str(c.get("eval_split", "test")) for c in search["config"]}
    caption = (f"Expected best {_name(primary, directions)} (on the {' / '.join(sorted(split))} split) after k of "
               f"the {len(search)} search trials, over "
               f"random trial orders (Lucic et al. 2018; band: 95% of orders). Best after all: "
               f"{fmt(primary, curve['mean'].iloc[-1])}.")
    lost = int((~search["ok"]).sum())
    if lost:
        caption += (f" {lost} of {len(search)} trials diverged, failed or were pruned by the scheduler; they "
                    f"count as the worst outcome.")
    infinite = curve.loc[~np.isfinite(curve["mean"]), "k"]
    if len(infinite):
        caption += (f" For k ≤ {infinite.max()} some orders hold only those, so the expectation is infinite "
                    f"and not drawn.")
    return [f"![budget curve of {variant}]({assets.name}/{slug}_budget.png)", "", caption, ""]


def _provenance(meta: dict) -> list[str]:
    def get(key: str) -> str:
        value = meta.get(key)
        return MISSING if value is None else str(value)

    fields = [("command", get("command")), ("commit", get("commit")), ("evaluator sha256", get("evaluator_sha256")),
              ("N samples", get("n_samples")),
              ("FID floor", f"{fmt('eval/fid', meta.get('fid_floor'))} (real vs real, N = {get('fid_floor_n')})"),
              ("hardware", get("hardware")), ("experiment", get("experiment")), ("tracking URI", get("tracking_uri"))]
    width = max(len(name) for name, _ in fields) + 2
    return (["## Provenance", "", "```text"] + [f"{name + ':':<{width}}{value}" for name, value in fields] + ["```", "",
            f"To reproduce any row, take its run_id and seed from results.csv and run "
            f"`bench sample RUN_ID --tracking-uri {get('tracking_uri')} --experiment {get('experiment')} "
            f"--n {get('n_samples')} --out s.npz` then `bench evaluate s.npz --seed SEED --split SPLIT` "
            f"(SPLIT: the run's 'scored on'; the KID subsets and the CAS classifier use the run's seed).", ""])


# --- machine-readable twins ----------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    """NaN/inf → null, numpy scalars → Python, anything else unknown → str."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return None if value is pd.NA else str(value)


def _trial_records(runs: pd.DataFrame, metrics: list[str]) -> list[dict]:
    columns = ["run_id", "run_name", "variant", "preset", "phase", "seed", "trial_id", "status", "diverged",
               "pruned", "error"]
    return [{c: r[c] for c in columns + metrics} | {"config": r["config"]} for _, r in runs.iterrows()]


def _write_csv(records: list[dict], path: Path) -> None:
    flat = [{k: v for k, v in r.items() if k != "config"}
            | {f"config.{k}": json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
               for k, v in r["config"].items()} for r in records]
    table = pd.DataFrame(flat)
    config = sorted(c for c in table.columns if c.startswith("config."))
    table[[c for c in table.columns if c not in config] + config].to_csv(path, index=False, lineterminator="\n")


# --- entry point ---------------------------------------------------------------------------------
def write_report(runs: pd.DataFrame, history: pd.DataFrame, meta: dict, out_dir: Path) -> Path:
    """Write out_dir/report.md, out_dir/report_assets/*.png, results.csv and results.json.

    runs: one row per trial; history: long run_id/key/step/value; meta: provenance plus
    primary_metric and higher_is_better (key → bool). Returns the report's path.
    """
    runs, metrics = _prepare(runs, meta)
    if history.empty:
        history = pd.DataFrame(columns=["run_id", "key", "step", "value"])
    primary, directions = metrics[0], meta["higher_is_better"]
    headline, without_seeds = _headline(runs)
    aggregates = _aggregate(headline, metrics, primary, bool(directions[primary]))
    ranked = [a["variant"] for a in aggregates]
    # The primary metric is always discussed; label accuracy only where some variant scored it.
    tested = [primary]
    if LABEL_METRIC != primary and LABEL_METRIC in metrics and headline[LABEL_METRIC].notna().any():
        tested.append(LABEL_METRIC)
    comparisons = {k: _comparisons(headline, ranked, k, bool(directions[k])) for k in tested}

    out_dir = Path(out_dir)
    assets = out_dir / "report_assets"
    assets.mkdir(parents=True, exist_ok=True)
    for stale in assets.glob("*.png"):  # a variant dropped since the last report must not linger
        stale.unlink()

    lines = [f"# GAN benchmark: {meta.get('experiment', 'experiment')}", "",
             _intro(meta, runs, ranked, without_seeds), "",
             "## Ranking", "", _ranking(aggregates, metrics, directions), "",
             *_overview_lines(aggregates, primary, directions, assets),
             *_fidelity(aggregates, headline, metrics, meta, assets),
             "## Significance", "",
             "Pairwise Welch t-tests (unequal variances) on the finished runs, Holm–Bonferroni corrected across "
             "pairs; a difference is called significant when the corrected Welch p < 0.05. Mann–Whitney U (MWU) "
             "is shown as a check without a normality assumption; with n runs per side its exact two-sided p "
             "cannot go below 2 / C(2n, n), i.e. 0.1 for 3 vs 3.", ""]
    for key in tested:
        lines += [_significance(key, *comparisons[key], directions), ""]
    if LABEL_METRIC in metrics and LABEL_METRIC not in tested:
        lines += [f"**{_name(LABEL_METRIC, directions)}**: not scored (no conditional variant finished).", ""]
    lines += ["## All trials", "", _trials(runs, metrics, ranked, directions), "", "## Variants", ""]
    for variant in ranked:
        lines += _variant_section(variant, runs, headline, history, metrics, meta, assets)
    lines += _provenance(meta)
    report = out_dir / "report.md"
    report.write_text("\n".join(lines), encoding="utf-8")

    _write_results(out_dir, meta, aggregates, _trial_records(runs, metrics),
                   [dict(row, metric=key) for key in tested if comparisons[key][0] is not None
                    for row in comparisons[key][0].to_dict("records")])
    return report


def _write_results(out_dir: Path, meta: dict, aggregates: list[dict], trials: list[dict],
                   comparisons: list[dict]) -> None:
    """results.csv (one row per trial) and results.json (everything the report says, as data)."""
    _write_csv(trials, out_dir / "results.csv")
    results = {"meta": meta, "variants": aggregates, "trials": trials, "comparisons": comparisons}
    (out_dir / "results.json").write_text(
        json.dumps(_jsonable(results), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n",
        encoding="utf-8")


def from_store(uri: str, experiment: str, session: str | None, out_dir: Path) -> Path:
    """write_report for a session read back from the MLflow store (the newest if session is None)."""
    import tempfile

    from bench.store import load_session

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        runs, history, meta = load_session(uri, experiment, session, Path(tmp))
        if runs.empty:
            raise BenchError(f"experiment {experiment!r} has no trial runs to report yet")
        for key in meta.get("higher_is_better", {}):
            if key not in runs:
                runs[key] = float("nan")  # e.g. every trial diverged: the table still has the column
        return write_report(runs, history, meta, Path(out_dir))
