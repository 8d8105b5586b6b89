"""The search protocol: phase 2 re-runs each variant's best searched config with fresh seeds."""

import json

import pytest

from bench import registry
from bench.cli import main
from bench.config import build
from bench.experiment import SEARCH_SEED, best_config, sanitize

from e2e import TINY, loss_history, trial_runs

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


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_pbt_exploits_continue_from_the_donor_s_weights(tmp_path):
    """Synchronous PBT, 4 trials, 3 perturbations: each time the worst trial takes the best one's
    checkpoint and perturbed learning rates. Its MLflow history goes on from the donor's step with
    the donor's weights, every step logged once."""
    out = tmp_path / "pbt"
    assert main(["run", "--variants", "cgan", "--preset", "search", "--budget", "smoke", "--num-samples", "4",
                 "--seeds", "1", "--scheduler", "pbt", "--output", str(out), *TINY, "--set", "eval_every=10",
                 "--set", "cas=false"]) == 0
    search = {r.info.run_id: r for r in trial_runs(out) if r.data.tags["phase"] == "search"}
    assert len(search) == 4 and {r.info.status for r in search.values()} == {"FINISHED"}
    exploits = {run_id: json.loads(r.data.tags.get("bench.exploits", "[]")) for run_id, r in search.items()}
    assert sum(map(len, exploits.values())) >= 1
    losses = {run_id: loss_history(out, run_id, "loss/d") for run_id in search}
    for run_id, done in exploits.items():
        assert sorted(losses[run_id]) == list(range(1, 41))  # one value per step: no gap, no repeat
        for e in done:
            donor = e["donor_run_id"]
            assert donor in search and donor != run_id and e["step"] in (10, 20, 30)
            assert e["changed"] and set(e["changed"]) <= {"lr_g", "lr_d", "embed"}  # mutated, or the donor's
            # the first step after the exploit trains the donor's weights on the donor's batches
            assert losses[run_id][e["step"] + 1] == pytest.approx(losses[donor][e["step"] + 1], rel=1e-5)
        if done:
            config = json.loads(search[run_id].data.tags["bench.config"])
            assert {k: config[k] for k in done[-1]["changed"]} == done[-1]["changed"]
            key = "lr_g"  # perturbed at every exploit; MLflow plots its schedule: the start value, then each change
            schedule = loss_history(out, run_id, f"hparam/{key}")
            assert sorted(schedule) == [0] + [e["step"] for e in done if key in e["changed"]]
            assert schedule[done[0]["step"]] == pytest.approx(done[0]["changed"][key])
