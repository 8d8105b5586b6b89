"""Injected faults: crashes, divergence, a killed driver, Ctrl-C. Nothing is lost or doubled."""

import json
import os
import signal
import threading
from unittest import mock

import pytest

from bench.cli import main

from e2e import TINY, all_runs, driver, has_checkpoint, loss_steps, trial_runs, wait_for_checkpoint


def two_seeds(out):
    return ["--variants", "cgan", "--seeds", "2", "--output", str(out), *TINY]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, ray_cluster):
    """One experiment, one fault per variant: lsgan crashes once at step 25 (retried from its
    step-20 checkpoint), cgan crashes at step 25 on every attempt (fails beyond --max-failures 1),
    acgan's losses turn NaN at step 15."""
    out = tmp_path_factory.mktemp("faults") / "exp"
    env = {"BENCH_FAULT_CRASH": "lsgan:25", "BENCH_FAULT_FAIL": "cgan:25", "BENCH_FAULT_NAN": "acgan:15",
           "BENCH_FAULT_DIR": str(out.parent)}
    with mock.patch.dict(os.environ, env):
        assert main(["run", "--variants", "lsgan,cgan,acgan", "--max-failures", "1", "--output", str(out),
                     *TINY]) == 0
    return out


def _run_of(out, variant):
    [run] = [r for r in trial_runs(out) if r.data.tags["variant"] == variant]
    return run


@pytest.mark.slow
def test_crashed_trial_is_retried_from_its_checkpoint(faulty):
    run = _run_of(faulty, "lsgan")
    assert run.info.status == "FINISHED" and "eval/fid" in run.data.metrics
    assert loss_steps(faulty, run.info.run_id) == list(range(1, 41))  # steps 21-25 re-run, logged once
    assert list(faulty.parent.glob("crashed-*"))  # the fault did fire


@pytest.mark.slow
def test_trial_failing_beyond_retries_is_recorded_and_reported(faulty):
    run = _run_of(faulty, "cgan")
    assert run.info.status == "FAILED"
    assert "injected crash at step 25" in run.data.tags["bench.error"]
    assert "injected crash at step 25" in (faulty / "report.md").read_text()


@pytest.mark.slow
def test_divergence_is_a_result_not_a_crash(faulty):
    run = _run_of(faulty, "acgan")
    assert run.info.status == "FINISHED" and run.data.tags["bench.diverged"] == "1"
    assert run.data.metrics["diverged"] == 1 and "eval/fid" not in run.data.metrics
    assert "diverged" in (faulty / "report.md").read_text()


def _resume_and_check(out, n_trials):
    assert main(["run", "--resume", "--output", str(out)]) == 0
    runs = trial_runs(out)
    assert len(runs) == n_trials  # re-attached by trial id, never duplicated
    assert all(r.info.status == "FINISHED" and "eval/fid" in r.data.metrics for r in runs)
    assert all(loss_steps(out, r.info.run_id) == list(range(1, 41)) for r in runs)
    assert "RUNNING" not in {r.info.status for r in all_runs(out)}
    assert (out / "report.md").is_file()


@pytest.mark.slow
def test_killed_driver_resumes_without_duplicates(tmp_path, ray_cluster):
    out = tmp_path / "exp"
    with driver(two_seeds(out), {"BENCH_FAULT_SLOW": "0.15", "RAY_ADDRESS": ray_cluster}) as proc:
        wait_for_checkpoint(out, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert "RUNNING" in {r.info.status for r in trial_runs(out)}  # the kill left them open
    _resume_and_check(out, 2)


@pytest.mark.slow
def test_sigterm_during_concurrent_searches_stops_every_search_and_resumes(tmp_path, ray_cluster):
    """SIGTERM, as a batch scheduler stops a job, to the driver alone, while two variants' searches run in
    its threads: both stop as on Ctrl-C (Tune saves each phase), exit 143 with the resume line, and
    --resume finishes both searches and the seeds phase with every step logged once."""
    out = tmp_path / "search"
    args = ["--variants", "cgan,lsgan", "--preset", "search", "--budget", "smoke", "--num-samples", "1",
            "--seeds", "1", "--output", str(out), *TINY]
    with driver(args, {"BENCH_FAULT_SLOW": "0.15", "RAY_ADDRESS": ray_cluster}) as proc:
        wait_for_checkpoint(out, proc)
        proc.send_signal(signal.SIGTERM)
        said = proc.communicate(timeout=300)[0].strip().splitlines()
    assert proc.returncode == 143, said
    assert said[-1] == f"stopped by SIGTERM; results so far are kept. Continue with: bench run --resume --output {out}"
    assert "RUNNING" not in {r.info.status for r in all_runs(out)}
    assert not json.loads((out / "experiment.json").read_text())["phases"]["search-cgan"].get("done")
    assert main(["run", "--resume", "--output", str(out)]) == 0
    runs = trial_runs(out)
    assert sorted((r.data.tags["phase"], r.data.tags["variant"]) for r in runs) == [
        ("search", "cgan"), ("search", "lsgan"), ("seeds", "cgan"), ("seeds", "lsgan")]
    assert all(r.info.status == "FINISHED" and loss_steps(out, r.info.run_id) == list(range(1, 41)) for r in runs)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    out = tmp_path / "exp"
    monkeypatch.setenv("BENCH_FAULT_SLOW", "0.15")

    done = threading.Event()

    def press_ctrl_c():  # as a terminal would: SIGINT to the driver, here this process
        while not done.wait(0.5):
            if has_checkpoint(out):
                os.kill(os.getpid(), signal.SIGINT)
                return

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    try:
        code = main(["run", *two_seeds(out)])
    finally:
        done.set()
    assert code == 130
    assert f"bench run --resume --output {out}" in capsys.readouterr().err
    assert "RUNNING" not in {r.info.status for r in all_runs(out)}
    _resume_and_check(out, 2)


def test_rerun_into_existing_output_is_refused(tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "experiment.json").write_text("{}")
    assert main(["run", "--variants", "cgan", "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # starts Ray of its own twice: never beside the other Ray tests
def test_resume_after_kill_9_ends_what_the_killed_driver_s_ray_left(tmp_path):
    """A driver that started its own Ray is killed with SIGKILL: some of that Ray's processes outlive
    it. `--resume` ends them (by the pids experiment.json recorded) and finishes the run."""
    import json
    import subprocess
    import sys
    import time

    import ray  # noqa: F401  (for its bundled psutil)

    psutil = __import__("psutil")
    out = tmp_path / "exp"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"BENCH_FAULT_SLOW": "0.15"}
    with driver(two_seeds(out), env) as proc:
        wait_for_checkpoint(out, proc)
        os.kill(proc.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
        proc.wait()
    recorded = json.loads((out / "experiment.json").read_text())["ray_processes"]
    time.sleep(5)  # what dies with the driver has died by now

    def running():
        alive = []
        for pid, started in recorded:
            try:
                if abs(psutil.Process(pid).create_time() - started) < 0.01:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        return alive

    left = running()
    assert left, "the killed driver's Ray left nothing behind: nothing to test"
    try:
        done = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", "--output", str(out)],
                              env=env | {"BENCH_FAULT_SLOW": ""}, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "processes that the killed run's Ray left running" in done.stdout, done.stdout
        assert running() == []
        assert len(trial_runs(out)) == 2 and "RUNNING" not in {r.info.status for r in all_runs(out)}
    finally:
        for pid in running():  # a failed test still stops what it caused
            os.kill(pid, signal.SIGKILL)
