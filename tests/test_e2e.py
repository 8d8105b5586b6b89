"""`bench run` end to end with Ray and MLflow, then the report, `bench sample` and `bench evaluate`."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main

from e2e import TINY, all_runs, free_port, loss_steps, store, trial_runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory, ray_cluster):
    out = tmp_path_factory.mktemp("e2e") / "exp"
    assert main(["run", "--variants", "cgan,acgan", "--seeds", "2", "--output", str(out), *TINY]) == 0
    return out


def test_every_trial_is_one_finished_run_with_provenance(finished):
    runs = trial_runs(finished)
    assert sorted(r.info.run_name for r in runs) == [
        "acgan__smoke__0", "acgan__smoke__1", "cgan__smoke__0", "cgan__smoke__1"]
    for r in runs:
        assert r.info.status == "FINISHED"
        tags, params, metrics = r.data.tags, r.data.params, r.data.metrics
        assert len(tags["commit"]) >= 7 and len(tags["evaluator_sha256"]) == 64
        assert params["steps"] == "40" and params["final_n"] == "400"
        assert math.isfinite(metrics["eval/fid"]) and 0 <= metrics["eval/label_accuracy"] <= 1
        assert metrics["perf/img_per_s"] > 0
        assert {a.path for a in store(finished).list_artifacts(r.info.run_id)} >= {"grid.png", "config.json"}


def test_concurrent_trials_lose_and_duplicate_no_metric(finished):
    for r in trial_runs(finished):
        assert loss_steps(finished, r.info.run_id) == list(range(1, 41))


def test_periodic_and_final_scores_have_their_own_keys(finished):
    c = store(finished)
    for r in trial_runs(finished):
        assert [m.step for m in c.get_metric_history(r.info.run_id, "periodic/fid")] == [20]  # eval_n = 200
        assert [m.step for m in c.get_metric_history(r.info.run_id, "eval/fid")] == [40]  # final_n = 400
        for key in ("eval/precision", "eval/recall", "eval/density", "eval/coverage", "eval/memorization",
                    "eval/intra_fid", "eval/cas"):
            assert math.isfinite(r.data.metrics[key]), key
    report = (finished / "report.md").read_text()
    assert "## Fidelity, diversity and memorization" in report and "real data (N = 400)" in report


def test_no_run_left_running(finished):
    assert {r.info.status for r in all_runs(finished)} == {"FINISHED"}


def test_report_lists_every_variant_and_trial(finished):
    report = (finished / "report.md").read_text()
    for name in ("cgan__smoke__0", "acgan__smoke__1", "bench run --variants cgan,acgan"):
        assert name in report
    csv = pd.read_csv(finished / "results.csv")
    assert len(csv) == 4


def test_report_regenerates_from_the_store_alone(finished, tmp_path):
    uri = f"sqlite:///{finished.resolve() / 'mlflow.db'}"
    assert main(["report", "--tracking-uri", uri, "--experiment", "exp", "--output", str(tmp_path)]) == 0
    cols = ["run_name", "eval/fid", "eval/label_accuracy", "eval/kid"]
    a = pd.read_csv(finished / "results.csv")[cols].sort_values("run_name").reset_index(drop=True)
    b = pd.read_csv(tmp_path / "results.csv")[cols].sort_values("run_name").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_sample_and_evaluate_reproduce_the_reported_numbers(finished, tmp_path, capsys):
    run = next(r for r in trial_runs(finished) if r.info.run_name == "cgan__smoke__1")
    path = tmp_path / "s.npz"
    assert main(["sample", run.info.run_id, "--output", str(finished), "--n", "400", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(path), "--json", "--seed", "1"]) == 0
    scores = json.loads(capsys.readouterr().out)
    for key in ("eval/fid", "eval/kid", "eval/label_accuracy", "eval/classifier_score", "eval/precision",
                "eval/recall", "eval/density", "eval/coverage", "eval/memorization", "eval/intra_fid", "eval/cas"):
        assert scores[key] == pytest.approx(run.data.metrics[key], rel=1e-4, abs=1e-6), key


def test_sample_needs_only_mlflow_once_the_checkpoints_are_gone(finished, tmp_path):
    import numpy as np

    run = next(r for r in trial_runs(finished) if r.info.run_name == "acgan__smoke__0")
    with_checkpoint, without = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["sample", run.info.run_id, "--output", str(finished), "--n", "50", "--out", str(with_checkpoint)]) == 0
    copy = tmp_path / "exp"
    shutil.copytree(finished, copy, ignore=shutil.ignore_patterns("ray"))  # no Tune storage at all
    assert main(["sample", run.info.run_id, "--output", str(copy), "--n", "50", "--out", str(without)]) == 0
    a, b = np.load(with_checkpoint), np.load(without)
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["labels"], b["labels"])


def test_mlflow_shows_model_training_runs_with_params_inputs_and_descriptions(finished):
    c = store(finished)
    exp = c.get_experiment_by_name(json.loads((finished / "experiment.json").read_text())["experiment"])
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the runs table, not GenAI traces
    for r in trial_runs(finished):
        assert r.data.params["variant"] == r.data.tags["variant"] and r.data.params["preset"] == "smoke"
        note = r.data.tags["mlflow.note.content"]
        assert note.startswith(f"**{r.data.tags['variant']}**") and "final: eval/fid" in note
        inputs = {d.dataset.name: {t.key: t.value for t in d.tags} for d in r.inputs.dataset_inputs}
        assert inputs["mnist-train[0:60000]"]["mlflow.data.context"] == "training"
        assert inputs["mnist-t10k[0:10000]"] == {"mlflow.data.context": "evaluation", "split": "test"}
    [seeds] = [r for r in all_runs(finished) if r.data.tags.get("bench.kind") == "parent"
               and r.data.tags["phase"] == "seeds"]
    assert seeds.data.tags["best_variant"] in ("cgan", "acgan") and seeds.data.tags["n_seeds"] == "2"
    assert seeds.data.metrics["floor/eval/fid"] > 0
    assert {a.path for a in c.list_artifacts(seeds.info.run_id)} >= {"report.md", "results.csv", "report_assets"}


def test_logged_generator_loads_and_draws_the_reported_digits(finished, evaluator):
    import mlflow.pyfunc
    import torch

    from bench.evaluator import to_input
    from bench.metrics import LabelAccuracy

    for r in trial_runs(finished)[:2]:
        model = mlflow.pyfunc.load_model(r.data.tags["bench.model_uri"])
        n, seed = int(r.data.params["final_n"]), int(r.data.tags["seed"])
        labels = torch.arange(n) % 10
        images = torch.from_numpy(model.predict(pd.DataFrame({"label": labels.numpy()}), params={"seed": seed}))
        with torch.no_grad():
            logits = evaluator(to_input(images))
        acc = LabelAccuracy()
        acc.update(logits, labels)
        assert acc.compute()[0].item() == pytest.approx(r.data.metrics["eval/label_accuracy"], abs=0.01)


def test_the_mlflow_ui_in_a_real_browser(finished, tmp_path):
    """`bench ui` as a user meets it, in headless Chromium: the runs table, the compare page, a run."""
    from playwright.sync_api import sync_playwright

    browser_path = shutil.which("chromium")
    if browser_path is None:
        if os.environ.get("CI"):
            raise AssertionError("no chromium on PATH: .ci/run installs Debian's chromium")
        pytest.skip("needs Debian's chromium (apt-get install chromium); Playwright cannot download one here")
    runs = sorted(trial_runs(finished), key=lambda r: r.data.metrics["eval/fid"])
    server_log = open(tmp_path / "server.log", "w")  # closed with the server, below
    ui = [sys.executable, "-m", "bench", "ui", "--output", str(finished), "--port", str(free_port())]
    proc = subprocess.Popen(ui, stdout=subprocess.PIPE, stderr=server_log, text=True, start_new_session=True)
    link = proc.stdout.readline().split()[2]  # "MLflow UI: <link>  (Ctrl-C stops it)"
    base, experiment_id = link.split("/#/")[0], runs[0].info.experiment_id
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        failed = []
        page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 500 else None)

        def visit(url):  # a full load: a hash change alone leaves the single-page app's last view state
            page.goto("about:blank")
            page.goto(url)

        try:
            visit(link)
            for r in runs:
                page.get_by_text(r.info.run_name, exact=True).wait_for(timeout=60_000)
            table = page.inner_text("body")
            assert "eval/fid" in table and "eval/label_accuracy" in table and "generator" in table
            for r in runs:  # the UI prints a metric's full repr
                for key in ("eval/fid", "eval/label_accuracy"):
                    assert repr(r.data.metrics[key]) in table, (r.info.run_name, key)

            ids = ",".join(f'"{r.info.run_id}"' for r in runs)
            visit(f'{base}/#/compare-runs?runs=[{ids}]&experiments=["{experiment_id}"]')
            page.get_by_text(f"Comparing {len(runs)} Runs from 1 Experiment").wait_for(timeout=60_000)
            page.get_by_text("Run details", exact=True).wait_for(timeout=60_000)
            compare = page.inner_text("body")
            for name in ("variant", "lr_g", "aux_weight", "seed"):
                assert f"\n{name}\t" in compare, name

            run = runs[0]
            visit(f"{base}/#/experiments/{experiment_id}/runs/{run.info.run_id}/artifacts?workflowType=machine_learning")
            page.get_by_text("grid.png", exact=True).first.click(timeout=60_000)
            # The 284 × 284 sample grid, decoded and shown (the preview loads it as a blob).
            page.wait_for_function("() => [...document.images].some(i => i.naturalWidth === 284)", timeout=60_000)
            visit(f"{base}/#/experiments/{experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning")
            page.get_by_text("final: eval/fid", exact=False).first.wait_for(timeout=60_000)  # its description
            visit(f"{base}/#/experiments/{experiment_id}/models?workflowType=machine_learning")
            page.get_by_text(run.info.run_name, exact=True).wait_for(timeout=60_000)  # as a model's source run
            assert page.inner_text("body").count("\ngenerator\n") == len(runs)  # one logged model per trial
        except Exception:
            shot = tmp_path / "mlflow-ui-failure.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"screenshot of the failing page: {shot}; server log: {tmp_path / 'server.log'}; "
                  f"failed requests: {failed}")
            raise
        finally:
            browser.close()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            server_log.close()
