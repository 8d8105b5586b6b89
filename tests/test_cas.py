"""Classification Accuracy Score: real digits teach a good classifier, wrong labels teach nothing,
and the score is seeded without touching the caller's torch state."""

from __future__ import annotations

import pytest
import torch

from bench.cas import cas


def test_cas_is_seeded_and_leaves_the_caller_state_alone(mnist):
    images, labels = mnist.train_images[:600], mnist.train_labels[:600]
    test_images, test_labels = mnist.test_images[:1000], mnist.test_labels[:1000]
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    a = cas(images, labels, test_images, test_labels, seed=0, epochs=1, threads=2)
    assert torch.get_num_threads() == threads and torch.equal(torch.get_rng_state(), rng)
    assert not torch.are_deterministic_algorithms_enabled()
    assert cas(images, labels, test_images, test_labels, seed=0, epochs=1) == a
    assert cas(images, labels, test_images, test_labels, seed=1, epochs=1) != a
    with pytest.raises(ValueError, match="labels"):
        cas(images, labels[:5], test_images, test_labels)


def test_cas_of_shuffled_labels_is_chance(mnist):
    labels = mnist.train_labels[:2000][torch.randperm(2000, generator=torch.Generator().manual_seed(0))]
    got = cas(mnist.train_images[:2000], labels, mnist.test_images, mnist.test_labels, epochs=1)
    assert got < 0.2


@pytest.mark.slow
def test_cas_of_10k_real_training_images_is_at_least_97_percent(mnist):
    # The CAS floor of the final evaluation: N = 10,000 real images with their true labels.
    got = cas(mnist.train_images[:10000], mnist.train_labels[:10000], mnist.test_images, mnist.test_labels)
    assert got >= 0.97
