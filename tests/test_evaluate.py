"""`bench evaluate` end to end (no Ray): every metric of issue #9 and its real-data floor in one JSON.

The samples are real training images, i.e. a generator that copies its training set: every fidelity
metric must look like real data, and memorization must be at its ceiling, far above the floor
(held-out real images)."""

from __future__ import annotations

import json

import pytest

from bench import data, metrics, npz
from bench.cli import main

TRAIN_N = 10_000  # training images in the memorization reference here (bench evaluate uses all 60k)


@pytest.fixture
def small_train(mnist, monkeypatch):
    """MNIST as bench evaluate loads it, with the first TRAIN_N training images: the 60k × 60k
    nearest-neighbour pass of the full reference costs ~25 s (minutes on a slow VM), and the memorization
    rule is the same at any size (the copied samples below lie inside these TRAIN_N)."""
    view = data.Mnist(mnist.train_images[:TRAIN_N], mnist.train_labels[:TRAIN_N], mnist.test_images,
                      mnist.test_labels)
    monkeypatch.setattr(data, "load_mnist", lambda *args, **kwargs: view)


def _evaluate(capsys, path, *flags) -> dict:
    capsys.readouterr()
    assert main(["evaluate", str(path), "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def test_copied_training_images_score_like_real_data_and_as_memorized(mnist, small_train, tmp_path, capsys):
    path = tmp_path / "copies.npz"
    npz.save_samples(path, mnist.train_images[:600], mnist.train_labels[:600], codes=mnist.train_labels[:600])
    out = _evaluate(capsys, path, "--floors")
    expected = set(metrics.HIGHER_IS_BETTER)
    assert expected <= out.keys() and {f"floor/{k}" for k in expected} <= out.keys()
    assert out["eval/memorization"] == 1.0  # each image is its own nearest training image, at distance 0
    assert out["floor/eval/memorization"] < 0.5
    assert out["eval/label_accuracy"] > 0.98 and out["eval/cas"] > 0.7  # chance is 0.1
    assert out["eval/code_accuracy"] >= out["eval/label_accuracy"]  # the identity is one of the matchings
    # The floor scores 600 other (seeded) training images as samples: the same kind of data, so every
    # metric but memorization must land near its floor; a wrong side or k would move it far away.
    for key, tolerance in {"precision": 0.1, "recall": 0.1, "density": 0.15, "coverage": 0.1, "cas": 0.1}.items():
        assert out[f"eval/{key}"] == pytest.approx(out[f"floor/eval/{key}"], abs=tolerance), key
    # At 60 images per class intra-FID's finite-N bias dominates: 16 to 25 for different real subsets.
    assert out["eval/intra_fid"] < 2 * out["floor/eval/intra_fid"]
    assert out["n"] == 600 and out["seed"] == 0


def test_unlabelled_samples_skip_the_label_metrics(mnist, small_train, tmp_path, capsys):
    path = tmp_path / "test.npz"
    npz.save_samples(path, mnist.test_images[:300], None)
    out = _evaluate(capsys, path, "--no-cas")
    assert "eval/fid" in out and "eval/memorization" in out and "eval/precision" in out
    assert not any(k.startswith(("eval/intra_fid", "eval/cas", "eval/label_accuracy")) for k in out)
    assert out["eval/memorization"] < 0.5


def test_floors_need_as_many_held_out_images_as_samples(mnist, tmp_path, capsys):
    path = tmp_path / "big.npz"
    npz.save_samples(path, mnist.train_images[:10001], None)
    assert main(["evaluate", str(path), "--floors"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--floors" in err[0] and "10000" in err[0]
