"""Helpers for the end-to-end tests: tiny budgets and reading the MLflow store back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.tracking import MlflowClient

from bench.records import STATE_FILE

# A budget that exercises every part (periodic eval, checkpoints, final eval) in seconds.
TINY = ["--set", "steps=40", "--set", "eval_every=20", "--set", "batch_size=32", "--set", "log_every=1",
        "--set", "eval_n=200", "--set", "final_n=400"]


def store(out: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{out.resolve() / 'mlflow.db'}")


def trial_runs(out: Path) -> list:
    c = store(out)
    exp = c.search_experiments()[0]
    return c.search_runs([exp.experiment_id], filter_string="tags.`bench.kind` = 'trial'")


def all_runs(out: Path) -> list:
    c = store(out)
    return [r for e in c.search_experiments() for r in c.search_runs([e.experiment_id])]


def loss_steps(out: Path, run_id: str) -> list[int]:
    return sorted(loss_history(out, run_id, "loss/d"))


def loss_history(out: Path, run_id: str, key: str) -> dict[int, float]:
    """step → value of one metric; a step logged twice fails (a duplicate would hide in a dict)."""
    points = store(out).get_metric_history(run_id, key)
    steps = [m.step for m in points]
    assert len(steps) == len(set(steps)), f"{key}: steps logged twice in {run_id}"
    return {m.step: m.value for m in points}


@contextmanager
def driver(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """`bench run` in its own process group, killed with all its Ray processes when the test ends,
    so a failed test never leaves a driver training beside the next one."""
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", *args], env=os.environ | env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_checkpoint(out: Path) -> bool:
    return bool(list((out / "ray").glob(f"*/*/checkpoint_*/{STATE_FILE}")))


def wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout: float = 1200) -> None:
    """Block until some trial has saved a checkpoint (the driver is mid-experiment)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if has_checkpoint(out):
            return
        if proc.poll() is not None:
            raise AssertionError(f"driver ended early:\n{proc.stdout.read()}")
        time.sleep(0.5)
    raise AssertionError("no checkpoint appeared")
