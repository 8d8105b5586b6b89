"""TrialResult: the one record of a trial's result, through Tune's dict and MLflow's metrics."""

import pytest

from bench.records import PENALTY, TrialResult, counts, run_name
from bench.tracking import result_metrics

RESULT = TrialResult(step=20, final=True, history=[(10, {"loss/d": 0.7, "loss/g": 1.2}), (20, {"loss/d": 0.6})],
                     metrics={"eval/fid": 12.5, "eval/label_accuracy": 0.9, "perf/img_per_s": 300.0})


def test_tune_round_trip_keeps_everything():
    result = RESULT.to_tune("eval/fid", "min")
    assert result["eval/fid"] == 12.5 and "tune_only" not in result
    back = TrialResult.from_tune(result | {"training_iteration": 2, "trial_id": "abc"})  # Tune's own keys
    assert back == RESULT


@pytest.mark.parametrize("mode, penalty", [("min", PENALTY), ("max", -PENALTY)])
def test_missing_searched_metric_is_a_penalty_for_tune_only(mode, penalty):
    unconditional = TrialResult(step=20, final=True, metrics={"eval/fid": 30.0})
    result = unconditional.to_tune("eval/label_accuracy", mode)
    assert result["eval/label_accuracy"] == penalty  # finite: NaN would stall ASHA and Optuna
    assert TrialResult.from_tune(result) == unconditional  # never recorded as a score


def test_a_periodic_report_gives_tune_its_periodic_value_under_the_searched_key():
    periodic = TrialResult(step=10, metrics={"periodic/fid": 40.0, "perf/img_per_s": 300.0})
    result = periodic.to_tune("eval/fid", "min")
    assert result["eval/fid"] == 40.0  # what ASHA compares at this milestone
    assert TrialResult.from_tune(result) == periodic  # recorded under periodic/fid only


def test_diverged_result_carries_no_scores():
    diverged = TrialResult(step=15, final=True, diverged=True, metrics={"perf/img_per_s": 300.0})
    result = diverged.to_tune("eval/fid", "min")
    assert result["eval/fid"] == PENALTY
    assert TrialResult.from_tune(result) == diverged
    # rows saved before results named their penalty: a diverged trial's eval/* is the penalty
    assert TrialResult.from_tune({"eval/fid": PENALTY, "final": 1, "diverged": 1}).metrics == {}


@pytest.mark.parametrize("record, expected", [
    (TrialResult(final=True), True),
    (TrialResult(final=True, diverged=True), False),
    (TrialResult(final=False), False),  # periodic result, or stopped early by the scheduler
    (TrialResult.from_store("FINISHED", diverged=False, pruned=False, metrics={}), True),
    (TrialResult.from_store("FINISHED", diverged=False, pruned=True, metrics={}), False),
    (TrialResult.from_store("FINISHED", diverged=True, pruned=False, metrics={}), False),
    (TrialResult.from_store("FAILED", diverged=False, pruned=False, metrics={}), False),
    (TrialResult.from_store("KILLED", diverged=False, pruned=False, metrics={}), False),
])
def test_counts(record, expected):
    assert counts(record) is expected


def test_mlflow_metrics_log_each_point_once():
    first = {(m.key, m.step): m.value for m in result_metrics(RESULT, last_step=0)}
    assert first[("loss/d", 10)] == 0.7 and first[("loss/d", 20)] == 0.6
    assert first[("eval/fid", 20)] == 12.5 and first[("diverged", 20)] == 0.0
    assert not result_metrics(TrialResult(step=20, history=RESULT.history), last_step=20)  # already stored
    again = result_metrics(RESULT, last_step=20)  # the final result at a step already logged
    assert {m.key for m in again} == {"diverged", "eval/fid", "eval/label_accuracy", "perf/img_per_s"}


def test_run_names():
    assert run_name("cgan", "smoke", 0, "abc") == "cgan__smoke__0"
    assert run_name("cgan", "search", 0, "abc") == "cgan__search__0__abc"
