"""Shared fixtures. Tests read real MNIST from BENCH_DATA_DIR (set by .ci/run), else ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("BENCH_DATA_DIR", str(REPO.parent / "shared" / "data" / "mnist"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def mnist():
    from bench.data import load_mnist

    return load_mnist()
