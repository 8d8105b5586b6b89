"""Fault injection for the fault-tolerance tests, switched on only by environment variables.

BENCH_FAULT_CRASH=<step>  raise once per trial when training reaches <step>
BENCH_FAULT_NAN=<step>    turn the losses into NaN at <step> (every attempt)
BENCH_FAULT_SLOW=<secs>   sleep this long per step (gives a test time to kill the driver)
The once-per-trial memory is a marker file in BENCH_FAULT_DIR, so a retried trial goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class InjectedCrash(RuntimeError):
    pass


def before_step(step: int, trial_key: str) -> None:
    slow = os.environ.get("BENCH_FAULT_SLOW")
    if slow:
        time.sleep(float(slow))
    crash = os.environ.get("BENCH_FAULT_CRASH")
    if crash and step == int(crash):
        marker = Path(os.environ.get("BENCH_FAULT_DIR", "/tmp")) / f"crashed-{trial_key}"
        if not marker.exists():
            marker.touch()
            raise InjectedCrash(f"injected crash at step {step}")


def poison(step: int) -> bool:
    nan = os.environ.get("BENCH_FAULT_NAN")
    return bool(nan) and step >= int(nan)
