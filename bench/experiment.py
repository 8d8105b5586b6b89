"""The experiment protocol on the driver: prepare → search phases → seeds phase → report.

A `bench run` is one session: an output folder holding `experiment.json` (what was asked,
which phases ran, their parent runs), the Tune storage, the MLflow store and the report.
Phases: `seeds` (variants × seeds), preceded under `--preset search` by one `search-<variant>`
phase per variant whose best config (by the final primary metric) the seeds phase re-runs.
Ray is imported only once the protocol starts (bench.tuner), never by the checks before it.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from functools import partial
from pathlib import Path
from typing import IO, Any

from bench import registry, tracking
from bench.config import TrainConfig
from bench.errors import BenchError, check_reachable, did_you_mean, full_disk_message, out_of_space
from bench.options import Options
from bench.records import TrialResult, counts
from bench.space import grid
from bench.store import client, default_uri, relocate

STATE = "experiment.json"
LOCK = ".bench.lock"  # see lock_folder
# Search trials train with this seed, the seeds phase with 0 … --seeds − 1: disjoint, so the run
# that won the selection is never counted again in the final estimate (selection bias).
SEARCH_SEED = 10_000


def sanitize(name: str) -> str:
    """Experiment names become folder names: keep letters, digits, '.', '_' and '-'."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return clean[:80] or "experiment"


# --- checks before anything starts ----------------------------------------------------------
def check(opts: Options) -> dict[str, TrainConfig]:
    """Every user mistake we can see before Ray starts, as one BenchError. Returns the configs."""
    _check_options(opts)
    classes = {v: registry.get(v) for v in opts.variants}
    known = set().union(*({f.name for f in fields(c.Config)} for c in classes.values()))
    for key in opts.sets:
        if key == "seed":  # each phase sets its seeds itself
            raise BenchError("--set seed: the seeds come from --seeds N (runs seeds 0 … N-1), not --set")
        if key not in known:
            raise BenchError(f"--set {key}: no such config field in {', '.join(opts.variants)}"
                             f"{did_you_mean(key, known)}; see `bench list -v` for the fields")
    if opts.address:
        _check_cluster(opts)
    configs = {}
    for v, cls in classes.items():
        names = {f.name for f in fields(cls.Config)}
        own = {k: val for k, val in opts.sets.items() if k in names}
        configs[v] = cls.make_config(cls.budgets[opts.trial_budget], own)
    return configs


def _check_options(opts: Options) -> None:
    for f in fields(Options):
        value, choices = getattr(opts, f.name), f.metadata.get("choices")
        if choices and value is not None and value not in choices:
            flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
            raise BenchError(f"{flag} {value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}")
    if not 1 <= opts.n_seeds <= SEARCH_SEED:
        raise BenchError(f"--seeds must be in 1..{SEARCH_SEED}, got {opts.n_seeds}")
    if opts.num_samples < 1:
        raise BenchError(f"--num-samples must be >= 1, got {opts.num_samples}")
    if opts.cpus_per_trial <= 0 or (opts.gpus_per_trial or 0) < 0 or opts.max_failures < 0:
        raise BenchError("--cpus-per-trial must be > 0, --gpus-per-trial and --max-failures >= 0")


def _check_cluster(opts: Options) -> None:
    if not opts.storage:
        raise BenchError("--address joins a cluster whose nodes need shared Tune storage: pass --storage "
                         "s3://… or gs://…, or a folder every node mounts at the same path (NFS)")
    if "://" not in opts.storage:  # checked once Ray runs: every node must read the driver's marker there
        opts.storage = str(Path(opts.storage).resolve())  # nodes have other working directories
    uri = opts.tracking_uri
    if not uri or uri.startswith(("sqlite:", "file:")) or "://" not in uri:
        raise BenchError("--address needs an MLflow server all nodes reach: pass --tracking-uri http://host:5000 "
                         "(a sqlite file cannot be shared across nodes)")
    if opts.address != "auto":
        check_reachable(opts.address, "the Ray cluster", "check --address (auto, host:6379 or ray://host:10001)")


def lock_folder(out: Path) -> IO[str]:
    """An exclusive OS lock on the experiment folder, held by the returned open file: one writer per
    folder. The OS releases it when this process ends in any way (SIGKILL included); Ray's processes
    do not inherit it. A second `bench run` on the folder is refused with the holder's pid."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        f = open(out / LOCK, "a+")
    except OSError as e:
        raise BenchError(f"cannot write to --output {out}: {e.strerror}; choose a writable folder") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        time.sleep(0.2)  # the holder writes its pid right after it locks
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise BenchError(f"{out} is in use by another bench run (pid {holder}); wait for it to end, "
                         "or choose another --output") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def prepare_output(out: Path, resume: bool) -> None:
    if resume:
        if not (out / STATE).is_file():
            raise BenchError(f"nothing to resume in {out}: no {STATE}; start it with `bench run … --output {out}`")
        return
    if (out / STATE).exists() or (out.exists() and any(p.name != LOCK for p in out.iterdir())):
        raise BenchError(f"{out} already holds results; continue it with `bench run --resume --output {out}` "
                         "or choose a new --output")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise BenchError(f"cannot write to --output {out}: {e.strerror}; choose a writable folder") from None


# --- the session file -------------------------------------------------------------------------
class Session:
    """experiment.json: what was asked and how far the protocol got."""

    def __init__(self, out: Path, state: dict[str, Any]):
        self.out, self.state = out, state
        self.lock: IO[str] | None = None
        self.writing = threading.Lock()  # the searches of several variants run in threads (search_phases)

    @classmethod
    def load(cls, out: Path) -> Session:
        """The session saved in `out`; a folder copied or moved since is first made to point at itself
        (store.relocate), so the copy never reads or writes the original."""
        session = cls(out, json.loads((out / STATE).read_text()))
        if relocate(out, session.state):
            session.save()
        return session

    def save(self) -> None:
        with self.writing:
            tmp = self.out / (STATE + ".tmp")
            try:
                tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
                tmp.replace(self.out / STATE)  # atomic: a kill never leaves half a file
            finally:
                tmp.unlink(missing_ok=True)  # after a failed write (a full disk)

    def update(self, part: dict[str, Any], key: str, value: Any) -> None:
        """Set part[key] (part: the state or a dict in it) and save, with no other thread's save reading
        the state meanwhile (the searches of several variants run in threads)."""
        with self.writing:
            part[key] = value
        self.save()

    def unlock(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing the file releases its OS lock
            self.lock = None

    @property
    def opts(self) -> Options:
        return Options(**self.state["options"])

    @property
    def id(self) -> str:
        return self.state["session"]

    @property
    def uri(self) -> str:
        return self.state["tracking_uri"]


def open_session(opts: Options, resume: bool) -> tuple[Session, dict[str, TrainConfig]]:
    """A new session in opts.output (checked first), or the saved one there (--resume); either way
    holding the folder's lock (Session.unlock releases it)."""
    out = Path(opts.output)
    if resume:
        prepare_output(out, resume=True)
    else:
        configs = check(opts)
    lock = lock_folder(out)
    try:
        if resume:
            session = Session.load(out)
            configs = check(session.opts)
        else:
            prepare_output(out, resume=False)
            uri = opts.tracking_uri or default_uri(out)
            experiment = sanitize(opts.experiment or out.resolve().name)
            session = Session(out, {"session": uuid.uuid4().hex[:12], "options": asdict(opts), "tracking_uri": uri,
                                    "experiment": experiment, "phases": {}, "folder": str(out.resolve())})
            session.save()  # from here on the folder can be resumed, even if preparing it fails (a full disk)
    except BaseException:
        lock.close()
        raise
    session.lock = lock
    return session, configs


class Interrupted(Exception):
    """The driver stopped before the protocol finished (Ctrl-C, SIGTERM); the output can be resumed."""


_received: list[int] = []  # signals sigterm_as_ctrl_c() turned into a Ctrl-C


def terminated() -> bool:
    """Whether this process's protocol was stopped by SIGTERM (exit 143) rather than Ctrl-C (130)."""
    return signal.SIGTERM in _received


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Batch schedulers (SLURM, Kubernetes, systemd) stop jobs with SIGTERM. Stop as Ctrl-C does
    (Tune saves its state, runs close as KILLED, one line says how to resume) instead of Ray's
    handler, which dumps a C++ stack and exits 134. Entered after Ray starts: ray.init installs its own."""
    def handler(sig, frame):
        _received.append(sig)
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- the protocol -----------------------------------------------------------------------------
def run(opts: Options, resume: bool = False) -> Path:
    """Run (or resume) the whole protocol; returns the report's path."""
    session, configs = open_session(opts, resume)
    try:
        return _run(session, configs)
    finally:
        session.unlock()


def _run(session: Session, configs: dict[str, TrainConfig]) -> Path:
    from bench import report, tuner  # after the checks, so a mistake is answered before Ray loads

    opts = session.opts
    data_dir, cache = prepare(session, next(iter(configs.values())))
    ended = tuner.end_processes(session.state.get("ray_processes", []))
    if ended:
        print(f"[bench] ended {len(ended)} processes that the killed run's Ray left running: pids "
              f"{', '.join(map(str, ended))}", flush=True)
    # What a local Ray starts is recorded, so that a --resume after a SIGKILL of this driver ends what it left.
    record = partial(session.update, session.state, "ray_processes")
    shipped = [str(d) for v in opts.variants if (d := registry.source_dir(v))]
    with tuner.ray_session(opts.address, shipped, started=record) as resources, sigterm_as_ctrl_c():
        status = "KILLED"
        try:
            if opts.address and "://" not in opts.storage:
                tuner.check_shared_storage(opts.storage, session.id)
            ctx = trial_context(opts, resources, data_dir, cache)
            arms = search_phases(session, ctx, configs)
            seeds_phase(session, ctx, arms)
            status = "FINISHED"
        finally:
            tracking.close_session(session.uri, session.state["experiment_id"], session.id, status)
    path = report.from_store(session.uri, session.state["experiment"], session.id, session.out)
    tracking.log_report(session.uri, session.state["phases"]["seeds"]["parent"], path, opts.n_seeds)
    return path


def prepare(session: Session, cfg: TrainConfig) -> tuple[str, Path]:
    """Before Ray starts: verified data, the cached real side of every score (bench.metrics.Reference,
    in the user cache that `bench evaluate` shares), the session's metadata (with every metric's
    real-data floor at final_n) and the MLflow experiment. Returns (data dir, feature cache)."""
    from bench import data, evaluator, metrics

    opts, state = session.opts, session.state
    mnist = data.load_mnist(opts.data_dir)  # verifies, or fetches into the cache
    net = evaluator.load()
    cache = data.cache_root() / "features"
    ref = metrics.reference(net, mnist, cache_dir=cache)
    if opts.preset == "search":
        metrics.reference(net, data.split(mnist, "val"), cache_dir=cache)  # what the search trials score against
    if "meta" not in state:
        n = cfg.final_n
        floors = (metrics.floors(net, ref, n, cas=cfg.cas) if n <= len(mnist.test_images)
                  else {"eval/fid": metrics.fid_floor(net, mnist, n, cache_dir=cache)})  # floors need n held-out
        state["meta"] = {
            "command": opts.command, "commit": tracking.git_commit(), "evaluator_sha256": evaluator.WEIGHTS_SHA256,
            "n_samples": n, "fid_floor": floors["eval/fid"], "fid_floor_n": n, "floors": floors,
            "hardware": tracking.hardware(), "experiment": state["experiment"],
            "tracking_uri": session.uri, "primary_metric": opts.metric,
            "higher_is_better": {k: metrics.higher_is_better(k) for k in metrics.HIGHER_IS_BETTER}}
    artifacts = session.out / "mlartifacts" if session.uri == default_uri(session.out) else None
    state["experiment_id"] = tracking.ensure_experiment(session.uri, state["experiment"], artifacts, opts.metric,
                                                        metrics.higher_is_better(opts.metric))
    session.save()
    return str(data.resolve_data_dir(opts.data_dir)), cache


def trial_context(opts: Options, resources: dict[str, float], data_dir: str, cache: Path):
    """Resources per trial (falling back to the CPU when the cluster lacks the GPUs asked for)."""
    from bench import faults, metrics
    from bench.tuner import TrialContext

    have_gpus = resources.get("GPU", 0.0)
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (1.0 if have_gpus >= 1 else 0.0)
    if gpus > have_gpus:
        print(f"[bench] warning: --gpus-per-trial {gpus} but the cluster has {have_gpus:g} GPUs; "
              "training on CPU instead", file=sys.stderr)
        gpus = 0.0
    if opts.cpus_per_trial > resources.get("CPU", 0):
        raise BenchError(f"--cpus-per-trial {opts.cpus_per_trial:g} exceeds the cluster's "
                         f"{resources.get('CPU', 0):g} CPUs; lower it")
    mode = "max" if metrics.higher_is_better(opts.metric) else "min"
    return TrialContext(data_dir=data_dir, cache_dir=str(cache.resolve()), metric=opts.metric, mode=mode,
                        cpus=opts.cpus_per_trial, gpus=gpus, faults=faults.Faults.from_env())


def search_phases(session: Session, ctx, configs: dict[str, TrainConfig]) -> list[dict[str, Any]]:
    """The arms of the seeds phase: each variant with its best searched values (--preset search)
    or with its defaults."""
    from bench import tuner

    opts = session.opts
    if opts.preset != "search":
        return [{"variant": v} for v in opts.variants]
    for v in opts.variants:  # before the threads start: they then only change their own phase's dict
        session.state["phases"].setdefault(f"search-{v}", {})
    # All variants' searches at once, each its own Tuner (its own search algorithm and scheduler: ASHA or
    # PBT must compare a variant's trials with each other only), so a cluster never idles while one
    # variant's last trials finish. The seeds phase waits for all of them: it is one Tuner over every
    # arm, so that one parent run holds the comparison the report makes.
    return tuner.concurrently([partial(search_phase, session, ctx, v, configs[v]) for v in opts.variants])


def search_phase(session: Session, ctx, variant: str, cfg: TrainConfig) -> dict[str, Any]:
    """Search one variant's space (seed SEARCH_SEED); returns its arm: the variant and its best values."""
    from bench import metrics, tuner

    opts = session.opts
    space = registry.get(variant).search_space(opts.space)
    # Selection looks at the validation split only; the seeds phase then trains on all 60k and reports on test.
    fixed = {"variant": variant, "preset": "search", "budget": opts.trial_budget, "seed": SEARCH_SEED,
             "eval_split": "val", **opts.sets}
    max_reports = cfg.steps // max(cfg.eval_every, 1) + 1
    rows = run_phase(session, ctx, f"search-{variant}", fixed | space, expected=opts.num_samples,
                     num_samples=opts.num_samples,
                     search_alg=tuner.search_algorithm(opts.search, space, vars(cfg), ctx, seed=0),
                     sched=tuner.scheduler(opts.scheduler, ctx, space, max_reports, cfg.eval_every))
    best = best_config(rows, opts.metric, metrics.higher_is_better(opts.metric), list(space))
    if best is None:
        print(f"[bench] warning: every search trial of {variant} diverged or failed; phase 2 uses its defaults")
    return {"variant": variant, **(best or {})}


def seeds_phase(session: Session, ctx, arms: list[dict[str, Any]]) -> None:
    """Every arm × seeds 0 … n-1, at the preset's budget."""
    opts = session.opts
    space = {"arm": grid(arms), "seed": grid(range(opts.n_seeds)), "preset": opts.preset,
             "budget": opts.trial_budget, **opts.sets}
    run_phase(session, ctx, "seeds", space, expected=len(arms) * opts.n_seeds)


def best_config(rows: list[tuple[dict[str, Any], dict[str, Any]]], metric: str, higher_is_better: bool,
                keys: list[str]) -> dict[str, Any] | None:
    """The searched values of the best trial whose scores count; None if there is none."""
    scored = []
    for config, result in rows:
        record = TrialResult.from_tune(result)
        if counts(record) and math.isfinite(record.metrics.get(metric, math.nan)):
            scored.append((record.metrics[metric], config))
    if not scored:
        return None
    _, config = (max if higher_is_better else min)(scored, key=lambda vc: vc[0])
    return {k: config[k] for k in keys if k in config}


def run_phase(session: Session, ctx, name: str, space: dict[str, Any], expected: int,
              **tuner_kw) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Run (or resume, or skip when done) one phase: one Tuner under one MLflow parent run.
    Returns its rows (trial config, result summary); raises Interrupted when it did not finish."""
    from bench import tuner

    phase = session.state["phases"].setdefault(name, {})
    if phase.get("done"):
        return phase["rows"]
    storage = session.opts.storage or str((session.out / "ray").resolve())
    path = f"{storage.rstrip('/')}/{name}"
    restored = tuner.restore_tuner(path, ctx)
    parent = _open_parent(session, name, phase, restarted=restored is None)
    if restored is not None:
        print(f"[bench] resuming phase {name} from {path}", flush=True)
    t = restored or tuner.build_tuner(name=name, storage=storage, space=space, ctx=ctx,
                                      callbacks=_callbacks(session, name, parent),
                                      max_failures=session.opts.max_failures,
                                      max_concurrent=session.opts.max_concurrent, **tuner_kw)
    try:
        results, interrupted = tuner.fit(t)
    except KeyboardInterrupt:
        raise Interrupted(name) from None
    full = [where for r in results if r.error is not None and (where := out_of_space(r.error)) is not None]
    if full:  # not a failed trial but a full disk: leave the phase open, so --resume retries it
        raise BenchError(full_disk_message(full[0] or str(session.out), str(session.out)))
    if interrupted or len(results) < expected or results.num_terminated + results.num_errors < len(results):
        raise Interrupted(name)
    rows = [(r.config, _summary(r.metrics, ctx.metric)) for r in results if r.metrics and r.config]
    session.update(phase, "rows", rows)
    session.update(phase, "done", True)
    client(session.uri).set_terminated(parent, "FINISHED")
    return phase["rows"]


def _callbacks(session: Session, name: str, parent: str) -> list:
    """MLflow tracking and progress lines; Tune saves them with its state for a resume."""
    from bench import tuner

    meta = session.state["meta"]
    log = tracking.TrialLog(session.uri, session.state["experiment_id"], parent, session.id)
    tags = {"commit": meta["commit"], "evaluator_sha256": meta["evaluator_sha256"]}
    return [tuner.TrialTracker(log, name, tags), tuner.Progress()]


def _summary(result: dict[str, Any], metric: str) -> dict[str, Any]:
    """What best_config needs of a trial's last result, small enough for experiment.json."""
    record = TrialResult.from_tune(result)
    return {"final": int(record.final), "diverged": int(record.diverged)} | (
        {metric: record.metrics[metric]} if metric in record.metrics else {})


def _open_parent(session: Session, name: str, phase: dict[str, Any], restarted: bool) -> str:
    """The phase's MLflow parent run: created once, reopened on resume. A phase killed before
    Tune saved any state starts over under new trial ids, so its old trial runs are superseded."""
    state = session.state
    if "parent" in phase and restarted:
        tracking.supersede(session.uri, state["experiment_id"], session.id, name)
    if "parent" not in phase:
        session.update(phase, "parent", tracking.start_parent(
            session.uri, state["experiment_id"], f"{state['experiment']}:{name}", {
                "bench.session": session.id, "phase": name.split("-")[0],
                "bench.meta": json.dumps(state["meta"], sort_keys=True)}))
    else:
        client(session.uri).update_run(phase["parent"], status="RUNNING")
    return phase["parent"]
