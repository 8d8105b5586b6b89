"""`bench run` end to end with Ray and MLflow, then the report, `bench sample` and `bench evaluate`."""

import json
import math

import pandas as pd
import pytest

from bench.cli import main

from e2e import TINY, all_runs, loss_steps, store, trial_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_cluster):
    out = tmp_path_factory.mktemp("e2e") / "exp"
    assert main(["run", "--variants", "cgan,acgan", "--seeds", "2", "--output", str(out), *TINY]) == 0
    return out


def test_every_trial_is_one_finished_run_with_provenance(finished):
    runs = trial_runs(finished)
    assert sorted(r.info.run_name for r in runs) == [
        "acgan__smoke__0", "acgan__smoke__1", "cgan__smoke__0", "cgan__smoke__1"]
    for r in runs:
        assert r.info.status == "FINISHED"
        tags, params, metrics = r.data.tags, r.data.params, r.data.metrics
        assert len(tags["commit"]) >= 7 and len(tags["evaluator_sha256"]) == 64
        assert params["steps"] == "40" and params["final_n"] == "400"
        assert math.isfinite(metrics["eval/fid"]) and 0 <= metrics["eval/label_accuracy"] <= 1
        assert metrics["perf/img_per_s"] > 0
        assert {a.path for a in store(finished).list_artifacts(r.info.run_id)} >= {"grid.png"}


def test_concurrent_trials_lose_and_duplicate_no_metric(finished):
    for r in trial_runs(finished):
        assert loss_steps(finished, r.info.run_id) == list(range(1, 41))


def test_periodic_and_final_scores_have_their_own_keys(finished):
    c = store(finished)
    for r in trial_runs(finished):
        assert [m.step for m in c.get_metric_history(r.info.run_id, "periodic/fid")] == [20]  # eval_n = 200
        assert [m.step for m in c.get_metric_history(r.info.run_id, "eval/fid")] == [40]  # final_n = 400
        for key in ("eval/precision", "eval/recall", "eval/density", "eval/coverage", "eval/memorization",
                    "eval/intra_fid", "eval/cas"):
            assert math.isfinite(r.data.metrics[key]), key
    report = (finished / "report.md").read_text()
    assert "## Fidelity, diversity and memorization" in report and "real data (N = 400)" in report


def test_no_run_left_running(finished):
    assert {r.info.status for r in all_runs(finished)} == {"FINISHED"}


def test_report_lists_every_variant_and_trial(finished):
    report = (finished / "report.md").read_text()
    for name in ("cgan__smoke__0", "acgan__smoke__1", "bench run --variants cgan,acgan"):
        assert name in report
    csv = pd.read_csv(finished / "results.csv")
    assert len(csv) == 4


def test_report_regenerates_from_the_store_alone(finished, tmp_path):
    uri = f"sqlite:///{finished.resolve() / 'mlflow.db'}"
    assert main(["report", "--tracking-uri", uri, "--experiment", "exp", "--output", str(tmp_path)]) == 0
    cols = ["run_name", "eval/fid", "eval/label_accuracy", "eval/kid"]
    a = pd.read_csv(finished / "results.csv")[cols].sort_values("run_name").reset_index(drop=True)
    b = pd.read_csv(tmp_path / "results.csv")[cols].sort_values("run_name").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_sample_and_evaluate_reproduce_the_reported_numbers(finished, tmp_path, capsys):
    run = next(r for r in trial_runs(finished) if r.info.run_name == "cgan__smoke__1")
    path = tmp_path / "s.npz"
    assert main(["sample", run.info.run_id, "--output", str(finished), "--n", "400", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(path), "--json", "--seed", "1"]) == 0
    scores = json.loads(capsys.readouterr().out)
    for key in ("eval/fid", "eval/kid", "eval/label_accuracy", "eval/classifier_score", "eval/precision",
                "eval/recall", "eval/density", "eval/coverage", "eval/memorization", "eval/intra_fid", "eval/cas"):
        assert scores[key] == pytest.approx(run.data.metrics[key], rel=1e-4, abs=1e-6), key
