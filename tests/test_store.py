"""The reading side works without Ray: a store written by bench.tracking, reported with Ray blocked."""

import json
import subprocess
import sys

from bench.records import TrialResult, run_name
from bench.store import default_uri
from bench.tracking import TrialLog, ensure_experiment, start_parent

BLOCK_RAY = "import sys; sys.modules['ray'] = None; "
META = {"command": "bench run …", "commit": "abc", "evaluator_sha256": "f" * 64, "n_samples": 400,
        "fid_floor": 9.0, "fid_floor_n": 400, "hardware": "cpu", "experiment": "exp", "tracking_uri": "…",
        "primary_metric": "eval/fid", "higher_is_better": {"eval/fid": False, "eval/label_accuracy": True}}


def _python(code: str) -> subprocess.CompletedProcess:
    # generous: a fresh interpreter imports torch and MLflow, minutes on a slow CI machine
    return subprocess.run([sys.executable, "-c", BLOCK_RAY + code], capture_output=True, text=True, timeout=1800)


def _write_store(tmp_path) -> str:
    uri = default_uri(tmp_path)
    exp_id = ensure_experiment(uri, "exp", tmp_path / "mlartifacts")
    parent = start_parent(uri, exp_id, "exp:seeds", {"bench.session": "s1", "phase": "seeds",
                                                     "bench.meta": json.dumps(META)})
    log = TrialLog(uri, exp_id, parent, "s1")
    outcomes = [TrialResult(step=40, final=True, history=[(40, {"loss/d": 0.5})],
                            metrics={"eval/fid": 20.0 + seed, "eval/label_accuracy": 0.9}) for seed in range(2)]
    outcomes.append(TrialResult(step=15, final=True, diverged=True, metrics={"perf/img_per_s": 100.0}))
    for seed, result in enumerate(outcomes):
        tags = {"variant": "cgan", "preset": "smoke", "seed": str(seed), "phase": "seeds",
                "bench.config": json.dumps({"seed": seed})}
        log.open(f"t{seed}", run_name("cgan", "smoke", seed), {"seed": seed}, tags)
        log.log(f"t{seed}", result)
        log.complete(f"t{seed}", None, None, final=result.final)
    return uri


def test_recipes_tracking_and_the_report_from_the_store_work_with_ray_blocked(tmp_path):
    uri = _write_store(tmp_path)
    out = tmp_path / "report"
    done = _python("import bench.experiment, bench.store, bench.tracking; from bench import registry; "
                   "print(registry.names()); from bench.cli import main; "
                   f"sys.exit(main(['report', '--tracking-uri', {uri!r}, '--experiment', 'exp', "
                   f"'--output', {str(out)!r}]))")
    assert done.returncode == 0, done.stderr
    assert "cgan" in done.stdout  # every recipe imported
    results = json.loads((out / "results.json").read_text())
    [cgan] = results["variants"]
    assert (cgan["n"], cgan["n_diverged"]) == (2, 1)  # the diverged run is counted, not averaged
    assert cgan["metrics"]["eval/fid"]["mean"] == 20.5
    assert "cgan__smoke__2" in (out / "report.md").read_text()
