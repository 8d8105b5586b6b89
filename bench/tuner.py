"""The Ray Tune adapter: trials, search spaces, search algorithms, schedulers, callbacks, Ray itself.

The only module that imports Ray. Variants and the protocol describe searches with bench.space;
`to_ray` translates them, so swapping the tuner never touches a recipe.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields
from functools import partial, wraps
from pathlib import Path
from typing import Any, TypeVar

import ray
import ray.tune.tune as tune_run
import torch
from ray import tune
from ray.tune.registry import _Registry

from bench import faults, registry
from bench.config import TrainConfig
from bench.errors import BenchError
from bench.records import EXPLOITED_KEY, EXPLOITED_STEP_KEY, TRIAL_FILE, TrialResult, counts, run_name
from bench.space import Choice, Grid, Loguniform, Uniform
from bench.tracking import NOTE_TAG, TrialLog
from bench.trainer import Trainer
from bench.variant import Variant


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its config: paths, the searched metric, resources."""

    data_dir: str
    cache_dir: str
    metric: str = "eval/fid"
    mode: str = "min"
    cpus: float = 1.0
    gpus: float = 0.0
    faults: faults.Faults | None = None  # tests only: bench.faults, read from the driver's environment


NODE_KEY = "node_id"  # the Ray node a result came from, beside Tune's own `hostname`


# --- trial configs -------------------------------------------------------------------------
def flat(config: dict[str, Any]) -> dict[str, Any]:
    """A trial config with its `arm` (the variant and its searched values) merged in."""
    return {k: v for k, v in config.items() if k != "arm"} | (config.get("arm") or {})


def resolve(config: dict[str, Any]) -> tuple[type[Variant], TrainConfig]:
    """A trial config (variant, budget, seed, any config fields) → (variant class, typed config)."""
    values = flat(config)
    variant_cls = registry.get(values.pop("variant"))
    budget = variant_cls.budgets[values.pop("budget")]
    names = {f.name for f in fields(variant_cls.Config)}
    return variant_cls, variant_cls.make_config(budget, {k: v for k, v in values.items() if k in names})


def trial_name(config: dict[str, Any], trial_id: str | None = None) -> str:
    values = flat(config)
    return run_name(values["variant"], values["preset"], values["seed"], trial_id)


def to_ray(space: dict[str, Any]) -> dict[str, Any]:
    """bench.space domains → Ray Tune domains; other values pass through as constants."""
    def one(value: Any) -> Any:
        if isinstance(value, Loguniform):
            return tune.loguniform(value.lo, value.hi)
        if isinstance(value, Uniform):
            return tune.uniform(value.lo, value.hi)
        if isinstance(value, Choice):
            return tune.choice(list(value.values))
        if isinstance(value, Grid):
            return tune.grid_search(list(value.values))
        return value

    return {k: one(v) for k, v in space.items()}


# --- inside a trial ------------------------------------------------------------------------
def quiet() -> None:
    """Keep the console to our progress lines: Ray's per-checkpoint INFO and its
    'no result.json' warning (we log to MLflow, not to Tune's files) say nothing to a user."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
    for name in ("ray.train", "ray.tune", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _device(ctx: TrialContext, name: str) -> str:
    torch.set_num_threads(max(1, int(ctx.cpus)))  # Ray leaves OMP threads alone once set
    if ctx.gpus > 0 and not torch.cuda.is_available():  # a node that advertises GPUs it cannot give
        print(f"[bench] {name}: granted {ctx.gpus:g} GPU but no CUDA device is visible; training on CPU", flush=True)
    device = "cuda" if ctx.gpus > 0 and torch.cuda.is_available() else "cpu"
    if device == "cuda" and ctx.gpus < 1:
        torch.cuda.set_per_process_memory_fraction(ctx.gpus)  # Ray does not isolate GPU memory
    return device


def node_id() -> str:
    """The Ray node this process runs on: hosts can share a name (and an IP, on one machine)."""
    return ray.get_runtime_context().get_node_id()


def trainable(config: dict[str, Any], ctx: TrialContext) -> None:
    """One trial: train with scoring, report each TrialResult with its checkpoint to Tune."""
    from bench import evaluator, metrics
    from bench.data import load_mnist, split

    quiet()
    trial_id = tune.get_context().get_trial_id()
    device = _device(ctx, trial_name(config, trial_id))
    variant_cls, cfg = resolve(config)
    mnist = split(load_mnist(ctx.data_dir), cfg.eval_split)
    net = evaluator.load(device=device)
    ref = metrics.reference(net, mnist, cache_dir=ctx.cache_dir)  # cached by the driver's prepare step
    scorer = partial(metrics.evaluate, evaluator=net, reference=ref, seed=cfg.seed, cas=cfg.cas)
    make = partial(faults.FaultyTrainer, faults=ctx.faults, trial_key=trial_id) if ctx.faults else Trainer
    trainer = make(variant_cls, cfg, mnist, device=device, scorer=scorer)

    node = {NODE_KEY: node_id()}
    once: dict[str, Any] = {}  # the first report after a PBT exploit names the donor and its step

    def report(result: TrialResult, ckpt_dir: Path | None) -> None:
        checkpoint = None
        if ckpt_dir:
            (ckpt_dir / TRIAL_FILE).write_text(json.dumps({"trial_id": trial_id, "step": result.step}))
            checkpoint = tune.Checkpoint.from_directory(ckpt_dir)
        tune.report(result.to_tune(ctx.metric, ctx.mode) | node | once, checkpoint=checkpoint)
        once.clear()

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        trainer.run(on_report=report)
        return
    with checkpoint.as_directory() as d:
        writer = json.loads(Path(d, TRIAL_FILE).read_text()) if Path(d, TRIAL_FILE).is_file() else {}
        if writer.get("trial_id", trial_id) != trial_id:  # PBT cloned another trial's checkpoint into this one
            once |= {EXPLOITED_KEY: writer["trial_id"], EXPLOITED_STEP_KEY: writer["step"]}
        trainer.run(on_report=report, resume_from=Path(d))


# --- search --------------------------------------------------------------------------------
def search_algorithm(kind: str, space: dict[str, Any], defaults: dict[str, Any], ctx: TrialContext, seed: int):
    """Random search or Optuna TPE; the variant's default config is always the first trial."""
    start = [{k: defaults[k] for k in space}]
    if kind == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(points_to_evaluate=start, random_state=seed)
    if kind == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(metric=ctx.metric, mode=ctx.mode, points_to_evaluate=start,
                            sampler=optuna.samplers.TPESampler(seed=seed))
    raise ValueError(kind)


def scheduler(kind: str, ctx: TrialContext, space: dict[str, Any], max_reports: int, report_every: int = 1):
    """ASHA prunes on the intermediate metric; PBT mutates the searched learning rates every
    `report_every` training steps (each periodic evaluation)."""
    if kind == "none":
        return None
    if kind == "asha":
        return tune.schedulers.ASHAScheduler(metric=ctx.metric, mode=ctx.mode, max_t=max(max_reports, 1),
                                             grace_period=1, reduction_factor=2)
    if kind == "pbt":
        mutations = to_ray({k: v for k, v in space.items() if k.startswith("lr_")})
        # Time is the trainer's step (Ray's default, seconds of training, perturbs at arbitrary steps).
        # Synchronous: every trial waits at each report until all have reached it, so an exploiting
        # trial clones a checkpoint of its own step and every trial trains exactly the budget's steps.
        return FinalSafePBT(metric=ctx.metric, mode=ctx.mode, time_attr="step", synch=True,
                            perturbation_interval=max(report_every, 1), hyperparam_mutations=mutations)
    raise ValueError(kind)


class FinalSafePBT(tune.schedulers.PopulationBasedTraining):
    """PBT whose perturbations skip a trial's final report: a clone made after the last step would score
    the donor's weights a second time, and a finished trial paused to wait for the others would restart
    from its final checkpoint to score again."""

    def on_trial_result(self, tune_controller, trial, result):
        if result.get("final"):
            return tune.schedulers.TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


# --- callbacks on the driver -----------------------------------------------------------------
class Progress(tune.Callback):
    """One line per trial result, so a CPU run shows it is alive."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = TrialResult.from_tune(result)
        shown_keys = ("perf/img",) if record.diverged else (
            "eval/fid", "eval/label_accuracy", "periodic/fid", "periodic/label_accuracy", "perf/img")
        shown = "  ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in record.metrics.items() if k.startswith(shown_keys))
        state = "diverged" if record.diverged else ("done" if record.final else "")
        print(f"[bench] {trial_name(trial.config, trial.trial_id)} step {record.step}  {shown} {state}", flush=True)


class TrialTracker(tune.Callback):
    """Tune callback: each trial's results go to its MLflow run (bench.tracking.TrialLog).

    `tags` are the provenance tags every trial run of the phase carries (commit, evaluator).
    Tune pickles its callbacks with its state, so this holds plain data and a lazy client.
    """

    def __init__(self, log: TrialLog, phase: str, tags: dict[str, str]):
        self.log, self.phase, self.tags = log, phase, tags

    def _open(self, trial) -> str:
        variant_cls, cfg = resolve(trial.config)
        config = asdict(cfg)
        # variant, preset and phase are params too: MLflow's compare views group and colour by params only.
        # The variant as named on the command line (a registered name or module:Class), which loads it anywhere.
        values = flat(trial.config)
        names = {"variant": values["variant"], "preset": values["preset"], "phase": self.phase.split("-")[0]}
        tags = names | {"seed": str(cfg.seed), "bench.tuner": self.phase, NOTE_TAG: describe(variant_cls, cfg),
                        "bench.config": json.dumps(config, sort_keys=True)} | self.tags
        return self.log.open(trial.trial_id, trial_name(trial.config, trial.trial_id), names | config, tags,
                             eval_split=cfg.eval_split)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._open(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._open(trial)
        self.log.log(trial.trial_id, TrialResult.from_tune(result))
        if EXPLOITED_KEY in result:
            donor = next((t for t in trials if t.trial_id == result[EXPLOITED_KEY]), None)
            self.log.exploited(trial.trial_id, result[EXPLOITED_KEY], donor and _trial_name(donor),
                               int(result[EXPLOITED_STEP_KEY]), asdict(resolve(trial.config)[1]))
        if NODE_KEY in result:
            self.log.placed(trial.trial_id, result[NODE_KEY], str(result.get("hostname", "")))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._open(trial)
        record = TrialResult.from_tune(trial.last_result or {})
        variant_cls, cfg = resolve(trial.config)
        done = partial(self.log.complete, trial.trial_id, final=record.final, note=describe(variant_cls, cfg, record),
                       model={"variant": flat(trial.config)["variant"], "config": asdict(cfg)})
        if trial.checkpoint is None:
            done(None, None)
            return
        with trial.checkpoint.as_directory() as local:  # downloaded when the storage is remote (s3://)
            done(checkpoint_uri(trial.checkpoint), Path(local))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._open(trial)
        path = checkpoint_uri(trial.checkpoint) if trial.checkpoint is not None else None
        self.log.fail(trial.trial_id, last_error_line(trial), path)


def checkpoint_uri(checkpoint: tune.Checkpoint) -> str:
    """Where a checkpoint lies: a local path, or a URI (Tune keeps the scheme in its filesystem, not its path)."""
    kind = checkpoint.filesystem.type_name
    return checkpoint.path if kind == "local" else f"{kind}://{checkpoint.path}"


def describe(variant_cls: type[Variant], cfg: TrainConfig, record: TrialResult | None = None) -> str:
    """The run's description in MLflow: the recipe's paper, its budget and, once known, its scores."""
    doc = sys.modules[variant_cls.__module__].__doc__ or variant_cls.name
    paper = " ".join(doc.strip().split("\n\n")[0].split())  # the docstring's first paragraph
    lines = [f"**{variant_cls.name}**: {paper}",
             f"{cfg.steps} steps, batch {cfg.batch_size}, seed {cfg.seed}; scored on the {cfg.eval_split} split "
             f"with N = {cfg.final_n} samples"]
    if record is not None and record.final and counts(record):
        shown = {k: v for k, v in record.metrics.items() if k in ("eval/fid", "eval/label_accuracy", "eval/precision",
                                                                  "eval/recall", "eval/cas")}
        lines.append("final: " + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    return "\n\n".join(lines)


def last_error_line(trial) -> str:
    path = trial.error_file  # Tune writes it whenever the trial has a folder
    text = Path(path).read_text() if path and Path(path).is_file() else str(trial.get_error() or "unknown error")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else "unknown error")[:500]


# --- shared storage ------------------------------------------------------------------------
@ray.remote(num_cpus=0)
def _read_marker(path: str) -> tuple[str | None, str]:
    import socket

    try:
        text = Path(path).read_text()
    except OSError:
        text = None
    return text, socket.gethostname()


def check_shared_storage(storage: str, token: str) -> None:
    """A local --storage on a cluster must be one folder that every node sees at that path (NFS, a
    shared disk): a trial checkpoints there from its node and is restored from there on another.
    The driver writes a marker; a task pinned to each alive node reads it back."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    marker = Path(storage) / f".bench-storage-check-{token}"
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    except OSError as e:
        raise BenchError(f"cannot write to --storage {storage}: {e.strerror}; choose a shared writable folder") \
            from None
    try:
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        reads = [_read_marker.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote(
            str(marker)) for n in nodes]
        seen = dict(zip(nodes, ray.get(reads), strict=True))
    finally:
        marker.unlink(missing_ok=True)
    blind = [f"{node} ({host})" for node, (text, host) in seen.items() if text != token]
    if blind:
        raise BenchError(f"--storage {storage} is not shared: Ray node {blind[0]} cannot read {marker} that the "
                         f"driver wrote{f' (nor can {len(blind) - 1} more)' if len(blind) > 1 else ''}; mount that "
                         "folder at the same path on every node, or pass --storage s3://…")


# --- tuners and Ray ----------------------------------------------------------------------------
def _with_resources(ctx: TrialContext):
    return tune.with_resources(tune.with_parameters(trainable, ctx=ctx), {"cpu": ctx.cpus, "gpu": ctx.gpus})


def _trial_name(trial) -> str:  # a named function: Tune pickles these, and one place names trials
    return trial_name(trial.config, trial.trial_id)


def build_tuner(*, name: str, storage: str, space: dict[str, Any], ctx: TrialContext, callbacks: list,
                num_samples: int = 1, search_alg=None, sched=None, max_failures: int = 1,
                max_concurrent: int = 0) -> tune.Tuner:
    """A Tuner over `space` (bench.space domains and constants)."""
    searched = search_alg is not None or sched is not None  # they take metric and mode themselves
    # PBT clones a donor trial's checkpoint into the trial that exploits it, any checkpoint the donor
    # reported since: Ray warns that deleting old ones can break that, so under PBT every one is kept.
    keep = None if isinstance(sched, tune.schedulers.PopulationBasedTraining) else 2
    return tune.Tuner(
        _with_resources(ctx),
        param_space=to_ray(space),
        tune_config=tune.TuneConfig(
            num_samples=num_samples, search_alg=search_alg, scheduler=sched,
            metric=None if searched else ctx.metric, mode=None if searched else ctx.mode,
            max_concurrent_trials=max_concurrent or None,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, callbacks=callbacks, verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=keep)),
    )


def restore_tuner(path: str, ctx: TrialContext) -> tune.Tuner | None:
    """The Tuner saved at `path`, or None when Tune saved nothing usable there (nothing yet, or a
    state file cut short by a full disk: the phase then starts over)."""
    if not tune.Tuner.can_restore(path):
        return None
    if "://" not in path and not _state_readable(Path(path)):
        print(f"[bench] warning: Tune's saved state in {path} is damaged (a full disk?); "
              "this phase starts over", file=sys.stderr)
        return None
    return tune.Tuner.restore(path, trainable=_with_resources(ctx), resume_errored=True)


def _state_readable(path: Path) -> bool:
    """Whether Tune's experiment state files in a local phase folder are whole JSON."""
    try:
        for state in path.glob("experiment_state-*.json"):
            json.loads(state.read_text())
    except (OSError, ValueError):
        return False
    return True


def fit(tuner: tune.Tuner):
    """Tuner.fit(), and whether Ctrl-C ended it.

    Tune handles the first SIGINT itself (saves state, returns normally) and then puts back
    the handler it found; finding ours back in place is how we know the stop was a Ctrl-C.
    In a thread of concurrently() the main thread takes the Ctrl-C and sets _STOP instead.
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit(), _STOP.is_set()

    def marker(sig, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, marker)
    try:
        grid = tuner.fit()
    finally:
        interrupted = signal.getsignal(signal.SIGINT) is marker
        signal.signal(signal.SIGINT, previous)
    return grid, interrupted


# Tune stops a fit when the event its signal setup returns is set, and only the main thread can catch
# signals: a fit in another thread gets this one event, which the main thread sets on Ctrl-C or SIGTERM
# (Tune then saves state and returns: the phase stays resumable).
_STOP = threading.Event()
T = TypeVar("T")


def _signal_catching():
    if threading.current_thread() is threading.main_thread():
        return _tune_signal_catching()
    return _STOP


_tune_signal_catching = tune_run._setup_signal_catching  # private to Tune 2.x: tests/test_tuner.py checks it
tune_run._setup_signal_catching = _signal_catching


_REGISTRY_LOCK = threading.RLock()


def _locked(method: Callable) -> Callable:
    @wraps(method)
    def call(*args, **kwargs):
        with _REGISTRY_LOCK:
            return method(*args, **kwargs)

    return call


# Tune's trainable registry is one process-wide dict without a lock: two Tuners starting in threads
# at once raised "dictionary changed size during iteration" in its flush.
for _name in ("register", "flush_values", "unregister", "unregister_all"):
    setattr(_Registry, _name, _locked(getattr(_Registry, _name)))


def concurrently(calls: list[Callable[[], T]]) -> list[T]:
    """Run calls that each fit a Tuner in threads, at once on the one cluster; their results in order.
    A Ctrl-C (or SIGTERM, turned into one) stops every fit as Tune stops one, then raises KeyboardInterrupt."""
    _STOP.clear()
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="bench-phase") as pool:
        futures = [pool.submit(call) for call in calls]
        try:
            wait(futures)
        except KeyboardInterrupt:
            _STOP.set()
            wait(futures)
            raise
    return [f.result() for f in futures]


# Ray 2.60's raylet gives its dashboard agent a fixed ~15 s to report its ports (an
# RAY_agent_register_timeout_ms of 100 s did not change it), and the driver gives the node a fixed
# 30 s: where importing Ray alone takes ~30 s (seen on an overloaded 2-core VM) the node cannot
# start ('The current node timed out during startup'). A slow first start can; so: a few tries.
STARTUP_TRIES = 3


@contextmanager
def ray_session(address: str | None, py_modules: list[str] = (),
                started: Callable[[list], None] | None = None) -> Iterator[dict[str, float]]:
    """Ray for one protocol run; yields the cluster's resources. A Ray already running in this
    process (a notebook's, a test session's) is used as it is and left running. py_modules: package
    folders of variants named by import path, shipped to every worker (they need not be installed there).
    `started` gets the processes that starting a local Ray made (see end_processes)."""
    if ray.is_initialized():
        yield ray.cluster_resources()
        return
    resources = init_ray(address, list(py_modules))
    if address is None and started is not None:
        started(local_processes())
    try:
        yield resources
    finally:
        ray.shutdown()


def _stop_orphans() -> None:
    """A node that missed its deadline leaves the processes it started running (ray.shutdown()
    never learnt of them), and they would slow the next try: stop this process's Ray children."""
    import psutil  # shipped inside Ray

    ray_dir = os.path.dirname(ray.__file__)
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if ray_dir in cmd or cmd.startswith("ray::"):
                child.kill()
        except psutil.Error:
            pass


def local_processes() -> list[list[float]]:
    """This process's children, [pid, start time] each: after ray.init, the local Ray it started. A driver
    killed with SIGKILL takes its GCS and raylet (and so the workers) with it, but its dashboard and
    runtime-env agents stayed running (measured with Ray 2.60)."""
    import psutil  # shipped inside Ray

    return [[p.pid, p.create_time()] for p in psutil.Process().children(recursive=True)]


def end_processes(recorded: list[list[float]], grace: float = 10) -> list[int]:
    """End those of `recorded` ([pid, start time]) that still run, and their children: SIGTERM, then
    SIGKILL after `grace` s. The start time tells a leftover from a new process that reuses its pid."""
    import psutil

    found = []
    for pid, started in recorded:
        try:
            p = psutil.Process(int(pid))
            if abs(p.create_time() - started) < 0.01:
                found += [p, *p.children(recursive=True)]
        except psutil.Error:
            pass
    for p in found:
        with suppress(psutil.Error):
            p.terminate()
    for p in psutil.wait_procs(found, timeout=grace)[1]:
        with suppress(psutil.Error):
            p.kill()
    return [p.pid for p in found]


def init_ray(address: str | None, py_modules: list[str] | None = None) -> dict[str, float]:
    """Start Ray locally (all cores) or join `address`; returns the cluster's resources."""
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    quiet()
    for attempt in range(1, STARTUP_TRIES + 1):
        try:
            ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=True,
                     runtime_env={"py_modules": py_modules} if py_modules else None)
            return ray.cluster_resources()
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise BenchError(f"cannot join the Ray cluster at {address!r}: {str(e).splitlines()[0]}; "
                             "check --address (e.g. auto or ray://host:10001), or drop it to run locally") from None
        except Exception as e:  # Ray raises a bare Exception when its node misses the startup deadline
            if "timed out during startup" not in str(e):
                raise
            ray.shutdown()
            _stop_orphans()
            print(f"[bench] Ray's node did not register within its fixed 30 s (a busy machine); "
                  f"attempt {attempt} of {STARTUP_TRIES}", file=sys.stderr, flush=True)
    raise BenchError(f"Ray could not start its local node in {STARTUP_TRIES} attempts: the machine is too busy; "
                     "retry when other work has finished")
