"""Scores against independent numpy/scipy computations and against what real MNIST must score;
plus validation of sample files (bench.npz)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch

from bench import metrics
from bench.data import Mnist
from bench.errors import BenchError
from bench.evaluator import Evaluator, to_input
from bench.npz import load_samples, save_samples


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def numpy_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / d + 1)³ (Binkowski et al. 2018)."""
    m, d = len(a), a.shape[1]
    k_aa, k_bb, k_ab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    off_diagonal = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(off_diagonal - 2 * k_ab.mean())


@pytest.fixture(scope="module")
def real_scores(evaluator, mnist, real_test_features):
    """2000 real test images scored against their own features: a perfect generator."""
    return metrics.score(mnist.test_images[:2000], mnist.test_labels[:2000], evaluator=evaluator,
                         real_features=real_test_features[:2000])


@pytest.fixture(scope="module")
def small_reference(evaluator, mnist, feature_cache):
    """A Reference for a small MNIST view (5000 training, 2000 evaluation images): seconds, not minutes."""
    small = Mnist(mnist.train_images[:5000], mnist.train_labels[:5000], mnist.test_images[:2000],
                  mnist.test_labels[:2000])
    return SimpleNamespace(evaluator=evaluator, mnist=small,
                           reference=metrics.reference(evaluator, small, cache_dir=feature_cache))


@pytest.fixture(scope="module")
def real_test_logits(evaluator, real_test_features):
    with torch.no_grad():
        return evaluator.classify(real_test_features.float())


def junk_images() -> dict[str, torch.Tensor]:
    noise = torch.randint(0, 256, (1000, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return {"noise": noise, "blank": torch.zeros(1000, 28, 28, dtype=torch.uint8)}


def test_real_images_score_as_a_perfect_generator(real_scores):
    assert abs(real_scores["eval/fid"]) < 1e-6  # the same features on both sides
    assert real_scores["eval/classifier_score"] > 9
    assert real_scores["eval/class_coverage"] == 1
    assert real_scores["eval/class_entropy"] == pytest.approx(math.log(10), abs=0.01)
    assert real_scores["eval/label_accuracy"] >= 0.99
    assert all(real_scores[f"eval/class_acc/{k}"] >= 0.97 for k in range(10))


def test_every_key_has_a_direction(real_scores, small_reference, mnist):
    assert set(real_scores) < set(metrics.HIGHER_IS_BETTER)
    final = metrics.evaluate(mnist.test_images[:300], mnist.test_labels[:300], evaluator=small_reference.evaluator,
                             reference=small_reference.reference, cas=False, codes=mnist.test_labels[:300])
    assert set(final) | {"eval/cas"} == set(metrics.HIGHER_IS_BETTER)
    assert metrics.higher_is_better("eval/intra_fid/3") is False and metrics.higher_is_better("eval/cas")
    assert not metrics.higher_is_better("eval/fid") and metrics.higher_is_better("eval/classifier_score")
    assert metrics.higher_is_better("eval/class_acc/7")
    with pytest.raises(KeyError):
        metrics.higher_is_better("eval/nonsense")


@pytest.mark.filterwarnings("ignore:Matrix is singular")  # dead ReLU units: some feature variances are 0
def test_score_matches_independent_fid_and_kid(evaluator, mnist, real_test_features, feature_cache):
    # N = 500 on both sides makes every KID subset the whole set: no randomness to reproduce.
    fake, real = mnist.train_images[:500], real_test_features[:500]
    scores = metrics.score(fake, None, evaluator=evaluator, real_features=real)
    fake_features = metrics.real_features(evaluator, fake, cache_dir=feature_cache).numpy()
    assert scores["eval/fid"] == pytest.approx(scipy_fid(real.numpy(), fake_features), rel=1e-6)
    assert scores["eval/kid"] == pytest.approx(numpy_kid(real.numpy(), fake_features), rel=1e-6)
    assert scores["eval/kid_std"] < 1e-6 * abs(scores["eval/kid"])
    assert "eval/label_accuracy" not in scores
    assert metrics.score(to_input(fake), None, evaluator=evaluator, real_features=real) == scores


def test_kid_of_disjoint_real_halves_is_zero_within_noise(evaluator, real_test_features):
    # Unlike FID (biased upward at finite N), KID is unbiased: ~0 for two real samples.
    kid = metrics.kid_metric(evaluator, subset_size=500)
    # Interleaved, not first/second half: the test set's first 5000 digits are a cleaner
    # population (FID between the halves is ~23, between even and odd indices ~2.3).
    kid.update(real_test_features[0::2], real=True)
    kid.update(real_test_features[1::2], real=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mean, std = kid.compute()
    assert abs(float(mean)) < float(std)


def test_kid_subsets_are_seeded(evaluator, mnist, real_test_features):
    fake = mnist.train_images[:300]
    a, b, c = (metrics.score(fake, None, evaluator=evaluator, real_features=real_test_features, seed=s)
               for s in (0, 0, 1))
    assert a == b and a["eval/kid"] != c["eval/kid"]


def test_torchmetrics_image_path_agrees_with_score(evaluator, mnist, real_test_features):
    fake = mnist.train_images[:300]
    fid = metrics.fid_metric(evaluator)
    fid.update(real_test_features, real=True)
    fid.update(fake, real=False)  # images through EvaluatorFeatures
    scores = metrics.score(fake, None, evaluator=evaluator, real_features=real_test_features)
    assert float(fid.compute()) == pytest.approx(scores["eval/fid"], rel=1e-9)


def test_real_train_images_reach_the_fid_floor_and_junk_does_not(evaluator, mnist, real_test_features,
                                                                 feature_cache):
    floor = metrics.fid_floor(evaluator, mnist, 10000, seed=0, cache_dir=feature_cache)
    other = torch.randperm(60000, generator=torch.Generator().manual_seed(1))[:10000]
    fid = metrics.fid_metric(evaluator)  # the torchmetrics image path, as a user would call it
    fid.update(real_test_features, real=True)
    fid.update(mnist.train_images[other], real=False)
    assert 0 < floor and float(fid.compute()) == pytest.approx(floor, rel=0.5)
    small_floor = metrics.fid_floor(evaluator, mnist, 1000, seed=0, cache_dir=feature_cache)
    assert small_floor > floor  # FID's upward bias at small N
    for images in junk_images().values():
        fid.reset()  # keeps the real statistics (reset_real_features=False)
        fid.update(images, real=False)
        assert float(fid.compute()) > 20 * small_floor


def test_one_repeated_digit_has_minimal_diversity(evaluator, mnist, real_test_features):
    scores = metrics.score(mnist.test_images[:1].repeat(300, 1, 1), None, evaluator=evaluator,
                           real_features=real_test_features)
    assert scores["eval/classifier_score"] == pytest.approx(1, abs=1e-6)
    assert scores["eval/class_coverage"] == 0.1 and scores["eval/class_entropy"] == 0


def test_one_class_of_real_digits(real_test_logits, mnist):
    ones = real_test_logits[mnist.test_labels == 1]
    classifier_score, coverage = metrics.ClassifierScore(), metrics.ClassCoverage()
    classifier_score.update(ones)
    coverage.update(ones)
    assert 1 <= float(classifier_score.compute()) < 1.5
    assert float(coverage.compute()[0]) == 0.1


def test_coverage_rule_counts_classes_with_a_tenth_of_their_share():
    logits = torch.eye(10)[torch.tensor([0] * 990 + [1] * 10)]  # class 1 gets exactly 1% of 1000
    coverage = metrics.ClassCoverage()
    coverage.update(logits)
    covered, entropy = coverage.compute()
    assert float(covered) == 0.2
    assert float(entropy) == pytest.approx(-(0.99 * math.log(0.99) + 0.01 * math.log(0.01)))
    coverage.update(torch.eye(10)[torch.tensor([0] * 10)])  # class 1 now below 1%
    assert float(coverage.compute()[0]) == 0.1


def test_label_accuracy_with_shuffled_labels_is_chance(real_test_logits, mnist):
    accuracy = metrics.LabelAccuracy()
    shuffled = mnist.test_labels[torch.randperm(10000, generator=torch.Generator().manual_seed(0))]
    accuracy.update(real_test_logits, shuffled)
    overall, per_class = accuracy.compute()
    assert float(overall) == pytest.approx(0.1, abs=0.02)
    assert per_class.shape == (10,)
    accuracy.reset()
    accuracy.update(real_test_logits[:5], torch.zeros(5, dtype=torch.long))
    assert torch.isnan(accuracy.compute()[1][1:]).all()  # classes never asked for


def test_real_features_are_cached_per_evaluator_and_images(evaluator, mnist, tmp_path, monkeypatch):
    images = mnist.test_images[:300]
    first = metrics.real_features(evaluator, images, cache_dir=tmp_path)
    assert first.dtype == torch.float64 and first.shape == (300, 128) and len(list(tmp_path.iterdir())) == 1

    def no_pass(*args):
        raise AssertionError("the evaluator ran although the features are cached")

    monkeypatch.setattr(metrics, "batched", no_pass)
    assert torch.equal(metrics.real_features(evaluator, images, cache_dir=tmp_path), first)
    monkeypatch.undo()
    metrics.real_features(evaluator, mnist.test_images[1:301], cache_dir=tmp_path)
    other_weights = metrics.real_features(Evaluator().freeze(), images, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3 and not torch.equal(other_weights, first)


# --- the full metric set -----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Matrix is singular")
def test_intra_fid_equals_per_class_scipy_fid(evaluator, mnist, real_test_features, feature_cache):
    # ~500 samples per class against ~1000 real ones: enough for a stable 128-d covariance.
    fake = metrics.real_features(evaluator, mnist.train_images[5000:10000], cache_dir=feature_cache)
    labels, real_labels = mnist.train_labels[5000:10000], mnist.test_labels
    got = metrics.intra_fid(evaluator, fake, labels, real_test_features, real_labels)
    for c in range(10):
        expected = scipy_fid(real_test_features[real_labels == c].numpy(), fake[labels == c].numpy())
        assert got[f"eval/intra_fid/{c}"] == pytest.approx(expected, rel=1e-6)
    assert got["eval/intra_fid"] == pytest.approx(np.mean([got[f"eval/intra_fid/{c}"] for c in range(10)]))
    no_sevens = metrics.intra_fid(evaluator, fake[labels != 7], labels[labels != 7], real_test_features, real_labels)
    assert math.isnan(no_sevens["eval/intra_fid/7"]) and math.isnan(no_sevens["eval/intra_fid"])


def test_reference_is_cached(evaluator, small_reference, feature_cache, monkeypatch):
    def no_knn(*args, **kwargs):
        raise AssertionError("nearest neighbours recomputed although cached")

    monkeypatch.setattr(metrics.fidelity, "knn_radii", no_knn)
    again = metrics.reference(evaluator, small_reference.mnist, cache_dir=feature_cache)
    first = small_reference.reference
    assert torch.equal(again.train_features, first.train_features)
    assert all(torch.equal(again.radii[k], first.radii[k]) for k in (3, 5))


def test_evaluate_periodic_final_and_unconditional_keys(small_reference, mnist):
    ref, net = small_reference.reference, small_reference.evaluator
    images, labels = mnist.train_images[10000:10500], mnist.train_labels[10000:10500]
    periodic = metrics.evaluate(images, labels, evaluator=net, reference=ref, final=False)
    assert set(periodic) == set(metrics.PERIODIC_KEYS) | {f"eval/class_acc/{k}" for k in range(10)}
    unconditional = metrics.evaluate(images, None, evaluator=net, reference=ref)
    assert "eval/memorization" in unconditional and "eval/intra_fid" not in unconditional
    assert "eval/cas" not in unconditional
    same = metrics.score(images, None, evaluator=net, real_features=ref.features)
    assert {k: unconditional[k] for k in same} == same  # evaluate extends score, never changes it


def test_floors_score_real_data_and_share_fid_floor_subset(small_reference, feature_cache):
    ref, net = small_reference.reference, small_reference.evaluator
    got = metrics.floors(net, ref, 1000, seed=0, cas=False)
    assert got["eval/fid"] == pytest.approx(metrics.fid_floor(net, small_reference.mnist, 1000, seed=0,
                                                              cache_dir=feature_cache), rel=1e-9)
    assert got["eval/label_accuracy"] > 0.99 and got["eval/precision"] > 0.7 and got["eval/coverage"] > 0.7
    assert got["eval/memorization"] < 0.5  # held-out real digits are not copies
    with pytest.raises(ValueError, match="at most"):
        metrics.floors(net, ref, 2001)


# --- sample files -------------------------------------------------------------------------------


def test_samples_round_trip_uint8_and_float(tmp_path, mnist):
    images, labels = mnist.test_images[:50], mnist.test_labels[:50]
    save_samples(tmp_path / "u.npz", images, labels)
    got_images, got_labels = load_samples(tmp_path / "u.npz")
    assert torch.equal(got_images, images) and torch.equal(got_labels, labels)
    np.savez(tmp_path / "f.npz", images=to_input(images).numpy())
    got_images, got_labels = load_samples(tmp_path / "f.npz")
    assert torch.equal(got_images, images) and got_labels is None


def _bad_cases() -> dict[str, tuple[dict[str, np.ndarray], str]]:
    u8 = np.zeros((4, 28, 28), np.uint8)
    floats = np.zeros((4, 1, 28, 28), np.float32)
    return {
        "no images": ({"labels": np.zeros(4, np.int64)}, "no `images`"),
        "wrong shape": ({"images": np.zeros((4, 32, 32), np.uint8)}, "shape"),
        "wrong dtype": ({"images": u8.astype(np.int32)}, "dtype"),
        "float without channel": ({"images": u8.astype(np.float32)}, "shape"),
        "out of range": ({"images": floats + 2}, r"\[-1, 1\]"),
        "nan": ({"images": floats * np.nan}, "NaN"),
        "one image": ({"images": u8[:1]}, "at least 2"),
        "labels length": ({"images": u8, "labels": np.zeros(3, np.int64)}, "labels"),
        "labels dtype": ({"images": u8, "labels": np.zeros(4, np.float32)}, "labels"),
        "labels range": ({"images": u8, "labels": np.array([0, 1, 2, 10])}, "0..9"),
    }


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_bad_sample_files_give_one_line_errors(tmp_path, case):
    arrays, message = _bad_cases()[case]
    np.savez(tmp_path / "s.npz", **arrays)
    with pytest.raises(BenchError, match=message) as err:
        load_samples(tmp_path / "s.npz")
    assert "\n" not in str(err.value)


def test_unreadable_sample_files(tmp_path):
    with pytest.raises(BenchError, match="no such file"):
        load_samples(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(BenchError, match="not an .npz"):
        load_samples(tmp_path / "text.npz")
    np.save(tmp_path / "single.npy", np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(BenchError, match="single .npy"):
        load_samples(tmp_path / "single.npy")
    np.savez(tmp_path / "objects.npz", images=np.array([None, 1], dtype=object))
    with pytest.raises(BenchError, match="cannot read"):
        load_samples(tmp_path / "objects.npz")
