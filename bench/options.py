"""The options of `bench run`, defined once: each field carries its flag, help and choices,
and `bench.cli` generates the argparse arguments from them (CleanRL's one-dataclass CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import registry
from bench.config import parse_sets


def opt(default: Any = None, help: str = "", *, flag: str | None = None, choices: tuple[str, ...] = (),
        parse: Callable[[Any], Any] | None = None, repeat: bool = False, metavar: str | None = None) -> Any:
    """A field of Options with its command-line form. `flag` defaults to --field-name; `parse`
    turns the command-line text into the field's value; `repeat` collects repeated flags."""
    meta = {"help": help, "flag": flag, "choices": choices, "parse": parse, "repeat": repeat, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return field(default_factory=type(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Options:
    """What `bench run` was asked to do; saved in experiment.json so that --resume repeats it."""

    variants: list[str] = opt([], "comma-separated names (see `bench list`)", parse=registry.parse_list)
    preset: str = opt("smoke", "smoke | standard | search (default smoke)", choices=("smoke", "standard", "search"))
    budget: str | None = opt(None, "per-trial budget under --preset search: smoke | standard (default standard)",
                             choices=("smoke", "standard"))
    seeds: int | None = opt(None, "seeds per variant (default 1; 5 for phase 2 of --preset search)")
    sets: dict[str, str] = opt({}, "override a config field, type-checked (repeatable)", flag="--set",
                               parse=parse_sets, repeat=True, metavar="KEY=VALUE")
    output: str | None = opt(None, "folder for everything of this experiment (default runs/<preset>)")
    tracking_uri: str | None = opt(None, "MLflow URI (default sqlite:///<output>/mlflow.db)")
    experiment: str | None = opt(None, "MLflow experiment name (default: the output folder's name)")
    address: str | None = opt(None, "join a Ray cluster: auto or ray://host:10001 (default: start Ray locally)")
    storage: str | None = opt(None, "Tune storage URI shared by all nodes, e.g. s3://bucket/path (with --address)")
    num_samples: int = opt(10, "search trials per variant (default 10)")
    space: str = opt("narrow", "search space: wide | narrow (default narrow)", choices=("wide", "narrow"))
    search: str = opt("random", "random | optuna (default random)", choices=("random", "optuna"))
    scheduler: str = opt("none", "none | asha | pbt (default none)", choices=("none", "asha", "pbt"))
    metric: str = opt("eval/fid", "metric the search optimises (default eval/fid)")
    cpus_per_trial: float = opt(1.0, "CPUs per trial (default 1)")
    gpus_per_trial: float | None = opt(None, "GPUs per trial, fractions pack trials (default 1 if any)")
    max_concurrent: int = opt(0, "limit on concurrent trials (default: resources)")
    max_failures: int = opt(1, "retries of a crashed trial from its checkpoint")
    data_dir: str | None = opt(None, "folder with the four MNIST IDX files (default: BENCH_DATA_DIR, cache, download)")
    command: str = field(default="", metadata={})  # the command line, for the report; not an option itself

    def __post_init__(self) -> None:
        if self.output is None:
            self.output = f"runs/{self.preset}"

    @property
    def trial_budget(self) -> str:
        return self.budget or ("standard" if self.preset == "search" else self.preset)

    @property
    def n_seeds(self) -> int:
        if self.seeds is not None:
            return self.seeds
        return 5 if self.preset == "search" else 1
