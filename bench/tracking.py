"""Everything MLflow: the store, parent and trial runs, the Tune callback, reading runs back.

Only the driver writes. Trials report to Tune; this callback turns each result into one
`log_batch`, so concurrent trials never race on the store and a fresh sqlite schema is
created once, before any trial starts (field notes: concurrent first use corrupts it).
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune import Callback

from bench.errors import BenchError

TRIAL_KEYS = ("eval/", "perf/", "diverged")
CURVE_KEYS = ("eval/fid", "eval/label_accuracy", "loss/d", "loss/g")


def default_uri(output: Path) -> str:
    return f"sqlite:///{output.resolve() / 'mlflow.db'}"


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


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
        from bench.tune import check_reachable

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


def _trial_runs(c, experiment_id: str, session: str) -> dict[str, Any]:
    runs = c.search_runs([experiment_id], filter_string=f"tags.`bench.session` = '{session}' "
                                                       "and tags.`bench.kind` = 'trial'", max_results=50000)
    return {r.data.tags["bench.trial_id"]: r for r in runs if "bench.superseded" not in r.data.tags}


def supersede(uri: str, experiment_id: str, session: str, tuner: str) -> None:
    """Close and hide the runs of a Tuner that is started over (its trials get new ids)."""
    c = client(uri)
    for run in _trial_runs(c, experiment_id, session).values():
        if run.data.tags.get("bench.tuner") == tuner:
            c.set_tag(run.info.run_id, "bench.superseded", "1")
            if run.info.status == "RUNNING":
                c.set_terminated(run.info.run_id, "KILLED")


def _batch_metrics(result: dict[str, Any], last_step: int):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    out = [Metric(key, float(value), now, step)
           for step, losses in json.loads(result.get("history", "[]")) if step > last_step
           for key, value in losses.items()]
    step = int(result["step"])
    if step > last_step or result.get("final"):
        diverged = bool(result.get("diverged"))
        for key, value in result.items():
            if not key.startswith(TRIAL_KEYS) or isinstance(value, str):
                continue
            if diverged and key.startswith("eval/"):
                continue  # the penalty is for the searcher, not for the record
            if value is not None and math.isfinite(float(value)):
                out.append(Metric(key, float(value), now, step))
    return out


class TrialTracker(Callback):
    """Tune callback: one MLflow child run per trial, re-attached by trial id after a restore.

    `describe(trial)` returns (run_name, params, tags) for a trial.
    """

    def __init__(self, uri: str, experiment_id: str, parent_id: str, session: str,
                 describe: Callable[[Any], tuple[str, dict[str, Any], dict[str, str]]]):
        self.uri, self.experiment_id, self.parent_id, self.session = uri, experiment_id, parent_id, session
        self.describe = describe
        self.run_ids: dict[str, str] = {}
        self.last_step: dict[str, int] = {}
        self._client = None

    @property
    def c(self):
        if self._client is None:
            self._client = client(self.uri)
            for trial_id, run in _trial_runs(self._client, self.experiment_id, self.session).items():
                self.run_ids[trial_id] = run.info.run_id
                self.last_step[trial_id] = int(run.data.tags.get("bench.last_step", "0"))
        return self._client

    def _run_for(self, trial) -> str:
        c = self.c
        if trial.trial_id in self.run_ids:
            run_id = self.run_ids[trial.trial_id]
            if c.get_run(run_id).info.status != "RUNNING":
                c.update_run(run_id, status="RUNNING")
            return run_id
        from mlflow.entities import Param

        name, params, tags = self.describe(trial)
        run = c.create_run(self.experiment_id, run_name=name, tags={
            "mlflow.parentRunId": self.parent_id, "bench.kind": "trial", "bench.session": self.session,
            "bench.trial_id": trial.trial_id, "bench.last_step": "0", **tags})
        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            c.log_batch(run.info.run_id, params=items[i:i + 100])
        self.run_ids[trial.trial_id] = run.info.run_id
        self.last_step[trial.trial_id] = 0
        return run.info.run_id

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run_for(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from mlflow.entities import RunTag

        run_id = self._run_for(trial)
        last = self.last_step.get(trial.trial_id, 0)
        metrics = _batch_metrics(result, last)
        step = max(last, int(result["step"]))
        tags = [RunTag("bench.last_step", str(step))]
        if result.get("diverged"):
            tags.append(RunTag("bench.diverged", "1"))
        for i in range(0, max(len(metrics), 1), 1000):
            self.c.log_batch(run_id, metrics=metrics[i:i + 1000], tags=tags if i == 0 else [])
        self.last_step[trial.trial_id] = step

    def on_trial_complete(self, iteration, trials, trial, **info):
        run_id = self._run_for(trial)
        ckpt = trial.checkpoint
        if ckpt is not None:
            self.c.set_tag(run_id, "bench.checkpoint", ckpt.path)
            grid = Path(ckpt.path) / "grid.png"
            if grid.is_file():
                self.c.log_artifact(run_id, str(grid))
        if not (trial.last_result or {}).get("final"):
            self.c.set_tag(run_id, "bench.pruned", "1")  # stopped early by the scheduler
        self.c.set_terminated(run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        run_id = self._run_for(trial)
        self.c.set_tag(run_id, "bench.error", last_error_line(trial))
        if trial.checkpoint is not None:
            self.c.set_tag(run_id, "bench.checkpoint", trial.checkpoint.path)
        self.c.set_terminated(run_id, "FAILED")


def last_error_line(trial) -> str:
    path = trial.error_file
    text = Path(path).read_text() if path and Path(path).is_file() else str(trial.error_msg or "unknown error")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "unknown error")[:500]


def close_session(uri: str, experiment_id: str, session: str, status: str) -> None:
    """No run stays RUNNING after the command ends: trials and parents get `status`."""
    c = client(uri)
    runs = c.search_runs([experiment_id], filter_string=f"tags.`bench.session` = '{session}' "
                                                       "and attributes.status = 'RUNNING'", max_results=50000)
    for run in runs:
        c.set_terminated(run.info.run_id, status)


# --- reading back (for `bench report` and `bench sample`) ---------------------------------
def find_session(uri: str, experiment: str, session: str | None = None) -> tuple[str, str]:
    """(experiment_id, session): the given session, else the newest one in the experiment."""
    c = client(uri)
    try:
        exp = c.get_experiment_by_name(experiment)
    except Exception as e:
        raise BenchError(f"cannot open the MLflow store {uri}: {str(e).splitlines()[0]}") from None
    if exp is None:
        raise BenchError(f"no experiment {experiment!r} in {uri}; check --experiment or --output")
    if session is None:
        parents = c.search_runs([exp.experiment_id], filter_string="tags.`bench.kind` = 'parent'",
                                order_by=["attributes.start_time DESC"], max_results=1)
        if not parents:
            raise BenchError(f"experiment {experiment!r} holds no bench runs yet")
        session = parents[0].data.tags["bench.session"]
    return exp.experiment_id, session


def load_session(uri: str, experiment: str, session: str | None, assets: Path):
    """(runs, history, meta) as bench.report.write_report expects; grids downloaded into `assets`."""
    import mlflow.artifacts
    import pandas as pd

    c = client(uri)
    exp_id, session = find_session(uri, experiment, session)
    parents = c.search_runs([exp_id], filter_string=f"tags.`bench.session` = '{session}' "
                                                    "and tags.`bench.kind` = 'parent'",
                            order_by=["attributes.start_time ASC"])
    meta = json.loads(parents[0].data.tags.get("bench.meta", "{}")) if parents else {}
    rows, curves = [], []
    for trial_id, run in sorted(_trial_runs(c, exp_id, session).items(), key=lambda kv: kv[1].info.run_name):
        tags, run_id = run.data.tags, run.info.run_id
        grid = None
        if any(a.path == "grid.png" for a in c.list_artifacts(run_id)):
            target = assets / run_id
            target.mkdir(parents=True, exist_ok=True)
            grid = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="grid.png",
                                                       dst_path=str(target), tracking_uri=uri)
        diverged = int(tags.get("bench.diverged", "0"))
        pruned = tags.get("bench.pruned") == "1"
        row = {"run_id": run_id, "run_name": run.info.run_name, "variant": tags.get("variant"),
               "preset": tags.get("preset"), "phase": tags.get("phase"),
               "seed": int(tags.get("seed", "0")), "trial_id": trial_id, "status": run.info.status,
               "diverged": diverged, "pruned": int(pruned),
               "error": tags.get("bench.error"),
               "config": json.loads(tags.get("bench.config", "{}")), "grid_path": grid,
               "checkpoint": tags.get("bench.checkpoint")}
        final = {k: v for k, v in run.data.metrics.items() if k.startswith(("eval/", "perf/"))}
        if diverged or run.info.status != "FINISHED":
            final = {k: v for k, v in final.items() if k.startswith("perf/")}
        rows.append(row | final)
        for key in CURVE_KEYS:
            curves += [{"run_id": run_id, "key": key, "step": m.step, "value": m.value}
                       for m in c.get_metric_history(run_id, key)]
    runs = pd.DataFrame(rows)
    history = pd.DataFrame(curves, columns=["run_id", "key", "step", "value"])
    if not history.empty:
        history = history.sort_values(["run_id", "key", "step"]).drop_duplicates(["run_id", "key", "step"])
    return runs, history, meta
