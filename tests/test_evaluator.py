"""The shipped evaluator: accurate, pinned by sha256, frozen; training is reproducible."""

from __future__ import annotations

import hashlib
import shutil

import pytest
import torch

from bench import evaluator as ev
from bench.data import Mnist
from bench.errors import BenchError


def test_shipped_weights_classify_real_test_set(evaluator, mnist):
    assert ev.accuracy(evaluator, mnist.test_images, mnist.test_labels) >= 0.993


def test_shipped_file_matches_pinned_sha256():
    assert hashlib.sha256(ev.WEIGHTS_PATH.read_bytes()).hexdigest() == ev.WEIGHTS_SHA256


def test_flipped_byte_is_refused_with_expected_and_actual_hash(tmp_path):
    copy = tmp_path / "evaluator.pt"
    shutil.copy(ev.WEIGHTS_PATH, copy)
    ev.load(copy)  # an intact copy loads
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(BenchError, match=f"{hashlib.sha256(data).hexdigest()}.*{ev.WEIGHTS_SHA256}") as err:
        ev.load(copy)
    assert "bench evaluator train" in str(err.value)


def test_missing_weights_are_a_bench_error(tmp_path):
    with pytest.raises(BenchError, match="not found"):
        ev.load(tmp_path / "none.pt")


def test_loaded_model_is_frozen_and_stays_in_eval_mode(mnist):
    model = ev.load()
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    model.train()  # e.g. a parent module switching to training mode
    assert not any(m.training for m in model.modules())
    x = ev.to_input(mnist.test_images[:64])
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # no dropout noise
    assert model.features(x).shape == (64, model.num_features)


def test_to_input_maps_pixels_to_unit_range():
    pixels = torch.tensor([0, 255, 51], dtype=torch.uint8).repeat(1, 28, 10)[:, :, :28]
    x = ev.to_input(pixels)
    assert x.shape == (1, 1, 28, 28) and x.min() == -1 and x.max() == 1
    assert torch.allclose(x[0, 0, 0, 2], torch.tensor(51 / 127.5 - 1))
    assert torch.equal(ev.to_input(x), x)
    with pytest.raises(ValueError, match="shape"):
        ev.to_input(torch.zeros(2, 3, 28, 28))


def test_training_is_reproducible_and_round_trips_through_save(mnist, tmp_path):
    tiny = Mnist(mnist.train_images[:512], mnist.train_labels[:512], mnist.test_images[:200], mnist.test_labels[:200])
    a, b, c = (ev.train(tiny, seed=s, epochs=1, threads=1, log=lambda _: None) for s in (3, 3, 4))
    assert ev.fingerprint(a) == ev.fingerprint(b) != ev.fingerprint(c)
    sha = ev.save(a, tmp_path / "w.pt")
    assert sha == ev.fingerprint(a)
    loaded = ev.load(tmp_path / "w.pt", expected_sha256=sha)
    x = ev.to_input(mnist.test_images[:32])
    with torch.no_grad():
        assert torch.equal(loaded(x), a(x))
    with pytest.raises(BenchError, match="does not match"):
        ev.load(tmp_path / "w.pt")  # not the pinned shipped weights
