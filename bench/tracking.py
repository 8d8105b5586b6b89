"""Writing to MLflow: the experiment, parent runs per phase, one child run per trial.

Only the driver writes. Trials report to Tune; the Tune callback (bench.tuner.TrialTracker)
hands each result to `TrialLog`, which turns it into one `log_batch`, so concurrent trials
never race on the store and a fresh sqlite schema is created once, before any trial starts
(concurrent first use of a sqlite store corrupts it). No Ray here.
"""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError, check_reachable
from bench.records import TrialResult
from bench.store import client, trial_runs

BATCH = 1000  # MLflow's log_batch limit on metrics per call


def git_commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def hardware() -> str:
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def ensure_experiment(uri: str, name: str, artifact_root: Path | None) -> str:
    """Create the schema and the experiment (driver only, before trials start)."""
    if uri.startswith(("http://", "https://")):
        check_reachable(uri, "the MLflow server", "check --tracking-uri")
    try:
        c = client(uri)
        exp = c.get_experiment_by_name(name)
    except Exception as e:  # mlflow raises its own types (or OSError) for unreachable or unwritable stores
        raise BenchError(f"cannot open the MLflow store {uri}: {(str(e) or type(e).__name__).splitlines()[0]}; "
                         "check --tracking-uri or --output") from None
    if exp is not None:
        return exp.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root else None
    return c.create_experiment(name, artifact_location=location)


def start_parent(uri: str, experiment_id: str, name: str, tags: dict[str, str]) -> str:
    run = client(uri).create_run(experiment_id, run_name=name, tags={"bench.kind": "parent", **tags})
    return run.info.run_id


def supersede(uri: str, experiment_id: str, session: str, tuner: str) -> None:
    """Close and hide the runs of a Tuner that is started over (its trials get new ids)."""
    c = client(uri)
    for run in trial_runs(c, experiment_id, session).values():
        if run.data.tags.get("bench.tuner") == tuner:
            c.set_tag(run.info.run_id, "bench.superseded", "1")
            if run.info.status == "RUNNING":
                c.set_terminated(run.info.run_id, "KILLED")


def close_session(uri: str, experiment_id: str, session: str, status: str) -> None:
    """No run stays RUNNING after the command ends: trials and parents get `status`."""
    c = client(uri)
    runs = c.search_runs([experiment_id], filter_string=f"tags.`bench.session` = '{session}' "
                                                       "and attributes.status = 'RUNNING'", max_results=50000)
    for run in runs:
        c.set_terminated(run.info.run_id, status)


def result_metrics(result: TrialResult, last_step: int) -> list:
    """MLflow metrics of one result that are not in the store yet: loss windows after
    `last_step`, then (at a new step, or the final result) `diverged` and every finite score."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = [Metric(key, float(value), now, step)
           for step, losses in result.history if step > last_step for key, value in losses.items()]
    if result.step > last_step or result.final:
        values = {"diverged": float(result.diverged)} | result.finite_metrics()
        out += [Metric(key, value, now, result.step) for key, value in values.items()]
    return out


class TrialLog:
    """One MLflow child run per trial, found again by trial id after a restore or a resume."""

    def __init__(self, uri: str, experiment_id: str, parent_id: str, session: str):
        self.uri, self.experiment_id, self.parent_id, self.session = uri, experiment_id, parent_id, session
        self.run_ids: dict[str, str] = {}
        self.last_step: dict[str, int] = {}
        self._client = None

    @property
    def c(self):
        if self._client is None:
            self._client = client(self.uri)
            for trial_id, run in trial_runs(self._client, self.experiment_id, self.session).items():
                self.run_ids[trial_id] = run.info.run_id
                self.last_step[trial_id] = int(run.data.tags.get("bench.last_step", "0"))
        return self._client

    def open(self, trial_id: str, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        """The trial's run, created with these name, params and tags unless it exists (then reopened)."""
        from mlflow.entities import Param

        c = self.c
        if trial_id in self.run_ids:
            run_id = self.run_ids[trial_id]
            if c.get_run(run_id).info.status != "RUNNING":
                c.update_run(run_id, status="RUNNING")
            return run_id
        run = c.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": self.parent_id, "bench.kind": "trial", "bench.session": self.session,
            "bench.trial_id": trial_id, "bench.last_step": "0", **tags})
        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            c.log_batch(run.info.run_id, params=items[i:i + 100])
        self.run_ids[trial_id], self.last_step[trial_id] = run.info.run_id, 0
        return run.info.run_id

    def log(self, trial_id: str, result: TrialResult) -> None:
        """Write what the store lacks of this result, in batches, with the step reached as a tag."""
        from mlflow.entities import RunTag

        last = self.last_step.get(trial_id, 0)
        metrics = result_metrics(result, last)
        step = max(last, result.step)
        tags = [RunTag("bench.last_step", str(step))] + ([RunTag("bench.diverged", "1")] if result.diverged else [])
        for i in range(0, max(len(metrics), 1), BATCH):
            self.c.log_batch(self.run_ids[trial_id], metrics=metrics[i:i + BATCH], tags=tags if i == 0 else [])
        self.last_step[trial_id] = step

    def complete(self, trial_id: str, checkpoint: str | None, grid: Path | None, final: bool) -> None:
        """A trial that ended without error; not `final` means the scheduler stopped it early."""
        run_id = self.run_ids[trial_id]
        if checkpoint is not None:
            self.c.set_tag(run_id, "bench.checkpoint", checkpoint)
        if grid is not None and grid.is_file():
            self.c.log_artifact(run_id, str(grid))
        if not final:
            self.c.set_tag(run_id, "bench.pruned", "1")
        self.c.set_terminated(run_id, "FINISHED")

    def fail(self, trial_id: str, error: str, checkpoint: str | None) -> None:
        run_id = self.run_ids[trial_id]
        self.c.set_tag(run_id, "bench.error", error)
        if checkpoint is not None:
            self.c.set_tag(run_id, "bench.checkpoint", checkpoint)
        self.c.set_terminated(run_id, "FAILED")
