"""`bench run` on a real 3-node Ray cluster (a head and two 1-CPU workers, all on this machine) with
an MLflow server and a shared local folder as Tune storage: trials spread over the nodes, each
logged once to the server; report and samples come from the server alone; a lost node's trial
goes on elsewhere from its checkpoint; a node that cannot see the storage is named."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow.artifacts
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.generator_model import load_variant

from cluster import mlflow_server, ray_cluster
from e2e import TINY, driver

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # beside the other Ray tests, never at once


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def cluster_run(out: Path, shared: Path, address: str, server: str, *extra: str) -> list[str]:
    return ["--variants", "cgan,lsgan", "--address", address, "--tracking-uri", server, "--storage", str(shared),
            "--output", str(out), *extra, *TINY]


def runs_of(server: str, experiment: str) -> list:
    c = MlflowClient(server)
    exp = c.get_experiment_by_name(experiment)
    return c.search_runs([exp.experiment_id], filter_string="tags.`bench.kind` = 'trial'")


def loss_steps(server: str, run) -> list[int]:
    return sorted(m.step for m in MlflowClient(server).get_metric_history(run.info.run_id, "loss/d"))


@pytest.fixture(scope="module")
def spread(tmp_path_factory, server):
    root = tmp_path_factory.mktemp("cluster")
    out, shared = root / "spread", root / "shared"
    with ray_cluster(workers=2) as cluster:
        done = subprocess.run([sys.executable, "-m", "bench", "run", *cluster_run(out, shared, cluster.address,
                                                                                  server)],
                              capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    return root, out, shared


def test_trials_spread_over_nodes_and_each_is_logged_once_to_the_server(spread, server):
    _, _, shared = spread
    runs = runs_of(server, "spread")
    assert sorted(r.info.run_name for r in runs) == ["cgan__smoke__0", "lsgan__smoke__0"]
    assert len({r.data.tags["bench.node"] for r in runs}) == 2  # one trial on each 1-CPU worker
    c = MlflowClient(server)
    for r in runs:
        assert r.info.status == "FINISHED" and np.isfinite(r.data.metrics["eval/fid"])
        assert loss_steps(server, r) == list(range(1, 41))
        assert r.data.tags["bench.checkpoint"].startswith(str(shared))  # Tune wrote to the shared folder
        assert {a.path for a in c.list_artifacts(r.info.run_id)} >= {"grid.png", "config.json"}
        assert "bench.model_uri" in r.data.tags
    assert not list(shared.glob(".bench-storage-check-*"))  # the marker of the storage check is gone


def test_report_and_samples_come_from_the_server_alone(spread, server, tmp_path):
    root, _, shared = spread
    shared.rename(root / "gone")  # no Tune storage and no experiment folder from here on
    try:
        report = tmp_path / "report"
        assert main(["report", "--tracking-uri", server, "--experiment", "spread", "--output", str(report)]) == 0
        assert sorted(pd.read_csv(report / "results.csv")["run_name"]) == ["cgan__smoke__0", "lsgan__smoke__0"]
        run = next(r for r in runs_of(server, "spread") if r.info.run_name == "cgan__smoke__0")
        samples = tmp_path / "s.npz"
        assert main(["sample", run.info.run_id, "--tracking-uri", server, "--experiment", "spread", "--n", "50",
                     "--out", str(samples)]) == 0
        assert np.load(samples)["images"].shape[0] == 50
        # The logged model holds the whole final checkpoint: generator, discriminator (loaded strictly), optimizers.
        trained = load_variant(server, run.data.tags["bench.model_uri"])
        assert trained.cfg.steps == 40 and sum(p.numel() for p in trained.d.parameters()) > 0
        config = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="config.json",
                                                     dst_path=str(tmp_path), tracking_uri=server)
        assert json.loads(Path(config).read_text())["steps"] == 40
    finally:
        (root / "gone").rename(shared)


def test_a_lost_node_s_trial_goes_on_elsewhere_from_its_checkpoint(tmp_path, server):
    out, shared = tmp_path / "lost", tmp_path / "shared"
    # Tune may place the retry on the lost node before the head has declared it dead: retries to spare.
    args = cluster_run(out, shared, "", server, "--max-failures", "3")
    with ray_cluster(workers=2) as cluster:
        args[args.index("--address") + 1] = cluster.address
        with driver(args, {"BENCH_FAULT_SLOW": "0.3"}) as proc:
            # Until the driver has taken both step-20 results (a checkpoint file in the storage is not yet one
            # Tune restores from: it registers it while it processes the result, when bench prints this line).
            seen = ""
            while not all(f"[bench] {v}__smoke__0 step 20 " in seen for v in ("cgan", "lsgan")):
                line = proc.stdout.readline()
                assert line, seen  # the driver ended early
                seen += line
            time.sleep(1)
            [victim, *_] = [i for i in cluster.trial_nodes() if i > 0]
            cluster.lose(victim)
            said = seen + proc.communicate(timeout=1800)[0]
    assert proc.returncode == 0, said
    runs = runs_of(server, "lost")
    assert sorted(r.info.run_name for r in runs) == ["cgan__smoke__0", "lsgan__smoke__0"]
    moved = [r for r in runs if len(r.data.tags["bench.nodes"].split(",")) == 2]  # the lost node's trial
    assert len(moved) == 1, ([r.data.tags for r in runs], said)
    [moved] = moved
    for r in runs:
        assert r.info.status == "FINISHED" and np.isfinite(r.data.metrics["eval/fid"])
        assert loss_steps(server, r) == list(range(1, 41))  # steps after the checkpoint re-run, logged once
    # Restored from its step-20 checkpoint, not started over: it reported step 20 once.
    assert said.count(f"[bench] {moved.info.run_name} step 20 ") == 1, said


def test_a_node_that_cannot_see_the_storage_is_named(tmp_path, server):
    if os.geteuid() != 0:
        pytest.skip("hiding the folder from one node needs a mount namespace (root)")
    out, shared = tmp_path / "blind", tmp_path / "shared"
    shared.mkdir()
    with ray_cluster(workers=1, hide=shared) as cluster:
        done = subprocess.run([sys.executable, "-m", "bench", "run", *cluster_run(out, shared, cluster.address,
                                                                                  server)],
                              capture_output=True, text=True, timeout=900)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: --storage {shared} is not shared: Ray node ") and str(shared) in line


def test_quarter_gpus_pack_four_trials_on_one_gpu_node(tmp_path, server):
    """A node advertising one GPU (and no CUDA device: this machine has none) takes four 0.25-GPU
    trials at once; each trains on the CPU and says so once."""
    out, shared = tmp_path / "packed", tmp_path / "shared"
    with ray_cluster(workers=1, worker_args=("--num-cpus", "4", "--num-gpus", "1")) as cluster:
        done = subprocess.run([sys.executable, "-m", "bench", "run", "--variants", "cgan", "--seeds", "4",
                               "--gpus-per-trial", "0.25", "--address", cluster.address, "--tracking-uri", server,
                               "--storage", str(shared), "--output", str(out), *TINY],
                              capture_output=True, text=True, timeout=1800,
                              env=os.environ | {"RAY_DEDUP_LOGS": "0"})  # four lines that differ in digits only
    assert done.returncode == 0, done.stdout + done.stderr
    runs = runs_of(server, "packed")
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    assert max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs)  # all four at once
    for r in runs:
        said = f"[bench] {r.info.run_name}: granted 0.25 GPU but no CUDA device is visible; training on CPU"
        assert done.stdout.count(said) == 1, done.stdout
