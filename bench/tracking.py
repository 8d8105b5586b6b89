"""Writing to MLflow: the experiment, a summary run per phase, one run per trial.

Trial runs name their phase's run in the tag `bench.parent` rather than MLflow's nesting tag: the
UI opens nested runs collapsed under their parent and no client can expand them, so the runs table
would first show no trial at all. Flat, every trial is a row, and `phase` (a param) groups them.

Only the driver writes. Trials report to Tune; the Tune callback (bench.tuner.TrialTracker)
hands each result to `TrialLog`, which turns it into one `log_batch`, so concurrent trials
never race on the store and a fresh sqlite schema is created once, before any trial starts
(concurrent first use of a sqlite store corrupts it). No Ray here.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.errors import BenchError, check_reachable, out_of_space
from bench.records import CONFIG_FILE, GRID_FILE, TrialResult
from bench.store import RELOCATED, client, trial_runs

BATCH = 1000  # MLflow's log_batch limit on metrics per call
# MLflow 3 opens an experiment without this tag in its GenAI (traces) view; with it, in the runs table.
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the run's description in the UI
VIEW_KEY = "bench"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"  # read by the UI for ?viewStateShareKey=bench
# The table groups metric columns alphabetically after the attributes and renders only what fits
# the window, so few, narrow columns: the ones a comparison reads first.
VIEW_COLUMNS = ("attributes.`Models`", "metrics.`eval/label_accuracy`", "metrics.`eval/precision`",
                "metrics.`eval/recall`", "params.`variant`", "params.`phase`", "params.`seed`")


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


def ensure_experiment(uri: str, name: str, artifact_root: Path | None, primary: str = "eval/fid",
                      higher: bool = False) -> str:
    """Create the schema and the experiment (driver only, before trials start), tagged for the UI."""
    if uri.startswith(("http://", "https://")):
        check_reachable(uri, "the MLflow server", "check --tracking-uri")
    try:
        c = client(uri)
        exp = c.get_experiment_by_name(name)
    except Exception as e:  # mlflow raises its own types (or OSError) for unreadable stores
        if out_of_space(e):
            raise  # the CLI says so in one line; the folder stays resumable
        raise BenchError(f"cannot open the MLflow store {uri}: {(str(e) or type(e).__name__).splitlines()[0]}; "
                         "check --tracking-uri or --output") from None
    if exp is None:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        experiment_id = c.create_experiment(name, artifact_location=location)
    else:
        experiment_id = exp.experiment_id
    tag_for_ui(uri, experiment_id, primary, higher)
    return experiment_id


def tag_for_ui(uri: str, experiment_id: str, primary: str = "eval/fid", higher: bool = False) -> None:
    """The experiment tags the MLflow UI reads, where missing: its kind (model training, not GenAI
    traces) and the runs-table view that ui_link() opens (MLflow's shared-view state: sorted by the
    primary metric, with the columns a comparison needs; by default MLflow shows none of them)."""
    c = client(uri)
    tags = c.get_experiment(experiment_id).tags
    first = f"metrics.`{primary}`"
    view = {"orderByKey": first, "orderByAsc": not higher,
            "selectedColumns": [first, *(col for col in VIEW_COLUMNS if col != first)]}
    for key, value in ((KIND_TAG, KIND), (VIEW_TAG, json.dumps(view))):
        if key not in tags:
            c.set_experiment_tag(experiment_id, key, value)


def ui_link(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table in the model-training workflow, in the view tag_for_ui() set."""
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={VIEW_KEY}"


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


def log_report(uri: str, parent_id: str, report: Path, n_seeds: int) -> None:
    """The seeds phase's parent run gets the report with its figures, results.csv/json, and a summary:
    the real-data floors as floor/* metrics, the best variant by the primary metric, n seeds."""
    from mlflow.entities import Metric, RunTag

    c, out = client(uri), report.parent
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    for name in ("report.md", "results.csv", "results.json"):
        c.log_artifact(parent_id, str(out / name))
    c.log_artifacts(parent_id, str(out / "report_assets"), "report_assets")
    meta, ranked = results["meta"], [v["variant"] for v in results["variants"]]
    now = int(time.time() * 1000)
    floors = [Metric(f"floor/{k}", float(v), now, 0) for k, v in meta.get("floors", {}).items() if v is not None]
    primary = meta.get("primary_metric", "")
    tags = {"best_variant": ranked[0] if ranked else "none", "primary_metric": primary, "n_seeds": str(n_seeds),
            NOTE_TAG: f"Best by {primary}: {', then '.join(ranked) or 'none'} ({n_seeds} seeds each). "
                      "report.md, its figures and results.csv/json are this run's artifacts."}
    c.log_batch(parent_id, metrics=floors, tags=[RunTag(k, v) for k, v in tags.items()])


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
        self.nodes: dict[str, list[str]] = {}  # trial id → the Ray nodes it ran on, in order
        self._client = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restored with Tune's state: follow the store if its folder was copied or moved since."""
        self.nodes = {}  # state pickled before nodes were recorded has none
        self.__dict__.update(state)
        self.uri, self._client = RELOCATED.get(self.uri, self.uri), None

    @property
    def c(self):
        if self._client is None:
            self._client = client(self.uri)
            for trial_id, run in trial_runs(self._client, self.experiment_id, self.session).items():
                self.run_ids[trial_id] = run.info.run_id
                self.last_step[trial_id] = int(run.data.tags.get("bench.last_step", "0"))
                self.nodes[trial_id] = [n for n in run.data.tags.get("bench.nodes", "").split(",") if n]
        return self._client

    def open(self, trial_id: str, name: str, params: dict[str, Any], tags: dict[str, str],
             eval_split: str = "test") -> str:
        """The trial's run, created with these name, params and tags unless it exists (then reopened);
        a new run also records the MNIST rows it trains on and is scored against as dataset inputs."""
        from mlflow.entities import Param

        c = self.c
        if trial_id in self.run_ids:
            run_id = self.run_ids[trial_id]
            if c.get_run(run_id).info.status != "RUNNING":
                c.update_run(run_id, status="RUNNING")
            return run_id
        run = c.create_run(self.experiment_id, run_name=name, tags={
            "bench.parent": self.parent_id, "bench.kind": "trial", "bench.session": self.session,
            "bench.trial_id": trial_id, "bench.last_step": "0", **tags})
        items = [Param(k, str(v)) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            c.log_batch(run.info.run_id, params=items[i:i + 100])
        c.log_inputs(run.info.run_id, datasets=mnist_inputs(eval_split))
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

    def exploited(self, trial_id: str, donor_id: str, donor_name: str | None, step: int,
                  config: dict[str, Any]) -> None:
        """A PBT exploit: from `step` on the trial trains the donor's weights under `config`. MLflow params
        never change, so they keep the trial's starting config; tag `bench.config` becomes the new one,
        `bench.exploits` lists every exploit (donor, step, changed values), and each changed value is
        logged as metric `hparam/<key>` (its starting value at step 0 the first time), so MLflow plots the schedule."""
        from mlflow.entities import Metric, RunTag
        from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

        run_id, now = self.run_ids[trial_id], int(time.time() * 1000)
        tags = self.c.get_run(run_id).data.tags
        before = json.loads(tags.get("bench.config", "{}"))
        changed = {k: v for k, v in config.items() if before.get(k) != v}
        exploits = json.loads(tags.get("bench.exploits", "[]"))
        if any(e["step"] == step for e in exploits):  # the same result seen again after a driver restart
            return
        seen = {k for e in exploits for k in e["changed"]}  # keys whose start value is logged already
        exploits.append({"step": step, "donor": donor_name or donor_id,
                         "donor_run_id": self.run_ids.get(donor_id), "changed": changed})
        while len(json.dumps(exploits)) > MAX_TAG_VAL_LENGTH and len(exploits) > 1:
            exploits.pop(0)  # MLflow refuses a longer tag (a long PBT run): the latest exploits are kept
        metrics = [Metric(f"hparam/{k}", float(v), now, step) for k, v in changed.items()
                   if isinstance(v, (int, float))]
        metrics += [Metric(f"hparam/{k}", float(before[k]), now, 0) for k in changed
                    if k not in seen and isinstance(before.get(k), (int, float))]
        self.c.log_batch(run_id, metrics=metrics, tags=[
            RunTag("bench.exploits", json.dumps(exploits)), RunTag("bench.config", json.dumps(config, sort_keys=True))])

    def placed(self, trial_id: str, node: str, host: str) -> None:
        """Tags where the trial ran: `bench.node` and `bench.host` of its latest result, `bench.nodes`
        every Ray node in order (two after a node was lost and the trial went on elsewhere)."""
        from mlflow.entities import RunTag

        c = self.c  # first use reads back what the store holds
        nodes = self.nodes.setdefault(trial_id, [])
        if nodes[-1:] == [node]:
            return
        nodes.append(node)
        tags = {"bench.node": node, "bench.host": host, "bench.nodes": ",".join(nodes)}
        c.log_batch(self.run_ids[trial_id], tags=[RunTag(k, v) for k, v in tags.items()])

    def complete(self, trial_id: str, checkpoint: str | None, local: Path | None, final: bool,
                 note: str = "", model: dict[str, Any] | None = None) -> None:
        """A trial that ended without error; not `final` means the scheduler stopped it early.
        checkpoint: where Tune keeps its last checkpoint (a path or URI, tagged); local: that checkpoint
        on this machine, whose sample grid and resolved config become artifacts; note: the run's
        description; model: {variant, config} to log the checkpoint (the generator with the
        discriminator and optimizers) as an MLflow pyfunc model (bench.generator_model)."""
        run_id = self.run_ids[trial_id]
        if checkpoint is not None:
            self.c.set_tag(run_id, "bench.checkpoint", checkpoint)
        if note:
            self.c.set_tag(run_id, NOTE_TAG, note)
        for name in (GRID_FILE, CONFIG_FILE) if local is not None else ():
            if (local / name).is_file():
                self.c.log_artifact(run_id, str(local / name))
        if model is not None and local is not None and final:
            log_generator(self.uri, run_id, local, model)
        if not final:
            self.c.set_tag(run_id, "bench.pruned", "1")
        self.c.set_terminated(run_id, "FINISHED")

    def fail(self, trial_id: str, error: str, checkpoint: str | None) -> None:
        run_id = self.run_ids[trial_id]
        self.c.set_tag(run_id, "bench.error", error)
        if checkpoint is not None:
            self.c.set_tag(run_id, "bench.checkpoint", checkpoint)
        self.c.set_terminated(run_id, "FAILED")


def mnist_inputs(eval_split: str) -> list:
    """MLflow dataset inputs: the MNIST rows a trial trains on and the rows it is scored against."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from bench import data

    out = []
    for role, (name, rows, digest) in data.views(eval_split).items():
        source = json.dumps({"files": "MNIST IDX (LeCun et al.), md5-verified", "rows": rows})
        dataset = Dataset(name=name, digest=digest, source_type="local", source=source)
        out.append(DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, role),
                                               InputTag("split", eval_split if role == "evaluation" else "train")]))
    return out


def log_generator(uri: str, run_id: str, checkpoint: Path, model: dict[str, Any]) -> None:
    """Log the checkpoint's generator into run_id as the MLflow model "generator" (pyfunc, see
    bench.generator_model). A failure here costs the model, never the trial: one warning line."""
    import mlflow

    from bench.generator_model import log_model

    try:
        mlflow.set_tracking_uri(uri)
        with mlflow.start_run(run_id=run_id):  # log_model writes into the active run
            mlflow.set_tag("bench.model_uri", log_model(checkpoint, model))
    except Exception as e:  # any MLflow error: the trial's results still count
        if out_of_space(e):
            raise
        line = (str(e) or type(e).__name__).splitlines()[0][:300]
        client(uri).set_tag(run_id, "bench.model_error", line)
        print(f"[bench] warning: the generator of run {run_id} was not logged as a model: {line}", file=sys.stderr)
