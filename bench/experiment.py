"""The experiment protocol on the driver: checks, stores, phases, resume, the report.

A `bench run` is one session: an output folder holding `experiment.json` (what was asked,
which phases ran, their parent runs), the Tune storage, the MLflow store and the report.
Phases: `seeds` (variants × seeds), preceded under `--preset search` by one `search:<variant>`
phase per variant whose best config (by the final primary metric) the seeds phase re-runs.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench import config as config_mod
from bench import registry, tracking
from bench.errors import BenchError

PRESETS = ("smoke", "standard", "search")
STATE = "experiment.json"


@dataclass
class Options:
    variants: list[str]
    preset: str = "smoke"
    budget: str | None = None  # per-trial budget under --preset search
    seeds: int | None = None  # default: 1, or 5 for the search protocol's phase 2
    sets: dict[str, str] = field(default_factory=dict)
    output: str = "runs/latest"
    tracking_uri: str | None = None
    experiment: str | None = None
    address: str | None = None
    storage: str | None = None
    num_samples: int = 10
    space: str = "narrow"
    search: str = "random"
    scheduler: str = "none"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int = 0
    max_failures: int = 1
    data_dir: str | None = None
    metric: str = "eval/fid"
    command: str = ""

    @property
    def trial_budget(self) -> str:
        return self.budget or ("standard" if self.preset == "search" else self.preset)

    @property
    def n_seeds(self) -> int:
        if self.seeds is not None:
            return self.seeds
        return 5 if self.preset == "search" else 1


def sanitize(name: str) -> str:
    """Experiment names become folder names: keep letters, digits, '.', '_' and '-'."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-")
    return clean[:80] or "experiment"


def check(opts: Options) -> dict[str, config_mod.TrainConfig]:
    """Every user mistake we can see before Ray starts, as one BenchError. Returns the configs."""
    if opts.preset not in PRESETS:
        raise BenchError(f"unknown preset {opts.preset!r}; choose from {', '.join(PRESETS)}")
    if opts.budget is not None and opts.budget not in ("smoke", "standard"):
        raise BenchError(f"unknown budget {opts.budget!r}; choose smoke or standard")
    if opts.n_seeds < 1:
        raise BenchError(f"--seeds must be >= 1, got {opts.n_seeds}")
    if opts.num_samples < 1:
        raise BenchError(f"--num-samples must be >= 1, got {opts.num_samples}")
    if opts.cpus_per_trial <= 0 or (opts.gpus_per_trial or 0) < 0 or opts.max_failures < 0:
        raise BenchError("--cpus-per-trial must be > 0, --gpus-per-trial and --max-failures >= 0")
    for name, value, choices in (("--space", opts.space, ("wide", "narrow")),
                                 ("--search", opts.search, ("random", "optuna")),
                                 ("--scheduler", opts.scheduler, ("none", "asha", "pbt"))):
        if value not in choices:
            raise BenchError(f"{name} {value!r} is not one of {', '.join(choices)}")
    classes = {v: registry.get(v) for v in opts.variants}
    known = set().union(*({f.name for f in fields(c.Config)} for c in classes.values()))
    for key in opts.sets:
        if key not in known:
            import difflib

            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BenchError(f"--set {key}: no such config field in {', '.join(opts.variants)}{hint}; "
                             "see `bench list -v` for the fields")
    if opts.address:
        if not opts.storage or "://" not in opts.storage:
            raise BenchError("--address joins a cluster whose nodes need shared Tune storage: "
                             "pass --storage s3://… or gs://… (a local path cannot be shared)")
        if not opts.tracking_uri or opts.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in opts.tracking_uri:
            raise BenchError("--address needs an MLflow server all nodes reach: pass --tracking-uri http://host:5000 "
                             "(a sqlite file cannot be shared across nodes)")
        if opts.address != "auto":
            from bench.tune import check_reachable

            check_reachable(opts.address, "the Ray cluster", "check --address (auto, host:6379 or ray://host:10001)")
    configs = {}
    for v, cls in classes.items():
        names = {f.name for f in fields(cls.Config)}
        own = {k: val for k, val in opts.sets.items() if k in names}
        configs[v] = config_mod.build(cls.Config, cls.budgets[opts.trial_budget], own)
    return configs


def prepare_output(out: Path, resume: bool) -> None:
    if resume:
        if not (out / STATE).is_file():
            raise BenchError(f"nothing to resume in {out}: no {STATE}; start it with `bench run … --output {out}`")
        return
    if (out / STATE).exists() or (out.exists() and any(out.iterdir())):
        raise BenchError(f"{out} already holds results; continue it with `bench run --resume --output {out}` "
                         "or choose a new --output")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise BenchError(f"cannot write to --output {out}: {e.strerror}; choose a writable folder") from None


class Session:
    """experiment.json: what was asked and how far the protocol got."""

    def __init__(self, out: Path, state: dict[str, Any]):
        self.out, self.state = out, state

    @classmethod
    def load(cls, out: Path) -> Session:
        return cls(out, json.loads((out / STATE).read_text()))

    def save(self) -> None:
        tmp = self.out / (STATE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=1, sort_keys=True))
        tmp.replace(self.out / STATE)  # atomic: a kill never leaves half a file

    @property
    def opts(self) -> Options:
        return Options(**self.state["options"])

    @property
    def id(self) -> str:
        return self.state["session"]


def new_session(out: Path, opts: Options) -> Session:
    uri = opts.tracking_uri or tracking.default_uri(out)
    experiment = sanitize(opts.experiment or out.resolve().name)
    state = {"session": uuid.uuid4().hex[:12], "options": asdict(opts), "tracking_uri": uri,
             "experiment": experiment, "phases": {}}
    return Session(out, state)


class Interrupted(Exception):
    """The driver stopped before the protocol finished (Ctrl-C); the output can be resumed."""


@dataclass
class Describe:
    """Names, params and tags of a trial's MLflow run (picklable: Tune stores its callbacks)."""

    phase: str
    commit: str
    evaluator_sha256: str

    def __call__(self, trial) -> tuple[str, dict[str, Any], dict[str, str]]:
        from bench import tune as tune_mod

        variant_cls, cfg = tune_mod.resolve(trial.config)
        flat = dict(trial.config) | (trial.config.get("arm") or {})
        params = asdict(cfg)
        tags = {"variant": variant_cls.name, "preset": flat["preset"], "seed": str(cfg.seed),
                "phase": self.phase.split("-")[0], "bench.tuner": self.phase, "commit": self.commit,
                "evaluator_sha256": self.evaluator_sha256,
                "bench.config": json.dumps(params, sort_keys=True)}
        return tune_mod.run_name(trial.config, trial.trial_id), params, tags


def best_config(rows: list[tuple[dict[str, Any], dict[str, Any]]], metric: str, higher_is_better: bool,
                keys: list[str]) -> dict[str, Any] | None:
    """The searched values of the best finished, non-diverged trial; None if there is none."""
    import math

    scored = [(m[metric], c) for c, m in rows
              if m.get("final") and not m.get("diverged") and math.isfinite(m.get(metric, math.nan))]
    if not scored:
        return None
    value, cfg = (max if higher_is_better else min)(scored, key=lambda vc: vc[0])
    return {k: cfg[k] for k in keys if k in cfg}


def _phase(session: Session, name: str, make_space, ctx, describe: Describe, opts: Options, expected: int,
           **tuner_kw):
    """Run (or resume) one Tuner; returns its ResultGrid, or raises Interrupted."""
    from ray import tune

    from bench import tune as tune_mod

    state = session.state
    uri, exp_id = state["tracking_uri"], state["experiment_id"]
    phase = state["phases"].setdefault(name, {})
    if phase.get("done"):
        return None
    storage = opts.storage or str((session.out / "ray").resolve())
    path = f"{storage.rstrip('/')}/{name}"
    restorable = tune.Tuner.can_restore(path)
    if "parent" in phase and not restorable:
        # Killed before Tune saved any state: this phase starts over under new trial ids.
        tracking.supersede(uri, exp_id, session.id, name)
    if "parent" not in phase:
        phase["parent"] = tracking.start_parent(uri, exp_id, f"{state['experiment']}:{name}", {
            "bench.session": session.id, "phase": name.split("-")[0],
            "bench.meta": json.dumps(state["meta"], sort_keys=True)})
        session.save()
    else:
        tracking.client(uri).update_run(phase["parent"], status="RUNNING")
    if restorable:
        print(f"[bench] resuming phase {name} from {path}", flush=True)
        tuner = tune_mod.restore_tuner(path, ctx)
    else:
        callbacks = [tracking.TrialTracker(uri, exp_id, phase["parent"], session.id, describe), tune_mod.Progress()]
        tuner = tune_mod.build_tuner(name=name, storage=storage, param_space=make_space(), ctx=ctx,
                                     callbacks=callbacks, max_failures=opts.max_failures,
                                     max_concurrent=opts.max_concurrent, **tuner_kw)
    grid, interrupted = _fit(tuner)
    if interrupted or len(grid) < expected or grid.num_terminated + grid.num_errors < len(grid):
        raise Interrupted(name)
    phase["done"] = True
    phase["rows"] = [(r.config, {k: v for k, v in r.metrics.items() if k in (ctx.metric, "final", "diverged")})
                     for r in grid if r.metrics and r.config]
    session.save()
    tracking.client(uri).set_terminated(phase["parent"], "FINISHED")
    return grid


def _fit(tuner):
    """Tuner.fit(), and whether Ctrl-C ended it.

    Tune handles the first SIGINT itself (saves state, returns normally) and then puts back
    the handler it found; finding ours back in place is how we know the stop was a Ctrl-C.
    """
    import signal

    def marker(sig, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, marker)
    try:
        grid = tuner.fit()
    finally:
        interrupted = signal.getsignal(signal.SIGINT) is marker
        signal.signal(signal.SIGINT, previous)
    return grid, interrupted


def run(opts: Options, resume: bool = False) -> Path:
    """Run (or resume) the whole protocol; returns the report's path."""
    import ray

    from bench import data, evaluator, metrics
    from bench import tune as tune_mod

    out = Path(opts.output)
    if resume:
        prepare_output(out, resume=True)
        session = Session.load(out)
        opts = session.opts
        configs = check(opts)
    else:
        configs = check(opts)
        prepare_output(out, resume=False)
        session = new_session(out, opts)
    mnist = data.load_mnist(opts.data_dir)  # verifies, or fetches into the cache, before Ray starts
    data_dir = str(data.resolve_data_dir(opts.data_dir))
    net = evaluator.load()
    cache = out / "cache"
    metrics.real_features(net, mnist.test_images, cache_dir=cache)
    final_n = next(iter(configs.values())).final_n
    state = session.state
    if "meta" not in state:
        floor = metrics.fid_floor(net, mnist, final_n, cache_dir=cache)
        state["meta"] = {
            "command": opts.command, "commit": tracking.git_commit(), "evaluator_sha256": evaluator.WEIGHTS_SHA256,
            "n_samples": final_n, "fid_floor": floor, "fid_floor_n": final_n, "hardware": tracking.hardware(),
            "experiment": state["experiment"], "tracking_uri": state["tracking_uri"], "primary_metric": opts.metric,
            "higher_is_better": {k: metrics.higher_is_better(k) for k in metrics.HIGHER_IS_BETTER}}
    uri = state["tracking_uri"]
    artifacts = out / "mlartifacts" if uri == tracking.default_uri(out) else None
    state["experiment_id"] = tracking.ensure_experiment(uri, state["experiment"], artifacts)
    session.save()

    higher = metrics.higher_is_better(opts.metric)
    describe_kw = {"commit": state["meta"]["commit"], "evaluator_sha256": state["meta"]["evaluator_sha256"]}
    status = "KILLED"
    resources = tune_mod.init_ray(opts.address)
    try:
        ctx = trial_context(opts, resources, data_dir, cache)
        arms = [{"variant": v} for v in opts.variants]
        if opts.preset == "search":
            arms = []
            for v in opts.variants:
                cls = registry.get(v)
                space = cls.search_space(opts.space)
                base = {"variant": v, "preset": "search", "budget": opts.trial_budget, "seed": 0, **opts.sets}
                name = f"search-{v}"
                _phase(session, name, lambda: base | space, ctx, Describe(name, **describe_kw), opts,
                       expected=opts.num_samples, num_samples=opts.num_samples,
                       search_alg=tune_mod.search_algorithm(opts.search, space, vars(configs[v]), ctx, seed=0),
                       sched=tune_mod.scheduler(opts.scheduler, ctx, space, configs[v].steps // max(configs[v].eval_every, 1) + 1))
                best = best_config(session.state["phases"][name]["rows"], opts.metric, higher, list(space))
                if best is None:
                    print(f"[bench] warning: every search trial of {v} diverged or failed; phase 2 uses its defaults")
                arms.append({"variant": v, **(best or {})})
        seeds = list(range(opts.n_seeds))
        space = {"arm": {"grid_search": arms}, "seed": {"grid_search": seeds}, "preset": opts.preset,
                 "budget": opts.trial_budget, **opts.sets}
        _phase(session, "seeds", lambda: _grid(space), ctx, Describe("seeds", **describe_kw), opts,
               expected=len(arms) * len(seeds))
        status = "FINISHED"
    except KeyboardInterrupt:
        raise Interrupted("seeds") from None
    finally:
        tracking.close_session(uri, state["experiment_id"], session.id, status)
        ray.shutdown()
    return write_report(uri, state["experiment"], session.id, out)


def _grid(space: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    return {k: tune.grid_search(v["grid_search"]) if isinstance(v, dict) and "grid_search" in v else v
            for k, v in space.items()}


def trial_context(opts: Options, resources: dict[str, float], data_dir: str, cache: Path):
    import sys

    from bench import metrics
    from bench.tune import TrialContext

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
                        cpus=opts.cpus_per_trial, gpus=gpus)


def write_report(uri: str, experiment: str, session: str | None, out: Path) -> Path:
    import tempfile

    from bench import report

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        runs, history, meta = tracking.load_session(uri, experiment, session, Path(tmp))
        if runs.empty:
            raise BenchError(f"experiment {experiment!r} has no trial runs to report yet")
        for key in meta.get("higher_is_better", {}):
            if key not in runs:
                runs[key] = float("nan")  # e.g. every trial diverged: the table still has the column
        return report.write_report(runs, history, meta, out)
