"""Fault injection for the fault-tolerance tests: a Trainer subclass, used only when one of
these environment variables is set on the driver (the production loop has no fault checks).

BENCH_FAULT_CRASH=[variant:]<step>  raise once per trial when training reaches <step>
BENCH_FAULT_FAIL=[variant:]<step>   raise at <step> on every attempt (the trial fails for good)
BENCH_FAULT_NAN=[variant:]<step>    turn the losses into NaN from <step> on (every attempt)
BENCH_FAULT_SLOW=<secs>             sleep this long per step (gives a test time to stop the driver)
With `variant:` a fault hits only that variant's trials, so one experiment can hold several.
The driver reads the variables once and ships them in each trial's context: Ray workers of an
already running cluster never see the driver's environment. The once-per-trial memory is a
marker file in BENCH_FAULT_DIR, so a retried trial goes on.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.trainer import Trainer


class InjectedCrash(RuntimeError):
    pass


@dataclass(frozen=True)
class Faults:
    """The faults asked for; each step spec is '' (none), '<step>' or '<variant>:<step>'."""

    crash: str = ""
    fail: str = ""
    nan: str = ""
    slow: float = 0.0
    marker_dir: str = "/tmp"

    @classmethod
    def from_env(cls) -> Faults | None:
        env = {k: os.environ.get(f"BENCH_FAULT_{k.upper()}", "") for k in ("crash", "fail", "nan", "slow")}
        if not any(env.values()):
            return None
        return cls(crash=env["crash"], fail=env["fail"], nan=env["nan"], slow=float(env["slow"] or 0),
                   marker_dir=os.environ.get("BENCH_FAULT_DIR", "/tmp"))


def step_for(spec: str, variant: str) -> int | None:
    """The step a spec names for this variant, or None when it does not apply."""
    if not spec:
        return None
    target, _, step = spec.rpartition(":")
    return int(step) if target in ("", variant) else None


class FaultyTrainer(Trainer):
    """A Trainer whose steps crash, slow down or return NaN losses as `faults` asks."""

    def __init__(self, *args, faults: Faults, trial_key: str = "local", **kwargs):
        super().__init__(*args, **kwargs)
        self.faults, self.trial_key = faults, trial_key

    def train_step(self) -> dict[str, torch.Tensor]:
        f, name = self.faults, self.variant.name
        if f.slow:
            time.sleep(f.slow)
        if self.step == step_for(f.fail, name):
            raise InjectedCrash(f"injected crash at step {self.step}")
        if self.step == step_for(f.crash, name):
            marker = Path(f.marker_dir) / f"crashed-{self.trial_key}"
            if not marker.exists():
                marker.touch()
                raise InjectedCrash(f"injected crash at step {self.step}")
        losses = super().train_step()
        nan = step_for(f.nan, name)
        if nan is not None and self.step + 1 >= nan:  # the step this call completes
            losses = {k: torch.full_like(t, math.nan) for k, t in losses.items()}
        return losses
