"""Bad input: one `error: …` line on stderr saying what and how to fix, exit 2, nothing written."""

import gzip

import numpy as np
import pytest

from bench.cli import main
from bench.errors import BenchError


def _err(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("argv, needle", [
    (["run", "--variants", "cgann"], "unknown variant 'cgann' (did you mean 'cgan'?)"),
    (["run", "--variants", "cgan", "--preset", "smok"], "--preset 'smok' is not one of smoke, standard, search "
                                                        "(did you mean 'smoke'?)"),
    (["run", "--variants", "cgan", "--set", "lr_gg=1e-3"], "did you mean 'lr_g'"),
    (["run", "--variants", "cgan", "--set", "lr_g=fast"], "expected float"),
    (["run", "--variants", "cgan", "--set", "lr_g=0"], "lr_g must be > 0"),
    (["run", "--variants", "cgan", "--set", "final_n=1"], "final_n must be >= 2"),
    (["run", "--variants", "cgan", "--seeds", "0"], "--seeds must be in 1..10000, got 0"),
    (["run", "--variants", "cgan", "--set", "seed=3"], "--set seed: the seeds come from --seeds N"),
    (["run", "--variants", "cgan", "--seeds", "two"], "invalid int value"),
    (["run", "--variants", "cgan", "--search", "grid"], "--search 'grid' is not one of random, optuna"),
    (["run", "--variants", "cgan", "--address", "auto"], "pass --storage s3://"),
    (["run", "--variants", "cgan", "--address", "auto", "--storage", "s3://b/p"], "needs an MLflow server"),
    (["run", "--variants", "cgan", "--address", "127.0.0.1:1", "--storage", "s3://b/p",
      "--tracking-uri", "http://127.0.0.1:5000"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["run"], "name the variants"),
    (["run", "--resume"], "--resume needs --output"),
    (["sample", "abc", "--out", "x.npz"], "say which experiment"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments(capsys, argv, needle):
    assert needle in _err(capsys, argv)


def test_unreachable_tracking_server(capsys, tmp_path):
    from bench.tracking import ensure_experiment

    with pytest.raises(BenchError, match="cannot reach the MLflow server"):
        ensure_experiment("http://127.0.0.1:1", "x", None)


def test_unwritable_tracking_location(capsys, tmp_path):
    from bench.tracking import ensure_experiment

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BenchError, match="cannot open the MLflow store"):
        ensure_experiment(f"sqlite:///{blocker}/sub/mlflow.db", "x", None)


def test_resume_without_experiment(capsys, tmp_path):
    assert "nothing to resume" in _err(capsys, ["run", "--resume", "--output", str(tmp_path)])


def test_existing_output_is_never_overwritten(capsys, tmp_path):
    (tmp_path / "results.csv").write_text("precious")
    line = _err(capsys, ["run", "--variants", "cgan", "--output", str(tmp_path)])
    assert "--resume" in line and "new --output" in line
    assert (tmp_path / "results.csv").read_text() == "precious"


def test_unwritable_output(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot write to --output" in _err(capsys, ["run", "--variants", "cgan", "--output", str(blocker / "x")])


def test_missing_data_dir(capsys, tmp_path):
    line = _err(capsys, ["data", "verify", "--data-dir", str(tmp_path / "nope")])
    assert "nope" in line


def test_corrupted_data_file(capsys, tmp_path, monkeypatch):
    import os
    import shutil

    src = os.environ["BENCH_DATA_DIR"]
    for name in os.listdir(src):
        if name.endswith(".gz"):
            shutil.copy(os.path.join(src, name), tmp_path / name)
    raw = bytearray(gzip.decompress((tmp_path / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    raw[100] ^= 1
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    line = _err(capsys, ["evaluator", "check", "--data-dir", str(tmp_path)])
    assert "t10k-labels-idx1-ubyte" in line and "md5" in line


def test_offline_without_any_source(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_DATA_DIR")
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    line = _err(capsys, ["data", "fetch"])
    assert "BENCH_DATA_DIR" in line or "--data-dir" in line


def test_tampered_evaluator_weights(capsys, tmp_path):
    from bench import evaluator

    bad = tmp_path / "w.pt"
    data = bytearray(evaluator.WEIGHTS_PATH.read_bytes())
    data[-10] ^= 0xFF
    bad.write_bytes(bytes(data))
    assert "sha256" in _err(capsys, ["evaluator", "check", "--weights", str(bad)])


@pytest.mark.parametrize("content, needle", [
    ({"images": np.zeros((5, 28, 27), np.uint8)}, "28"),
    ({"images": np.zeros((5, 28, 28), np.int32)}, "dtype"),
    ({"images": np.zeros((5, 28, 28), np.uint8), "labels": np.full(5, 10)}, "label"),
    ({"images": np.zeros((1, 28, 28), np.uint8)}, "2"),
    ({"pixels": np.zeros((5, 28, 28), np.uint8)}, "images"),
])
def test_bad_samples_file(capsys, tmp_path, content, needle):
    path = tmp_path / "s.npz"
    np.savez(path, **content)
    assert needle in _err(capsys, ["evaluate", str(path)])


def test_list_shows_every_variant(capsys):
    from bench import registry

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in registry.names())


def test_run_options_are_generated_from_the_options_dataclass(capsys):
    from dataclasses import fields

    from bench.cli import build_parser, options_from
    from bench.options import Options

    argv = ["run", "--variants", "cgan,lsgan", "--set", "lr_g=1e-3", "--set", "embed=concat", "--seeds", "2",
            "--cpus-per-trial", "0.5", "--preset", "standard"]
    opts = options_from(build_parser().parse_args(argv), argv)
    assert (opts.variants, opts.sets) == (["cgan", "lsgan"], {"lr_g": "1e-3", "embed": "concat"})
    assert (opts.seeds, opts.cpus_per_trial, opts.output) == (2, 0.5, "runs/standard")
    assert options_from(build_parser().parse_args(["run"]), ["run"]) == Options(command="bench run")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    for f in fields(Options):
        if f.metadata.get("help"):
            assert (f.metadata["flag"] or "--" + f.name.replace("_", "-")) in text
