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


@pytest.fixture(scope="session", autouse=True)
def user_cache_home(tmp_path_factory):
    """One user cache (XDG_CACHE_HOME) per test session, set before any `bench` command or Ray starts:
    the real side of the scores is computed once for every test, command and Ray trial of the session,
    and the developer's ~/.cache is never read or filled."""
    home, before = tmp_path_factory.mktemp("xdg"), os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(scope="session")
def feature_cache(user_cache_home):
    """Where `bench` caches real-data features: data.cache_root() / "features" of the session's cache."""
    return user_cache_home / "gan-bench" / "features"


@pytest.fixture(scope="session")
def real_test_features(evaluator, mnist, feature_cache):
    """(10000, 128) float64 evaluator features of the real test set: the FID/KID reference."""
    from bench.metrics import real_features

    return real_features(evaluator, mnist.test_images, cache_dir=feature_cache)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for every end-to-end test; yields its address. `bench run` in this process
    uses it as it is and a driver in a subprocess joins it through RAY_ADDRESS: a Ray start costs
    minutes on a slow 2-core machine (and can miss Ray's fixed startup deadline), so start it once."""
    import ray

    from bench import tuner
    from bench.errors import BenchError

    try:
        tuner.init_ray(None)
    except BenchError as e:  # a machine too slow for Ray's fixed startup deadlines, not a bench bug
        if os.environ.get("CI"):  # but CI must run them: a green CI means the Ray path was exercised
            raise
        pytest.skip(f"Ray cannot start on this machine now: {e}")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    """Under pytest-xdist (`-n 2 --dist loadgroup`, as .ci/run runs) every test on the shared Ray
    goes to one worker, so one Ray starts, while the other worker takes the single-threaded rest."""
    for item in items:
        if "ray_cluster" in item.fixturenames:
            item.add_marker(pytest.mark.xdist_group("ray"))
