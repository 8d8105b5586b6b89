"""Reading the MLflow store back: sessions, trial runs and their curves, for `bench report`,
`bench sample` and `bench ui`. No Ray here, so these commands work where Ray is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.records import GRID_FILE, TrialResult

CURVE_KEYS = ("periodic/fid", "periodic/label_accuracy", "loss/d", "loss/g")


def default_uri(output: Path) -> str:
    """The store of an experiment folder unless --tracking-uri says otherwise."""
    return f"sqlite:///{output.resolve() / 'mlflow.db'}"


# Store URIs a folder was moved away from → where it is now, for Tune state restored in this process
# (its pickled bench.tracking.TrialLog still names the old store).
RELOCATED: dict[str, str] = {}


def relocate(out: Path, state: dict[str, Any]) -> bool:
    """Point a copied or moved experiment folder at itself: rewrite the absolute paths that its
    experiment.json `state` and (when the folder holds the store) its sqlite store recorded where the
    folder was made: artifact locations, checkpoint tags, model locations. Only files inside `out`
    are written, so the original is never read or touched. Returns whether anything changed."""
    new = str(out.resolve())
    old = state.get("folder")
    uri = state["tracking_uri"]
    if old is None and uri.startswith("sqlite:///") and uri.endswith("/mlflow.db"):
        old = uri.removeprefix("sqlite:///").removesuffix("/mlflow.db")  # made before "folder" was recorded
    if old is None or old == new:
        return False
    if uri == default_uri(Path(old)):
        _rewrite_db(out / "mlflow.db", old, new)
        state["tracking_uri"] = RELOCATED[uri] = default_uri(out)
        if "meta" in state:
            state["meta"]["tracking_uri"] = state["tracking_uri"]
    state["folder"], state["options"]["output"] = new, str(out)
    return True


def _rewrite_db(db: Path, old: str, new: str) -> None:
    """Replace the folder path `old` by `new` in every text column of the sqlite store at db."""
    import sqlite3

    pairs = [(Path(old).as_uri(), Path(new).as_uri()), (old, new)]
    with sqlite3.connect(db) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for _, column, kind, *_ in conn.execute(f'PRAGMA table_info("{table}")').fetchall():
                if any(t in kind.upper() for t in ("CHAR", "TEXT", "CLOB")):
                    for a, b in pairs:
                        conn.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                     f'WHERE instr("{column}", ?) > 0', (a, b, a))


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def trial_runs(c, experiment_id: str, session: str) -> dict[str, Any]:
    """trial id → the session's current MLflow run of that trial (superseded runs left out)."""
    runs = c.search_runs([experiment_id], filter_string=f"tags.`bench.session` = '{session}' "
                                                       "and tags.`bench.kind` = 'trial'", max_results=50000)
    return {r.data.tags["bench.trial_id"]: r for r in runs if "bench.superseded" not in r.data.tags}


def find_session(uri: str, experiment: str, session: str | None = None) -> tuple[str, str]:
    """(experiment_id, session): the given session, else the newest one in the experiment."""
    c = client(uri)
    try:
        exp = c.get_experiment_by_name(experiment)
    except Exception as e:  # mlflow raises its own types (or OSError) for unreadable stores
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


def _grid(c, uri: str, run_id: str, assets: Path) -> str | None:
    """The run's sample grid, downloaded into assets/<run_id>/, or None."""
    import mlflow.artifacts

    if not any(a.path == GRID_FILE for a in c.list_artifacts(run_id)):
        return None
    target = assets / run_id
    target.mkdir(parents=True, exist_ok=True)
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=GRID_FILE, dst_path=str(target),
                                               tracking_uri=uri)


def _row(c, uri: str, trial_id: str, run, assets: Path) -> dict[str, Any]:
    """One report row: identity, status and the run's last eval/* and perf/* values."""
    tags, run_id = run.data.tags, run.info.run_id
    record = TrialResult.from_store(
        run.info.status, diverged=tags.get("bench.diverged") == "1", pruned=tags.get("bench.pruned") == "1",
        metrics={k: v for k, v in run.data.metrics.items() if k.startswith(("eval/", "perf/"))})
    return {"run_id": run_id, "run_name": run.info.run_name, "variant": tags.get("variant"),
            "preset": tags.get("preset"), "phase": tags.get("phase"), "seed": int(tags.get("seed", "0")),
            "trial_id": trial_id, "status": run.info.status, "diverged": int(record.diverged),
            "pruned": int(tags.get("bench.pruned") == "1"), "error": tags.get("bench.error"),
            "config": json.loads(tags.get("bench.config", "{}")), "grid_path": _grid(c, uri, run_id, assets),
            "checkpoint": tags.get("bench.checkpoint")} | record.metrics


def load_session(uri: str, experiment: str, session: str | None, assets: Path):
    """(runs, history, meta) as bench.report.write_report expects; grids downloaded into `assets`."""
    import pandas as pd

    c = client(uri)
    exp_id, session = find_session(uri, experiment, session)
    parents = c.search_runs([exp_id], filter_string=f"tags.`bench.session` = '{session}' "
                                                    "and tags.`bench.kind` = 'parent'",
                            order_by=["attributes.start_time ASC"])
    meta = json.loads(parents[0].data.tags.get("bench.meta", "{}")) if parents else {}
    rows, curves = [], []
    for trial_id, run in sorted(trial_runs(c, exp_id, session).items(), key=lambda kv: kv[1].info.run_name):
        rows.append(_row(c, uri, trial_id, run, assets))
        curves += [{"run_id": run.info.run_id, "key": key, "step": m.step, "value": m.value}
                   for key in CURVE_KEYS for m in c.get_metric_history(run.info.run_id, key)]
    history = pd.DataFrame(curves, columns=["run_id", "key", "step", "value"])
    if not history.empty:
        history = history.sort_values(["run_id", "key", "step"]).drop_duplicates(["run_id", "key", "step"])
    return pd.DataFrame(rows), history, meta
