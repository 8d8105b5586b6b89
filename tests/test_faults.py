"""Injected faults: crashes, divergence, a killed driver, Ctrl-C. Nothing is lost or doubled."""

import os
import signal

import pytest

from bench.cli import main
from e2e import TINY, all_runs, loss_steps, start_driver, trial_runs, wait_for_checkpoint

pytestmark = pytest.mark.slow


def test_crashed_trial_is_retried_from_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_FAULT_CRASH", "25")
    monkeypatch.setenv("BENCH_FAULT_DIR", str(tmp_path))
    out = tmp_path / "exp"
    assert main(["run", "--variants", "lsgan", "--output", str(out), *TINY]) == 0
    [run] = trial_runs(out)
    assert run.info.status == "FINISHED" and "eval/fid" in run.data.metrics
    assert loss_steps(out, run.info.run_id) == list(range(1, 41))  # steps 21-25 re-run, logged once
    assert list(tmp_path.glob("crashed-*"))  # the fault did fire


def test_trial_failing_beyond_retries_is_recorded_and_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_FAULT_CRASH", "25")
    monkeypatch.setenv("BENCH_FAULT_DIR", str(tmp_path))
    out = tmp_path / "exp"
    assert main(["run", "--variants", "cgan", "--max-failures", "0", "--output", str(out), *TINY]) == 0
    [run] = trial_runs(out)
    assert run.info.status == "FAILED"
    assert "injected crash at step 25" in run.data.tags["bench.error"]
    assert "injected crash at step 25" in (out / "report.md").read_text()


def test_divergence_is_a_result_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_FAULT_NAN", "15")
    out = tmp_path / "exp"
    assert main(["run", "--variants", "acgan", "--output", str(out), *TINY]) == 0
    [run] = trial_runs(out)
    assert run.info.status == "FINISHED" and run.data.tags["bench.diverged"] == "1"
    assert run.data.metrics["diverged"] == 1 and "eval/fid" not in run.data.metrics
    assert "diverged" in (out / "report.md").read_text()


def _resume_and_check(out, n_trials):
    assert main(["run", "--resume", "--output", str(out)]) == 0
    runs = trial_runs(out)
    assert len(runs) == n_trials  # re-attached by trial id, never duplicated
    assert all(r.info.status == "FINISHED" and "eval/fid" in r.data.metrics for r in runs)
    assert all(loss_steps(out, r.info.run_id) == list(range(1, 41)) for r in runs)
    assert "RUNNING" not in {r.info.status for r in all_runs(out)}
    assert (out / "report.md").is_file()


def test_killed_driver_resumes_without_duplicates(tmp_path):
    out = tmp_path / "exp"
    proc = start_driver(["--variants", "cgan", "--seeds", "2", "--output", str(out), *TINY],
                        {"BENCH_FAULT_SLOW": "0.15"})
    wait_for_checkpoint(out, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "RUNNING" in {r.info.status for r in trial_runs(out)}  # the kill left them open
    _resume_and_check(out, 2)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    out = tmp_path / "exp"
    proc = start_driver(["--variants", "cgan", "--seeds", "2", "--output", str(out), *TINY],
                        {"BENCH_FAULT_SLOW": "0.15"})
    wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, text
    assert f"bench run --resume --output {out}" in text
    assert "RUNNING" not in {r.info.status for r in all_runs(out)}
    _resume_and_check(out, 2)


def test_rerun_into_existing_output_is_refused(tmp_path, capsys):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "experiment.json").write_text("{}")
    assert main(["run", "--variants", "cgan", "--output", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
