"""Variants from outside the repository: by import path (`--variants pkg.module:Class`) and by the
`gan_bench.variants` entry-point group of an installed package, each made in a temp dir here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from bench import registry
from bench.errors import BenchError

from e2e import TINY, driver, trial_runs

PACKAGE = {
    "__init__.py": "",
    "models.py": textwrap.dedent('''
        """A user's GAN, written against the public API only."""
        from dataclasses import dataclass

        from bench.recipe import Loss, Recipe, RecipeConfig


        @dataclass
        class HingeConfig(RecipeConfig):
            loss: Loss = "hinge"


        class HingeCGAN(Recipe):
            name = "my-hinge-cgan"
            summary = "a cGAN with the hinge loss, from outside the repository"
            Config = HingeConfig


        class NotAVariant:
            name = "nope"
        '''),
}


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package `mygans` on sys.path (and PYTHONPATH for subprocesses); the registry forgets it after."""
    root = tmp_path / "site"
    (root / "mygans").mkdir(parents=True)
    for name, text in PACKAGE.items():
        (root / "mygans" / name).write_text(text)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return root


def test_a_variant_by_import_path(user_package):
    cls = registry.get("mygans.models:HingeCGAN")
    assert cls.name == "my-hinge-cgan" and cls.make_config().loss == "hinge"
    assert registry.parse_list("mygans.models:HingeCGAN,cgan") == ["mygans.models:HingeCGAN", "cgan"]
    assert registry.source_dir("mygans.models:HingeCGAN") == user_package / "mygans"


@pytest.mark.parametrize(("spec", "message"), [
    ("mygans.models:NotAVariant", "not a subclass of bench.variant.Variant"),
    ("mygans.models:Missing", "has no 'Missing'"),
    ("mygans.nowhere:HingeCGAN", "cannot import 'mygans.nowhere'"),
])
def test_a_bad_import_path_is_named(user_package, spec, message):
    with pytest.raises(BenchError, match=message):
        registry.get(spec)


def _installed_plugin(root, entry: str) -> None:
    """What `pip install` leaves for a package with an entry point: a .dist-info folder on sys.path."""
    info = root / "mygans-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mygans\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[gan_bench.variants]\n{entry}\n")


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=300)


def test_an_installed_entry_point_registers_its_variant(user_package):
    _installed_plugin(user_package, "my-hinge-cgan = mygans.models:HingeCGAN")
    listed = _bench("list")
    assert listed.returncode == 0 and "my-hinge-cgan" in listed.stdout
    assert "a cGAN with the hinge loss" in listed.stdout


def test_a_broken_entry_point_gets_one_line(user_package):
    _installed_plugin(user_package, "nope = mygans.models:NotAVariant")
    listed = _bench("list")
    assert listed.returncode == 2
    assert listed.stderr.strip().splitlines() == [
        "error: entry point 'nope' (mygans.models:NotAVariant) of mygans is <class 'mygans.models.NotAVariant'>, "
        "not a subclass of bench.variant.Variant; see variants/cgan.py for the shape of one"]


@pytest.mark.slow
def test_bench_run_trains_an_outside_variant_beside_a_registered_one(tmp_path, ray_cluster, user_package):
    # The driver joins the shared Ray as a new job: the workers never had `mygans` on their path,
    # so this passes only if bench ships the package to them (Ray's py_modules), as on a cluster.
    out = tmp_path / "exp"
    args = ["--variants", "mygans.models:HingeCGAN,cgan", "--preset", "smoke", *TINY, "--set", "cas=false",
            "--output", str(out)]
    with driver(args, {"RAY_ADDRESS": ray_cluster}) as proc:
        said = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, said
    runs = {r.data.tags["variant"]: r for r in trial_runs(out)}
    assert set(runs) == {"mygans.models:HingeCGAN", "cgan"}
    assert all(r.info.status == "FINISHED" and "eval/fid" in r.data.metrics for r in runs.values())
    assert runs["mygans.models:HingeCGAN"].data.params["loss"] == "hinge"
    assert "mygans.models:HingeCGAN" in (out / "report.md").read_text()
    # A fresh process that knows the variant only by its name in the store (the package on its path).
    sampled = _bench("sample", runs["mygans.models:HingeCGAN"].info.run_id, "--output", str(out), "--n", "20",
                     "--out", str(tmp_path / "s.npz"))
    assert sampled.returncode == 0, sampled.stderr
    assert (tmp_path / "s.npz").is_file()
