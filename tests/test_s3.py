"""--storage s3://… through Ray's pyarrow filesystem, against a local S3-compatible server (moto's
standalone server on 127.0.0.1): checkpoints land in the bucket, the driver reads the final one back
for MLflow, and `bench sample` works without it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pyarrow import fs

from bench.cli import main

from cluster import wait_for_port
from e2e import TINY, free_port, store, trial_runs

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]  # starts a Ray of its own

# The variables a user sets on every node (Ray's workers read them, not the driver alone).
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server with one bucket, `bench`; yields its endpoint URL."""
    server = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    if server is None:
        pytest.fail("moto_server missing: pip install -e '.[dev]' installs moto[server]")
    port = free_port()
    log = open(tmp_path_factory.mktemp("s3") / "moto.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}"
        bucket = fs.S3FileSystem(access_key="testing", secret_key="testing", region="us-east-1",
                                 endpoint_override=url, scheme="http", allow_bucket_creation=True)
        bucket.create_dir("bench")
        yield url, bucket
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_storage_in_s3(s3, tmp_path):
    url, bucket = s3
    out = tmp_path / "exp"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | S3_ENV | {"AWS_ENDPOINT_URL": url}
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--variants", "cgan", "--storage", "s3://bench/exp",
                           "--output", str(out), *TINY], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    [run] = trial_runs(out)
    assert run.info.status == "FINISHED" and np.isfinite(run.data.metrics["eval/fid"])
    checkpoint = run.data.tags["bench.checkpoint"]
    assert checkpoint.startswith("s3://bench/exp/seeds/")
    stored = [f.path for f in bucket.get_file_info(fs.FileSelector("bench/exp/seeds", recursive=True))]
    assert f"{checkpoint.removeprefix('s3://')}/state.pt" in stored
    assert not (out / "ray").exists()  # nothing of Tune's on local disk
    # The final checkpoint was read back from the bucket: grid, config and model are in MLflow.
    assert {a.path for a in store(out).list_artifacts(run.info.run_id)} >= {"grid.png", "config.json"}
    assert main(["sample", run.info.run_id, "--output", str(out), "--n", "20", "--out", str(tmp_path / "s.npz")]) == 0
