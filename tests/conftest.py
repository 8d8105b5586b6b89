"""Shared fixtures. Tests read real MNIST from BENCH_DATA_DIR (set by .ci/run), else ../shared."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("BENCH_DATA_DIR", str(REPO.parent / "shared" / "data" / "mnist"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# One thread: Ray trials of the end-to-end tests run beside the test process on 2 cores, and a
# 2-thread pool makes every small op wait for a descheduled worker (score at N=300: 8 s vs 0.3 s).
torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).parent))  # tests/e2e.py helpers


@pytest.fixture(scope="session")
def mnist():
    from bench.data import load_mnist

    return load_mnist()


@pytest.fixture(scope="session")
def evaluator():
    """The shipped, frozen evaluator (sha256-checked)."""
    from bench.evaluator import load

    return load()


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    """A per-session real-features cache, so tests never read or fill the user's ~/.cache."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture(scope="session")
def real_test_features(evaluator, mnist, feature_cache):
    """(10000, 128) float64 evaluator features of the real test set: the FID/KID reference."""
    from bench.metrics import real_features

    return real_features(evaluator, mnist.test_images, cache_dir=feature_cache)
