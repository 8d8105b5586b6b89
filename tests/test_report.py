"""write_report on synthetic records: ranking order, significance, failures, round trips, determinism."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from bench.errors import BenchError
from bench.report import fmt, md_table, write_report

# Well separated on FID so Welch + Holm must call good vs bad significant with 3 seeds each.
FID = {"good": [10.0, 10.5, 11.0], "mid": [20.0, 24.0, 21.0], "bad": [40.0, 41.0, 39.5]}
LABEL_ACC = {"good": [0.95, 0.96, 0.94], "mid": [0.80, 0.85, 0.82], "bad": [math.nan] * 3}  # bad: unconditional
DIRECTIONS = {"eval/fid": False, "eval/kid": False, "eval/kid_std": False, "eval/classifier_score": True,
              "eval/class_coverage": True, "eval/class_entropy": True, "eval/label_accuracy": True,
              "perf/img_per_s": True, "perf/train_s": False, "eval/precision": True, "eval/recall": True,
              "eval/density": True, "eval/coverage": True, "eval/intra_fid": False, "eval/cas": True,
              "eval/memorization": False} | {f"eval/class_acc/{c}": True for c in range(10)}
FLOORS = {"eval/fid": 1.234, "eval/precision": 0.75, "eval/recall": 0.76, "eval/density": 0.98, "eval/coverage": 0.91,
          "eval/intra_fid": 3.5, "eval/cas": 0.97, "eval/memorization": 0.04} | {f"eval/intra_fid/{c}": 3.0 + c / 10
                                                                                    for c in range(10)}
COMMAND = "bench run good,mid,bad --preset smoke --seeds 3"


def _grid(path: Path, shade: float) -> str:
    fig = Figure(figsize=(1, 1))
    fig.subplots().imshow(np.full((10, 10), shade), cmap="gray", vmin=0, vmax=1)
    fig.savefig(path)
    return str(path)


def _run(variant: str, phase: str, seed: int, fid: float, acc: float, tmp: Path, **extra) -> dict:
    row = {"run_id": f"id-{variant}-{phase}-{seed}", "run_name": f"{variant}__smoke__{phase}{seed}",
           "variant": variant, "preset": "smoke", "phase": phase, "seed": seed, "trial_id": f"t{seed}",
           "status": "FINISHED", "diverged": 0, "error": None,
           "config": {"lr_g": 2e-4, "lr_d": 1e-4 if variant == "mid" else 2e-4, "beta1": 0.5, "seed": seed}
           | ({"eval_split": "val"} if phase == "search" else {}),
           "grid_path": _grid(tmp / f"{variant}{phase}{seed}.png", seed / 3),
           "eval/fid": fid, "eval/kid": fid / 1000, "eval/kid_std": 1e-4, "eval/classifier_score": 9 - fid / 10,
           "eval/class_coverage": 1.0, "eval/class_entropy": 2.2, "eval/label_accuracy": acc,
           "perf/img_per_s": 12345.6, "perf/train_s": 60.0 + seed,
           "eval/code_accuracy": math.nan}  # stored for no run here: InfoGAN's metric
    row |= {f"eval/class_acc/{c}": acc - c / 100 for c in range(10)}
    conditional = 1.0 if math.isfinite(acc) else math.nan  # intra-FID and CAS need labels
    row |= {"eval/precision": 0.9 - fid / 100, "eval/recall": 0.2 + fid / 100, "eval/density": 1.1 - fid / 100,
            "eval/coverage": 0.9 - fid / 50, "eval/memorization": 0.05, "eval/intra_fid": 1.5 * fid * conditional,
            "eval/cas": (acc - 0.05) * conditional}
    row |= {f"eval/intra_fid/{c}": (1.5 * fid + c - 4.5) * conditional for c in range(10)}
    return row | extra


def _records(tmp: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [_run(v, "seeds", s, FID[v][s], LABEL_ACC[v][s], tmp) for v in FID for s in range(3)]
    rows += [_run("mid", "search", s, f, 0.78 + s / 100, tmp) for s, f in enumerate([30.0, 22.0, 26.0])]
    nan_metrics = {k: math.nan for k in rows[0] if k.startswith(("eval/", "perf/"))}
    rows.append(_run("mid", "search", 3, 0, 0, tmp, diverged=1, **nan_metrics))
    # Stopped early by the scheduler: its FID is a periodic small-N value and must not count.
    rows.append(_run("mid", "search", 4, 5.0, 0.99, tmp, pruned=1))
    rows.append(_run("bad", "seeds", 3, 0, 0, tmp, status="FAILED", error="RuntimeError: CUDA out of memory",
                     grid_path=None, **nan_metrics))
    history = pd.DataFrame(
        [{"run_id": r["run_id"], "key": key, "step": step,
          "value": r["eval/fid"] * (1 + 1 / step) if key == "periodic/fid" else r["eval/label_accuracy"]}
         for r in rows for key in ("periodic/fid", "periodic/label_accuracy")
         for step in (500, 1000, 1500)]
        + [{"run_id": r["run_id"], "key": "loss/d", "step": step, "value": 0.7} for r in rows for step in range(3)])
    return pd.DataFrame(rows), history


def _meta(primary: str = "eval/fid") -> dict:
    return {"command": COMMAND, "commit": "abc123", "evaluator_sha256": "f" * 64, "n_samples": 10000,
            "fid_floor": 1.234, "fid_floor_n": 10000, "hardware": "2 CPU cores", "experiment": "unit",
            "tracking_uri": "file:///tmp/mlruns", "primary_metric": primary, "higher_is_better": DIRECTIONS,
            "floors": FLOORS}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    runs, history = _records(tmp)
    path = write_report(runs, history, _meta(), tmp / "out")
    return runs, history, path


def _ranking_rows(text: str) -> list[str]:
    section = text.split("## Ranking")[1].split("## Significance")[0]
    return [line.split("|")[2].strip() for line in section.splitlines() if re.match(r"\| \d+ \|", line)]


def test_ranking_order_follows_direction(written, tmp_path):
    runs, _, path = written
    history = pd.DataFrame()  # no curves: figures dominate the run time
    assert _ranking_rows(path.read_text(encoding="utf-8")) == ["good", "mid", "bad"]  # FID: lower is better
    flipped = write_report(runs, history, _meta("eval/classifier_score"), tmp_path)
    assert _ranking_rows(flipped.read_text(encoding="utf-8")) == ["good", "mid", "bad"]  # 9 - fid/10: higher wins
    inverted = _meta() | {"higher_is_better": DIRECTIONS | {"eval/fid": True}}
    assert _ranking_rows(write_report(runs, history, inverted, tmp_path).read_text(encoding="utf-8")) == [
        "bad", "mid", "good"]


def test_ranking_row_shows_ci_counts_and_config(written):
    text = written[2].read_text(encoding="utf-8")
    good = next(line for line in text.splitlines() if line.startswith("| 1 | good |"))
    low, high = stats.t.interval(0.95, 2, loc=np.mean(FID["good"]), scale=stats.sem(FID["good"]))
    assert good.startswith(f"| 1 | good | {fmt('eval/fid', np.mean(FID['good']))} "
                           f"[{fmt('eval/fid', low)}, {fmt('eval/fid', high)}] |")
    assert "95% Student-t confidence interval" in text
    assert f"{fmt('eval/label_accuracy', np.mean(LABEL_ACC['good']))} ± " in good
    bad = next(line for line in text.splitlines() if line.startswith("| 3 | bad |"))
    assert "| 3 | 0 / 1 |" in bad  # 3 finished seeds, 0 diverged, 1 failed
    mid = next(line for line in text.splitlines() if line.startswith("| 2 | mid |"))
    assert "lr_d=0.0001" in mid and "lr_d=0.0002" in good and "beta1" not in good  # beta1 is default and shared


def test_one_run_has_no_interval():
    from bench.report import TOO_FEW, _mean_cell

    one_run = {"mean": 12.0, "n": 1, "std": math.nan}
    assert _mean_cell("eval/fid", one_run, "ci") == f"{fmt('eval/fid', 12.0)} [{TOO_FEW}]"
    assert _mean_cell("eval/fid", one_run, "std") == fmt("eval/fid", 12.0)


def test_significance_section(written):
    text = written[2].read_text(encoding="utf-8")
    section = text.split("## Significance")[1].split("## All trials")[0]
    assert "**good** beats **bad** on FID ↓" in section
    assert "label accuracy ↑" in section


def test_too_few_seeds_and_no_difference(tmp_path):
    runs, _ = _records(tmp_path)
    history = pd.DataFrame()
    one_seed = runs[(runs["phase"] == "seeds") & (runs["seed"] == 0)]
    text = write_report(one_seed, history, _meta(), tmp_path / "a").read_text(encoding="utf-8")
    assert "too few seeds to test" in text
    noisy = runs[runs["phase"] == "seeds"].copy()
    noisy["eval/fid"] = [10.0, 30.0, 20.0, 11.0, 29.0, 21.0, 12.0, 28.0, 19.0, math.nan]
    text = write_report(noisy, history, _meta(), tmp_path / "b").read_text(encoding="utf-8")
    assert "**FID ↓**: no significant difference" in text


def test_variant_without_seeds_phase_is_ranked_over_its_search(tmp_path):
    runs, _ = _records(tmp_path)
    runs = runs[~((runs["variant"] == "mid") & (runs["phase"] == "seeds"))].copy()
    # As MLflow hands params back: strings. lr_d must still read as differing, beta1 as default.
    runs["config"] = [{k: str(v) for k, v in c.items()} for c in runs["config"]]
    text = write_report(runs, pd.DataFrame(), _meta(), tmp_path / "out").read_text(encoding="utf-8")
    assert "except for mid, which has no seeds phase" in text
    mid = next(line for line in text.splitlines() if line.startswith("| 2 | mid |"))
    search = [30.0, 22.0, 26.0]  # the diverged fourth trial is counted, not averaged
    assert f"| {fmt('eval/fid', np.mean(search))} [" in mid
    assert "| 3 | 1 / 0 (+1 pruned) | eval_split=val, lr_d=0.0001 |" in mid  # ranked on the split it was scored on


def test_trial_table_shows_failures_and_provenance(written):
    text = written[2].read_text(encoding="utf-8")
    trials = text.split("## All trials")[1].split("## Variants")[0]
    diverged = next(line for line in trials.splitlines() if "mid__smoke__search3" in line)
    assert "| diverged |" in diverged and not re.search(r"\d\.\d", diverged.split("| diverged |")[1])
    assert "failed: RuntimeError: CUDA out of memory" in trials
    pruned = next(line for line in trials.splitlines() if "mid__smoke__search4" in line)
    assert "| pruned |" in pruned and "| 5 |" not in pruned
    assert "| search | 4 | val |" in pruned and "| seeds | 0 | test |" in trials  # the split each was scored on
    assert f"Best after all: {fmt('eval/fid', 22.0)}." in text  # neither the pruned 5.0 nor a NaN
    assert "(on the val split)" in text
    assert COMMAND in text and "f" * 64 in text
    assert "bench sample RUN_ID --tracking-uri " in text and "--n 10000 --out s.npz" in text
    assert "bench evaluate s.npz --seed SEED --split SPLIT" in text
    assert "code accuracy" not in text  # no run scored it: no column of dashes, in the ranking or here


def test_assets_are_linked_and_exist(written):
    path = written[2]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text(encoding="utf-8"))
    assert links and all((path.parent / link).is_file() for link in links)
    names = {Path(link).name for link in links}
    assert {"good_grid.png", "good_curves.png", "good_classes.png", "mid_budget.png", "tradeoff.png",
            "overview.png"} <= names
    assert "bad_classes.png" not in names  # unconditional: no label accuracy or intra-FID to plot


def test_fidelity_table_shows_each_variant_beside_the_real_data_floor(written):
    section = written[2].read_text(encoding="utf-8").split("## Fidelity, diversity and memorization")[1]
    rows = {line.split("|")[1].strip(): line for line in section.split("## Significance")[0].splitlines()
            if line.startswith("| ") and not line.startswith("| ---")}
    assert list(rows)[1:] == ["good", "mid", "bad", "real data (N = 10000)"]  # header first, ranking order
    good_precision = 0.9 - np.array(FID["good"]) / 100
    assert f"| {fmt('eval/precision', good_precision.mean())} ± {fmt('eval/precision', good_precision.std(ddof=1))} |" \
        in rows["good"]
    assert "| 97.0% |" in rows["real data (N = 10000)"] and "| 0.04 |" in rows["real data (N = 10000)"]
    assert rows["bad"].count("—") == 2  # unconditional: no intra-FID, no CAS


def test_csv_and_json_round_trip_trials(written):
    runs, _, path = written
    metrics = [c for c in runs.columns if c.startswith(("eval/", "perf/"))]
    expected = runs.set_index("run_id")
    # A pruned run's numbers are periodic small-N ones, not final metrics: they are left out.
    expected.loc[expected["pruned"] == 1, metrics] = math.nan
    # round_trip: the default parser can be one ulp off on 17-digit values (seen with pandas 3.1.1)
    table = pd.read_csv(path.parent / "results.csv", float_precision="round_trip")
    table = table.set_index("run_id").loc[expected.index]
    assert table["pruned"].sum() == 1 and table["diverged"].sum() == 1
    np.testing.assert_array_equal(table[metrics].to_numpy(float), expected[metrics].to_numpy(float))
    assert (table["config.lr_d"].to_numpy() == [c["lr_d"] for c in expected["config"]]).all()
    data = json.loads((path.parent / "results.json").read_text(encoding="utf-8"))
    trials = {t["run_id"]: t for t in data["trials"]}
    for run_id, row in expected.iterrows():
        for key in metrics:
            want = row[key]
            assert trials[run_id][key] == (None if math.isnan(want) else want)
    assert data["meta"]["command"] == COMMAND
    assert [v["variant"] for v in data["variants"]] == ["good", "mid", "bad"]
    good = data["variants"][0]["metrics"]["eval/fid"]
    assert good["mean"] == pytest.approx(np.mean(FID["good"])) and good["ci_low"] <= good["mean"] <= good["ci_high"]
    assert {c["metric"] for c in data["comparisons"]} == {"eval/fid", "eval/label_accuracy"}


def test_writing_twice_is_byte_identical(written, tmp_path):
    runs, history, first = written
    second = write_report(runs, history, _meta(), tmp_path)
    for name in ("report.md", "results.csv", "results.json"):
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes()


def test_unknown_primary_metric_is_a_user_error(written, tmp_path):
    runs, history, _ = written
    with pytest.raises(BenchError, match="eval/nope"):
        write_report(runs, history, _meta("eval/nope"), tmp_path)
    with pytest.raises(BenchError, match="no runs"):
        write_report(runs.iloc[:0], history, _meta(), tmp_path)


def test_md_table_escapes_pipes():
    table = md_table(pd.DataFrame({"a": ["x|y"], "b": [1]}))
    assert table.splitlines() == ["| a | b |", "| --- | --- |", "| x\\|y | 1 |"]


def test_number_formats():
    assert fmt("eval/label_accuracy", 0.8766) == "87.7%"
    assert fmt("eval/fid", 12.34567) == "12.35"
    assert fmt("eval/kid", 0.00123456) == "0.001235"
    assert fmt("eval/fid", math.nan) == "—"


def test_config_column_names_the_parts_a_run_set():
    """`bench run --variants cgan --set arch=upconv` alone: the column says arch=upconv, not 'defaults'."""
    from dataclasses import asdict

    from bench import registry
    from bench.report import _shown_config

    cgan = asdict(registry.get("cgan").make_config())
    assert _shown_config({"cgan": cgan}) == {"cgan": {}}
    assert _shown_config({"cgan": cgan | {"arch": "upconv", "g_channels": 64}}) == {
        "cgan": {"arch": "upconv", "g_channels": 64}}
    # a variant that cannot be loaded here is compared with the shared defaults
    assert _shown_config({"gone.mod:GAN": cgan | {"arch": "upconv"}}) == {"gone.mod:GAN": {}}
