"""The search protocol: phase 2 re-runs each variant's best searched config with fresh seeds."""

import json

import pytest

from bench import registry
from bench.cli import main
from bench.config import build
from bench.experiment import SEARCH_SEED, best_config, sanitize

from e2e import TINY, trial_runs

ROWS = [
    ({"lr_g": 1e-4, "seed": 0}, {"eval/fid": 5.0, "final": 1, "diverged": 0}),
    ({"lr_g": 2e-4, "seed": 0}, {"eval/fid": 3.0, "final": 1, "diverged": 0}),
    ({"lr_g": 3e-4, "seed": 0}, {"eval/fid": 1e6, "final": 1, "diverged": 1}),  # penalty, never best
    ({"lr_g": 4e-4, "seed": 0}, {"eval/fid": 1.0, "final": 0, "diverged": 0}),  # pruned early
]


def test_best_config_uses_the_metric_direction():
    assert best_config(ROWS, "eval/fid", False, ["lr_g"]) == {"lr_g": 2e-4}
    assert best_config(ROWS, "eval/fid", True, ["lr_g"]) == {"lr_g": 1e-4}


def test_best_config_none_when_every_trial_diverged():
    assert best_config(ROWS[2:3], "eval/fid", False, ["lr_g"]) is None


def test_experiment_names_are_safe_folder_names():
    assert sanitize("../../etc/passwd") == "etc-passwd"
    assert sanitize("my run: 1/2") == "my-run-1-2"
    assert sanitize("...") == "experiment"


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_search_then_seeds_with_the_best_config(tmp_path):
    out = tmp_path / "search"
    argv = ["run", "--variants", "cgan", "--preset", "search", "--budget", "smoke", "--num-samples", "3",
            "--seeds", "2", "--search", "optuna", "--scheduler", "asha", "--space", "narrow",
            "--output", str(out), *TINY]
    assert main(argv) == 0
    runs = trial_runs(out)
    search = [r for r in runs if r.data.tags["phase"] == "search"]
    seeds = [r for r in runs if r.data.tags["phase"] == "seeds"]
    assert len(search) == 3 and len(seeds) == 2
    # the default config is one of the searched trials
    cls = registry.get("cgan")
    default = build(cls.Config, cls.budgets["smoke"])
    defaults = {"lr_g": str(default.lr_g), "lr_d": str(default.lr_d)}
    assert any(all(r.data.params[k] == v for k, v in defaults.items()) for r in search)
    # phase 2 runs the searched config with the best final FID (pruned trials have no final FID)
    finished = [r for r in search if r.data.tags.get("bench.pruned") != "1"]
    best = min(finished, key=lambda r: r.data.metrics["eval/fid"])
    for r in seeds:
        assert r.data.params["lr_g"] == best.data.params["lr_g"]
        assert r.data.params["lr_d"] == best.data.params["lr_d"]
    assert sorted(r.data.params["seed"] for r in seeds) == ["0", "1"]
    assert {r.data.params["seed"] for r in search} == {str(SEARCH_SEED)}  # disjoint from the seeds phase
    # chosen on the validation split, reported on test
    assert {r.data.params["eval_split"] for r in search} == {"val"}
    assert {r.data.params["eval_split"] for r in seeds} == {"test"}
    results = json.loads((out / "results.json").read_text())
    assert {t["phase"] for t in results["trials"]} == {"search", "seeds"}
    assert "budget" in (out / "report.md").read_text().lower()


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_every_variant_s_search_runs_at_once(tmp_path):
    """Two variants' searches on two CPUs: their trials train side by side, not one search after the other."""
    out = tmp_path / "both"
    assert main(["run", "--variants", "cgan,lsgan", "--preset", "search", "--budget", "smoke", "--num-samples", "1",
                 "--seeds", "1", "--scheduler", "asha", "--output", str(out), *TINY]) == 0
    search = {r.data.tags["variant"]: r.info for r in trial_runs(out) if r.data.tags["phase"] == "search"}
    assert sorted(search) == ["cgan", "lsgan"]
    cgan, lsgan = search["cgan"], search["lsgan"]
    assert max(cgan.start_time, lsgan.start_time) < min(cgan.end_time, lsgan.end_time)  # the two overlap
    state = json.loads((out / "experiment.json").read_text())
    assert all(state["phases"][p]["done"] for p in ("search-cgan", "search-lsgan", "seeds"))
