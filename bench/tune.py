"""Ray Tune adapter around the trainer: the trainable, resources, search and schedulers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from bench import config as config_mod
from bench import registry
from bench.trainer import Trainer
from bench.variant import Variant

PENALTY = 1e6  # finite stand-in for a diverged trial's searched metric (NaN stalls ASHA/Optuna)


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its config: paths and the searched metric."""

    data_dir: str
    cache_dir: str
    metric: str = "eval/fid"
    mode: str = "min"
    cpus: float = 1.0
    gpus: float = 0.0


def resolve(config: dict[str, Any]) -> tuple[type[Variant], config_mod.TrainConfig]:
    """A trial config (variant, budget, seed, any config fields) → (variant class, typed config)."""
    flat = dict(config)
    flat.update(flat.pop("arm", {}) or {})
    variant_cls = registry.get(flat.pop("variant"))
    budget = variant_cls.budgets[flat.pop("budget")]
    flat.pop("preset", None)
    names = {f.name for f in fields(variant_cls.Config)}
    return variant_cls, config_mod.build(variant_cls.Config, budget, {k: v for k, v in flat.items() if k in names})


def run_name(config: dict[str, Any], trial_id: str | None = None) -> str:
    flat = dict(config) | (config.get("arm") or {})
    name = f"{flat['variant']}__{flat['preset']}__{flat['seed']}"
    return f"{name}__{trial_id}" if flat["preset"] == "search" and trial_id else name


def penalized(result: dict[str, Any], ctx: TrialContext) -> dict[str, Any]:
    if result["diverged"] or ctx.metric not in result:
        result[ctx.metric] = PENALTY if ctx.mode == "min" else -PENALTY
    return result


def quiet() -> None:
    """Keep the console to our progress lines: Ray's per-checkpoint INFO and its
    'no result.json' warning (we log to MLflow, not to Tune's files) say nothing to a user."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=".*will save all extracted features in buffer.*")
    for name in ("ray.train", "ray.tune", "ray.tune.analysis.experiment_analysis"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def trainable(config: dict[str, Any], ctx: TrialContext) -> None:
    from bench import evaluator, metrics
    from bench.data import load_mnist

    quiet()

    torch.set_num_threads(max(1, int(ctx.cpus)))  # Ray leaves OMP threads alone once set
    device = "cuda" if ctx.gpus > 0 and torch.cuda.is_available() else "cpu"
    if device == "cuda" and ctx.gpus < 1:
        torch.cuda.set_per_process_memory_fraction(ctx.gpus)  # Ray does not isolate GPU memory
    variant_cls, cfg = resolve(config)
    mnist = load_mnist(ctx.data_dir)
    net = evaluator.load(device=device)
    real = metrics.real_features(net, mnist.test_images, cache_dir=ctx.cache_dir)

    def scorer(images, labels):
        return metrics.score(images, labels, evaluator=net, real_features=real, seed=cfg.seed)

    trial_id = tune.get_context().get_trial_id()
    trainer = Trainer(variant_cls, cfg, mnist, device=device, scorer=scorer, trial_key=trial_id)

    def report(result: dict[str, Any], ckpt_dir: Path | None) -> None:
        result = penalized(dict(result), ctx)
        result["history"] = json.dumps(result["history"])
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None)

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        trainer.run(on_report=report)
    else:
        with checkpoint.as_directory() as d:
            trainer.run(on_report=report, resume_from=Path(d))


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


def scheduler(kind: str, ctx: TrialContext, space: dict[str, Any], max_reports: int):
    """ASHA prunes on the intermediate metric; PBT mutates the searched learning rates."""
    if kind == "none":
        return None
    if kind == "asha":
        return tune.schedulers.ASHAScheduler(metric=ctx.metric, mode=ctx.mode, max_t=max(max_reports, 1),
                                             grace_period=1, reduction_factor=2)
    if kind == "pbt":
        mutations = {k: v for k, v in space.items() if k.startswith("lr_")}
        return tune.schedulers.PopulationBasedTraining(metric=ctx.metric, mode=ctx.mode,
                                                       perturbation_interval=1, hyperparam_mutations=mutations)
    raise ValueError(kind)


class Progress(tune.Callback):
    """One line per trial result, so a CPU run shows it is alive."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        shown_keys = ("perf/img",) if result.get("diverged") else ("eval/fid", "eval/label_accuracy", "perf/img")
        flat = {k: v for k, v in result.items() if k.startswith(shown_keys)}
        shown = "  ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in flat.items() if isinstance(v, float))
        state = "diverged" if result.get("diverged") else ("done" if result.get("final") else "")
        print(f"[bench] {run_name(trial.config, trial.trial_id)} step {result['step']}  {shown} {state}", flush=True)


def build_tuner(*, name: str, storage: str, param_space: dict[str, Any], ctx: TrialContext,
                callbacks: list, num_samples: int = 1, search_alg=None, sched=None,
                max_failures: int = 1, max_concurrent: int = 0) -> tune.Tuner:
    fn = tune.with_resources(tune.with_parameters(trainable, ctx=ctx), {"cpu": ctx.cpus, "gpu": ctx.gpus})
    return tune.Tuner(
        fn,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples, search_alg=search_alg, scheduler=sched,
            metric=None if (search_alg or sched) else ctx.metric, mode=None if (search_alg or sched) else ctx.mode,
            max_concurrent_trials=max_concurrent or None,
            trial_name_creator=lambda t: run_name(t.config, t.trial_id),
            trial_dirname_creator=lambda t: run_name(t.config, t.trial_id)),
        run_config=tune.RunConfig(
            name=name, storage_path=storage, callbacks=callbacks, verbose=0,
            failure_config=tune.FailureConfig(max_failures=max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
    )


def restore_tuner(path: str, ctx: TrialContext) -> tune.Tuner:
    fn = tune.with_resources(tune.with_parameters(trainable, ctx=ctx), {"cpu": ctx.cpus, "gpu": ctx.gpus})
    return tune.Tuner.restore(path, trainable=fn, resume_errored=True)


def check_reachable(address: str, what: str, hint: str) -> None:
    """Fail in seconds, not minutes: Ray and MLflow both retry an absent peer for a long time."""
    import socket
    from urllib.parse import urlsplit

    from bench.errors import BenchError

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.hostname is None or parts.port is None:
        return
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=5).close()
    except OSError as e:
        raise BenchError(f"cannot reach {what} at {address}: {e.strerror or e}; {hint}") from None


def init_ray(address: str | None) -> dict[str, float]:
    """Start Ray locally (all cores) or join `address`; returns the cluster's resources."""
    from bench.errors import BenchError

    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    quiet()
    try:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                 ignore_reinit_error=True, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BenchError(f"cannot join the Ray cluster at {address!r}: {str(e).splitlines()[0]}; "
                         "check --address (e.g. auto or ray://host:10001), or drop it to run locally") from None
    return ray.cluster_resources()


