"""The Tune adapter without a Ray cluster: the trainable under stand-ins for Tune's session calls,
the MLflow tracker callback on stand-in trials. The end-to-end tests run both under real Ray."""

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench import tuner
from bench.records import GRID_FILE, STATE_FILE, TrialResult
from bench.store import client, default_uri, trial_runs
from bench.tracking import TrialLog, ensure_experiment, start_parent

CONFIG = {"arm": {"variant": "cgan"}, "seed": 1, "preset": "smoke", "budget": "smoke", "steps": 20,
          "eval_every": 10, "log_every": 5, "batch_size": 16, "eval_n": 100, "final_n": 100}


def _fake_tune(monkeypatch, keep: Path, checkpoint=None) -> list:
    """Tune's session calls, recorded: each report's result dict, its checkpoint's files and a copy
    of them in `keep` (as Tune copies it away before the trainable deletes the directory)."""
    reports = []

    def report(result, checkpoint=None):
        files = sorted(p.name for p in Path(checkpoint.path).iterdir()) if checkpoint else []
        saved = None
        if checkpoint:
            saved = keep / f"report_{len(reports)}"
            shutil.copytree(checkpoint.path, saved)
        reports.append((result, files, saved))

    monkeypatch.setattr(tuner.tune, "report", report)
    monkeypatch.setattr(tuner.tune, "get_context", lambda: SimpleNamespace(get_trial_id=lambda: "t1"))
    monkeypatch.setattr(tuner.tune, "get_checkpoint", lambda: checkpoint)
    monkeypatch.setattr(tuner, "node_id", lambda: "node-1")  # no Ray here: asking for the node would start one
    return reports


@pytest.fixture(scope="module")
def ctx(feature_cache):
    return tuner.TrialContext(data_dir=os.environ["BENCH_DATA_DIR"], cache_dir=str(feature_cache))


def test_trainable_reports_records_with_checkpoints_and_resumes(monkeypatch, ctx, tmp_path):
    reports = _fake_tune(monkeypatch, tmp_path / "first")
    tuner.trainable(CONFIG, ctx)
    records = [TrialResult.from_tune(r) for r, _, _ in reports]
    assert [(r.step, r.final) for r in records] == [(10, False), (20, True)]
    assert math.isfinite(records[-1].metrics["eval/fid"]) and "eval/label_accuracy" in records[-1].metrics
    assert all(STATE_FILE in files for _, files, _ in reports)
    assert GRID_FILE in reports[-1][1]
    assert {r[tuner.NODE_KEY] for r, _, _ in reports} == {"node-1"}  # the tracker tags runs with it

    step_10 = tuner.tune.Checkpoint.from_directory(reports[0][2])
    resumed = _fake_tune(monkeypatch, tmp_path / "resumed", checkpoint=step_10)
    tuner.trainable(CONFIG, ctx)
    assert [TrialResult.from_tune(r).step for r, _, _ in resumed] == [20]  # went on from step 10
    last = TrialResult.from_tune(resumed[-1][0])  # and it ended where the unbroken run did
    assert last.history == records[-1].history
    assert {k: v for k, v in last.metrics.items() if k.startswith("eval/")} == {
        k: v for k, v in records[-1].metrics.items() if k.startswith("eval/")}


def _trial(trial_id, result=None, error_file=None):
    return SimpleNamespace(config=CONFIG, trial_id=trial_id, checkpoint=None, last_result=result or {},
                           error_file=error_file, get_error=lambda: None)


def test_tracker_writes_one_run_per_trial_and_its_failure(tmp_path):
    uri = default_uri(tmp_path)
    exp = ensure_experiment(uri, "exp", tmp_path / "mlartifacts")
    parent = start_parent(uri, exp, "exp:seeds", {"bench.session": "s1", "phase": "seeds"})
    cb = tuner.TrialTracker(TrialLog(uri, exp, parent, "s1"), "seeds", {"commit": "abc"})
    done = TrialResult(step=20, final=True, history=[(20, {"loss/d": 0.5})], metrics={"eval/fid": 9.0})
    ok, bad = _trial("t1", done.to_tune("eval/fid", "min")), _trial("t2", error_file=str(tmp_path / "err.txt"))
    (tmp_path / "err.txt").write_text("Traceback …\nInjectedCrash: injected crash at step 25\n")
    for trial in (ok, bad):
        cb.on_trial_start(0, [], trial)
    cb.on_trial_result(0, [], ok, ok.last_result)
    cb.on_trial_result(0, [], ok, ok.last_result)  # a repeated result is logged once
    cb.on_trial_complete(0, [], ok)
    cb.on_trial_error(0, [], bad)
    runs = trial_runs(client(uri), exp, "s1")
    assert runs["t1"].info.status == "FINISHED" and runs["t1"].data.metrics["eval/fid"] == 9.0
    assert runs["t1"].info.run_name == "cgan__smoke__1" and runs["t1"].data.tags["commit"] == "abc"
    assert json.loads(runs["t1"].data.tags["bench.config"])["steps"] == 20
    assert [m.step for m in client(uri).get_metric_history(runs["t1"].info.run_id, "loss/d")] == [20]
    assert runs["t2"].info.status == "FAILED"
    assert runs["t2"].data.tags["bench.error"] == "InjectedCrash: injected crash at step 25"


def test_a_trial_s_nodes_are_tagged_in_order_once_each_move(tmp_path):
    uri = default_uri(tmp_path)
    exp = ensure_experiment(uri, "exp", tmp_path / "mlartifacts")
    parent = start_parent(uri, exp, "exp:seeds", {"bench.session": "s1", "phase": "seeds"})
    cb = tuner.TrialTracker(TrialLog(uri, exp, parent, "s1"), "seeds", {})
    trial = _trial("t1")
    cb.on_trial_start(0, [], trial)
    for node in ("a", "a", "b"):  # two results on node a, then the node is lost and it goes on on b
        cb.on_trial_result(0, [], trial, TrialResult(step=10).to_tune("eval/fid", "min") | {
            tuner.NODE_KEY: node, "hostname": "h"})
    again = TrialLog(uri, exp, parent, "s1")  # a driver resumed later reads the nodes back
    again.placed("t1", "b", "h")
    tags = trial_runs(client(uri), exp, "s1")["t1"].data.tags
    assert (tags["bench.nodes"], tags["bench.node"], tags["bench.host"]) == ("a,b", "b", "h")
    assert again.nodes["t1"] == ["a", "b"]


def test_fits_in_threads_share_the_stop_event_that_tune_waits_on():
    """Tune 2.x ends a fit when the event its private _setup_signal_catching returned is set; a fit
    in a thread must get bench's shared one (the main thread sets it on Ctrl-C)."""
    import inspect
    from concurrent.futures import ThreadPoolExecutor

    import ray.tune.tune as tune_run

    assert "experiment_interrupted_event = _setup_signal_catching()" in inspect.getsource(tune_run.run)
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(tune_run._setup_signal_catching).result() is tuner._STOP
    assert tuner.concurrently([lambda: 1, lambda: 2]) == [1, 2]


def test_pbt_exploits_are_tagged_once_each_and_the_tag_stays_within_mlflow_s_limit(tmp_path):
    from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

    uri = default_uri(tmp_path)
    exp = ensure_experiment(uri, "exp", tmp_path / "mlartifacts")
    parent = start_parent(uri, exp, "exp:search", {"bench.session": "s1", "phase": "search"})
    log = TrialLog(uri, exp, parent, "s1")
    start = {"lr_g": 1e-3, "lr_d": 1e-3, "embed": "concat"}
    log.open("t1", "cgan__search__0__t1", start, {"bench.config": json.dumps(start)})
    log.open("t2", "cgan__search__0__t2", start, {"bench.config": json.dumps(start)})
    for k in range(1, 121):  # a long PBT run: 120 exploits by t1, each at a new step, each logged twice
        config = {"lr_g": 1e-3 * 1.2 ** (k % 7 + 1), "lr_d": 1e-3, "embed": "multiply"}
        for _ in range(2):
            log.exploited("t1", "t2", "cgan__search__0__t2", 10 * k, config)
    run = trial_runs(client(uri), exp, "s1")["t1"]
    exploits = json.loads(run.data.tags["bench.exploits"])
    assert len(run.data.tags["bench.exploits"]) <= MAX_TAG_VAL_LENGTH
    assert exploits[-1]["step"] == 1200 and [e["step"] for e in exploits] == sorted({e["step"] for e in exploits})
    assert exploits[0]["donor"] == "cgan__search__0__t2" and exploits[0]["donor_run_id"] == log.run_ids["t2"]
    assert json.loads(run.data.tags["bench.config"]) == config
    schedule = client(uri).get_metric_history(run.info.run_id, "hparam/lr_g")
    assert sorted(m.step for m in schedule) == [0] + [10 * k for k in range(1, 121)]  # start value once, then each
    assert {m.step: m.value for m in schedule}[0] == 1e-3 and run.data.params["lr_g"] == "0.001"  # params: the start
