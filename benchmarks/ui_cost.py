"""What the MLflow UI costs on an experiment folder: processes, summed RSS and seconds until the
server first answers, for MLflow's defaults (`mlflow ui`) and for `bench ui`. The numbers in README.

    python benchmarks/ui_cost.py --output DIR
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request


def measure(cmd: list[str], port: int, env: dict[str, str]) -> tuple[float, int, float]:
    """(seconds to the first 200 from /health, processes in its tree, their summed RSS in MB once settled)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        answered = time.monotonic() - start
        time.sleep(10)  # workers and job consumers start after the first answer
        group = _tree(proc.pid)
        rss = sum(_rss_pages(pid) for pid in group) * os.sysconf("SC_PAGE_SIZE") / 2**20
        return answered, len(group), rss
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        time.sleep(2)


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _tree(root: int) -> list[int]:
    """root and all its descendants (whatever process group or session they moved to)."""
    parent = {}
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += [child for child, p in parent.items() if p == pid]
    return tree


def _rss_pages(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1])
    except OSError:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="an experiment folder written by bench run")
    args = parser.parse_args()
    uri = f"sqlite:///{os.path.abspath(args.output)}/mlflow.db"
    rows = {"mlflow ui (defaults)": [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                                     "--port", "5091"],
            "bench ui": [sys.executable, "-m", "bench", "ui", "--output", args.output, "--port", "5092"]}
    for (name, cmd), port in zip(rows.items(), (5091, 5092), strict=True):
        answered, n, rss = measure(cmd, port, dict(os.environ))
        print(f"| {name} | {n} processes | {rss:.0f} MB RSS | first answer after {answered:.1f} s |")


if __name__ == "__main__":
    main()
