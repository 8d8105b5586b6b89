"""What a trial produces, defined once: the trainer makes a `TrialResult`, the Tune adapter
carries it as a flat dict, tracking writes it to MLflow, the store reads it back for the report.

`counts()` is the one rule for whose scores enter a comparison. No Ray, no torch here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

STATE_FILE = "state.pt"  # in every checkpoint: weights, optimizers, RNG states
GRID_FILE = "grid.png"  # in the final checkpoint: the 10×10 sample grid
CONFIG_FILE = "config.json"  # in every checkpoint: the resolved config
TRIAL_FILE = "trial.json"  # in every checkpoint under Tune: the trial that wrote it and its step (PBT clones it)
# The first result of a trial restored from another trial's checkpoint (a PBT exploit) names it and its step.
EXPLOITED_KEY, EXPLOITED_STEP_KEY = "exploited", "exploited_step"
FINAL_PREFIX, PERIODIC_PREFIX = "eval/", "periodic/"  # the same scores at final_n and at eval_n samples
SCORE_PREFIXES = (FINAL_PREFIX, PERIODIC_PREFIX, "perf/")
PENALTY = 1e6  # finite stand-in for a searched metric that has no value (NaN stalls ASHA/Optuna)

History = list[tuple[int, dict[str, float]]]  # (step, mean of each loss over the window ending there)


@dataclass
class TrialResult:
    """One report of a trial: at a periodic evaluation, or its last (`final`).

    `metrics` holds `perf/*` (timings) and scores: `eval/*` at final_n samples in the final report,
    `periodic/*` at eval_n samples in the others. Two keys because the two estimators differ in bias
    (FID falls with N), so MLflow never mixes them in one history. `history` holds the loss windows
    logged since the previous report, so each point reaches the store exactly once.
    """

    step: int = 0
    final: bool = False  # the trial trained its whole budget and was scored at final_n
    diverged: bool = False  # a loss or weight went non-finite; no scores were computed
    history: History = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    def to_tune(self, metric: str, mode: str) -> dict[str, Any]:
        """Tune's flat result dict. Tune's schedulers need the searched metric (an eval/* key) in every
        result: a periodic report carries its periodic/* value there, and a result without either a
        finite penalty. `tune_only` names that key, so `from_tune` drops it before anything records it."""
        out: dict[str, Any] = {"step": self.step, "final": int(self.final), "diverged": int(self.diverged),
                               "history": json.dumps(self.history), **self.metrics}
        if metric not in self.metrics:
            stand_in = self.metrics.get(periodic_key(metric), PENALTY if mode == "min" else -PENALTY)
            out[metric], out["tune_only"] = stand_in, metric
        return out

    @classmethod
    def from_tune(cls, result: dict[str, Any]) -> TrialResult:
        """The record inside a Tune result dict (Tune's own keys are ignored, the penalty dropped)."""
        metrics = {k: float(v) for k, v in result.items()
                   if k.startswith(SCORE_PREFIXES) and isinstance(v, (int, float))}
        metrics.pop(result.get("tune_only"), None)
        if result.get("diverged"):  # whatever a diverged trial carries as a score is a penalty
            metrics = {k: v for k, v in metrics.items() if k.startswith("perf/")}
        history = json.loads(result.get("history", "[]"))
        return cls(step=int(result.get("step", 0)), final=bool(result.get("final")),
                   diverged=bool(result.get("diverged")), history=[(int(s), m) for s, m in history],
                   metrics=metrics)

    @classmethod
    def from_store(cls, status: str, diverged: bool, pruned: bool, metrics: dict[str, float]) -> TrialResult:
        """A finished MLflow run: final unless it failed, was killed or the scheduler stopped it early."""
        return cls(final=status == "FINISHED" and not pruned, diverged=bool(diverged), metrics=dict(metrics))

    def finite_metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.metrics.items() if math.isfinite(v)}


def periodic_key(key: str) -> str:
    """The periodic twin of a final score key: eval/fid → periodic/fid."""
    return PERIODIC_PREFIX + key.removeprefix(FINAL_PREFIX)


def counts(result: TrialResult) -> bool:
    """Whether a trial's scores enter comparisons, rankings and the choice of a best config:
    it trained its whole budget (not failed, killed or pruned) and did not diverge."""
    return result.final and not result.diverged


def run_name(variant: str, preset: str, seed: int, trial_id: str | None = None) -> str:
    """`{variant}__{preset}__{seed}`; search trials add the trial id (their configs differ)."""
    name = f"{variant}__{preset}__{seed}"
    return f"{name}__{trial_id}" if preset == "search" and trial_id else name
