"""A real multi-node Ray cluster and an MLflow server on this machine, for the cluster tests.

Each `ray start --block` is one node (its own raylet, workers and agents) and stays the parent of
everything it starts, in its own session: stopping or losing a node ends exactly that process
tree, by pid, and never another Ray on the machine (`ray stop` would end every one).
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray  # noqa: F401  (for its bundled psutil, below)

from e2e import free_port

psutil = importlib.import_module("psutil")  # Ray's bundled copy: importing ray put it on sys.path

RAY = str(Path(sys.executable).with_name("ray"))
# The head's GCS declares a node dead after 3 missed 1 s health checks (default 5 × 3 s): the
# node-loss test then sees the trial restarted in seconds.
HEAD_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
# Processes every node runs whether or not it hosts a trial.
NODE_SERVICES = ("raylet", "gcs_server", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::IDLE")


def tree(proc: subprocess.Popen) -> list[psutil.Process]:
    """A node's processes: its `ray start` and every descendant (raylet, agents, workers)."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def end(procs: list[psutil.Process], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL whatever is left after `grace` (gcs_server ignores SIGTERM at times)."""
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace)


class Cluster:
    """A head without CPUs (trials run on the workers only) and `workers` nodes, of one CPU each unless
    `worker_args` (Ray's resource flags) say otherwise."""

    def __init__(self, workers: int = 2, hide: Path | None = None, worker_args: tuple[str, ...] = ("--num-cpus", "1")):
        # Short: Ray's unix sockets live under it (at most 107 characters).
        self.root = Path(tempfile.mkdtemp(prefix="bench-rc-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: list[subprocess.Popen] = []
        self.workers, self.hide, self.worker_args = workers, hide, list(worker_args)

    def _start(self, name: str, args: list[str], env: dict[str, str] | None = None, hide: bool = False) -> None:
        """One node. With `hide`, it runs in its own mount namespace with an empty tmpfs over
        self.hide: a node that does not see the folder the others share (needs root)."""
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 (the node holds it until it ends)
        cmd = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
               "--temp-dir", str(self.root / name), *args]
        if hide:
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs tmpfs "$0" && exec "$@"', str(self.hide), *cmd]
        self.nodes.append(subprocess.Popen(cmd, env=os.environ | (env or {}), stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True))
        log.close()

    def start(self) -> Cluster:
        self._start("head", ["--head", "--port", str(self.port), "--num-cpus", "0", "--include-dashboard", "false"],
                    HEAD_ENV)
        wait_for_port(self.port, self.nodes[0])
        for i in range(1, self.workers + 1):  # the last worker is the hidden one
            self._start(f"worker{i}", ["--address", self.address, *self.worker_args],
                        hide=self.hide is not None and i == self.workers)
        self.wait_for_nodes(self.workers + 1)
        return self

    def wait_for_nodes(self, n: int, timeout: float = 300) -> None:
        """Until n nodes are alive (a worker that has not registered yet would leave trials no CPU)."""
        code = (f"import ray, time; ray.init(address={self.address!r}, logging_level='ERROR')\n"
                f"while sum(x['Alive'] for x in ray.nodes()) < {n}: time.sleep(0.5)")
        subprocess.run([sys.executable, "-c", code], timeout=timeout, check=True, capture_output=True)

    def trial_nodes(self) -> list[int]:
        """Indices of the nodes that run a trial now (a worker process beyond the node's own services)."""
        return [i for i, proc in enumerate(self.nodes)
                if any(_name(p).startswith("ray::") and not _name(p).startswith(NODE_SERVICES) for p in tree(proc))]

    def lose(self, i: int) -> list[int]:
        """Node i dies as a machine would: its raylet and workers get SIGKILL. Returns their pids."""
        procs = tree(self.nodes[i])
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        return [p.pid for p in procs]

    def stop(self) -> None:
        for proc in reversed(self.nodes):  # workers first, the head last
            end(tree(proc))
            proc.wait()


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return ""


@contextmanager
def ray_cluster(workers: int = 2, hide: Path | None = None, **kwargs) -> Iterator[Cluster]:
    cluster = Cluster(workers, hide, **kwargs)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    end_at = time.monotonic() + timeout
    while time.monotonic() < end_at:
        if proc.poll() is not None:
            raise AssertionError(f"process {proc.args[:3]} ended with {proc.returncode} before port {port} opened")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing listens on port {port} after {timeout} s")


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with a sqlite backend and proxied artifacts (what a team runs),
    one worker and no job runner; yields its URL. Ends its own process group."""
    port = free_port()
    log = open(root / "mlflow-server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], env=os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, proc)
        end_at = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > end_at or proc.poll() is not None:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
