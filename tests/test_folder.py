"""An experiment folder is a self-contained, single-writer unit: a copy works without its
original, a second writer is refused, and a full disk stops the run resumably."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from bench.cli import main

from e2e import TINY, all_runs, driver, free_port, trial_runs, wait_for_checkpoint

pytestmark = pytest.mark.slow


def one_trial(out):
    return ["--variants", "cgan", "--output", str(out), *TINY]


def test_a_second_run_on_a_folder_in_use_is_refused_with_the_holders_pid(tmp_path, ray_cluster):
    out = tmp_path / "exp"
    env = {"BENCH_FAULT_SLOW": "0.15", "RAY_ADDRESS": ray_cluster}
    with driver(one_trial(out), env) as first, driver(one_trial(out), env) as second:
        procs = {first.pid: first, second.pid: second}
        while all(p.poll() is None for p in procs.values()):  # started together: one must give way
            time.sleep(0.2)
        [loser] = [p for p in procs.values() if p.poll() is not None]
        [winner] = [p for p in procs.values() if p is not loser]
        said = loser.stdout.read().splitlines()
        assert loser.returncode == 2 and winner.poll() is None
        assert said[-1] == (f"error: {out} is in use by another bench run (pid {winner.pid}); wait for it to end, "
                            "or choose another --output")
        wait_for_checkpoint(out, winner)
        assert main(["run", "--resume", "--output", str(out)]) == 2  # a resume is a writer too


def _wait_for_no_actors(timeout: float = 120) -> None:
    """Until no Ray worker runs a task or actor (their process titles read ray::<task>, ray::IDLE)."""
    import psutil  # shipped inside Ray

    def busy() -> bool:
        titles = []
        for p in psutil.process_iter():
            try:
                titles.append(" ".join(p.cmdline()))
            except psutil.Error:
                pass
        return any(t.startswith("ray::") and not t.startswith("ray::IDLE") for t in titles)

    end = time.monotonic() + timeout
    while busy() and time.monotonic() < end:
        time.sleep(0.5)


def _ui(out, port):
    """`bench ui` on out; yields (process, the link it printed) once the server answers."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "ui", "--output", str(out), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line = proc.stdout.readline()
    return proc, line


def test_a_copied_folder_works_after_its_original_is_deleted(tmp_path, ray_cluster, capsys):
    out, copy = tmp_path / "exp", tmp_path / "moved" / "exp-copy"
    with driver(["--seeds", "2", *one_trial(out)], {"BENCH_FAULT_SLOW": "0.15", "RAY_ADDRESS": ray_cluster}) as proc:
        wait_for_checkpoint(out, proc)
        os.killpg(proc.pid, signal.SIGKILL)  # an interrupted run, so --resume has work to do
        proc.wait()
    _wait_for_no_actors()  # the dead driver's trials, on the shared cluster, stop writing into out
    shutil.copytree(out, copy, symlinks=True)
    shutil.rmtree(out)

    assert main(["run", "--resume", "--output", str(copy)]) == 0
    runs = trial_runs(copy)
    assert len(runs) == 2 and {r.info.status for r in all_runs(copy)} == {"FINISHED"}
    for r in runs:
        assert r.info.artifact_uri.startswith(copy.resolve().as_uri())
        assert r.data.tags["bench.checkpoint"].startswith(str(copy.resolve()))
    state = json.loads((copy / "experiment.json").read_text())
    assert state["tracking_uri"] == f"sqlite:///{copy.resolve()}/mlflow.db" and state["folder"] == str(copy.resolve())

    assert main(["report", "--output", str(copy)]) == 0
    assert runs[0].info.run_name in (copy / "report.md").read_text()
    assert main(["sample", runs[0].info.run_id, "--output", str(copy), "--n", "20", "--out",
                 str(tmp_path / "s.npz")]) == 0
    port = free_port()
    proc, line = _ui(copy, port)
    try:
        assert line.startswith(f"MLflow UI: http://127.0.0.1:{port}/#/experiments/")
        search = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
                                        data=json.dumps({"experiment_ids": [state["experiment_id"]]}).encode(),
                                        headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(search, timeout=30) as r:
            served = json.load(r)["runs"]
        assert {run["info"]["artifact_uri"].startswith(copy.resolve().as_uri()) for run in served} == {True}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    assert not out.exists()  # nothing recreated the original


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (root only), grown by calling the returned function."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mnt, lambda: subprocess.run(["mount", "-o", "remount,size=400m", str(mnt)], check=True)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def test_a_full_disk_is_one_line_and_the_run_resumes_once_space_is_freed(small_disk, ray_cluster, capsys):
    mnt, grow = small_disk
    out = mnt / "exp"
    assert main(["run", *one_trial(out)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # Tune logs the failed trial before it
    assert last.startswith(f"error: no space left on the device to write {mnt}")
    assert last.endswith(f"Free some space, then run bench run --resume --output {out}")
    grow()
    code = main(["run", "--resume", "--output", str(out)])
    assert code == 0, capsys.readouterr().err.strip().splitlines()[-3:]
    assert {r.info.status for r in trial_runs(out)} == {"FINISHED"} and (out / "report.md").is_file()
