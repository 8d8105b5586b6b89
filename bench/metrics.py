"""Scores of generated digits, all measured by the shipped evaluator (never by Inception).

FID/KID live in the evaluator's 128-d feature space (torchmetrics with a custom feature module);
the label metrics use its softmax. `score` runs the evaluator once over the samples and takes
the real side from cached features, so no call re-reads real images.

`evaluate` adds the nearest-neighbour metrics of bench.fidelity (precision, recall, density,
coverage, memorization), intra-FID and CAS (bench.cas) against a `Reference`: every real-side
statistic, computed once and cached on disk. `floors` scores real images the same way, so every
metric has a "what good looks like" value at the same N.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance
from torchmetrics.utilities import dim_zero_cat

from bench import cas as cas_score
from bench import fidelity
from bench.data import NUM_CLASSES, Mnist, cache_root
from bench.evaluator import Evaluator, batched, device_of, fingerprint, to_input

KID_SUBSETS = 50  # torchmetrics defaults to 100; 50 keeps score() at N=10k under ~10 s on one thread
KID_SUBSET_SIZE = 1000
COVERAGE_SHARE = 0.1  # a class is covered if it gets >= 10% of its fair share (1/10) of the samples


class EvaluatorFeatures(nn.Module):
    """The torchmetrics `feature=` module: images (uint8 N×28×28 or float N×1×28×28 in [-1, 1])
    → evaluator.features. A 2-D (N, 128) input is taken as features already computed, which
    lets score() feed FID and KID from a single evaluator pass and real features from the cache."""

    def __init__(self, evaluator: Evaluator) -> None:
        super().__init__()
        if evaluator.training:
            raise ValueError("the evaluator must be frozen (evaluator.load() or .freeze()): dropout would add noise")
        self.evaluator = evaluator
        self.num_features = evaluator.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # float64 out: torchmetrics returns FID in this dtype, and KID's kernel sums cancel badly in float32.
        if x.dim() == 2 and x.shape[1] == self.num_features:
            return x.double()
        with torch.no_grad():
            return self.evaluator.features(to_input(x).to(device_of(self.evaluator))).cpu().double()


def fid_metric(evaluator: Evaluator) -> FrechetInceptionDistance:
    # normalize=True only sets the dummy-input dtype; with a custom module nothing is rescaled.
    return FrechetInceptionDistance(feature=EvaluatorFeatures(evaluator), input_img_size=(1, 28, 28),
                                    normalize=True, reset_real_features=False)


def kid_metric(evaluator: Evaluator, subset_size: int = KID_SUBSET_SIZE) -> KernelInceptionDistance:
    """Subsets are drawn with torch's global RNG: seed around compute() (score does)."""
    with warnings.catch_warnings():
        # "will save all extracted features": 10k × 128 float64 is 10 MB, not worth a warning per call.
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        return KernelInceptionDistance(feature=EvaluatorFeatures(evaluator), subsets=KID_SUBSETS,
                                       subset_size=subset_size, normalize=True, reset_real_features=False)


class LabelAccuracy(Metric):
    """Share of conditional samples G(z, y) that the evaluator labels y; update(logits, labels).
    compute() → (overall, per-class tensor of 10; NaN for a class never asked for)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.zeros(NUM_CLASSES, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(NUM_CLASSES, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        labels = labels.to(logits.device).long()
        hit = (logits.argmax(1) == labels).long()
        self.correct += torch.bincount(labels, weights=hit, minlength=NUM_CLASSES).long()
        self.total += torch.bincount(labels, minlength=NUM_CLASSES)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        # float64: a share of 10,000 samples prints as 0.9461, not float32's 0.9460999965667725
        overall = self.correct.sum().double() / self.total.sum()
        return overall, self.correct.double() / self.total  # 0/0 = NaN marks classes with no samples


class CodeAccuracy(Metric):
    """For a generator whose labels are an unsupervised categorical code (InfoGAN): the share of
    samples whose evaluator class is their code's class under the best one-to-one matching of the
    10 codes to the 10 classes (Hungarian algorithm on the code × class counts). Never comparable
    to label accuracy: the matching is chosen after the fact. update(logits, codes)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("counts", torch.zeros(NUM_CLASSES, NUM_CLASSES, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, codes: torch.Tensor) -> None:
        pairs = codes.to(logits.device).long() * NUM_CLASSES + logits.argmax(1)
        self.counts += torch.bincount(pairs, minlength=NUM_CLASSES ** 2).view(NUM_CLASSES, NUM_CLASSES)

    def compute(self) -> torch.Tensor:
        rows, cols = linear_sum_assignment(self.counts.cpu().numpy(), maximize=True)
        return self.counts[rows, cols].sum().double() / self.counts.sum()


class ClassifierScore(Metric):
    """Inception-Score analogue with the evaluator's softmax: exp(E_x KL(p(y|x) || p(y))), in
    [1, 10]; the mean over `splits` equal parts of a seeded shuffle (samples may arrive sorted by
    class, and unshuffled splits of one class each would all score ~1). update(logits)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, splits: int = 10, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.splits, self.seed = splits, seed
        self.add_state("log_probs", [], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor) -> None:
        self.log_probs.append(torch.log_softmax(logits.double(), dim=1))

    def compute(self) -> torch.Tensor:
        log_p = dim_zero_cat(self.log_probs)
        order = torch.randperm(len(log_p), generator=torch.Generator().manual_seed(self.seed))
        scores = []
        for part in log_p[order].chunk(self.splits):
            log_marginal = torch.logsumexp(part, dim=0) - math.log(len(part))
            kl = (part.exp() * (part - log_marginal)).sum(1).mean()
            scores.append(kl.exp())
        return torch.stack(scores).mean()


class ClassCoverage(Metric):
    """Which digits the evaluator sees among the samples; update(logits). compute() →
    (coverage: share of the 10 classes that get >= COVERAGE_SHARE of their fair 1/10 share of
    predictions, entropy of the predicted-label histogram in nats, max ln 10 ≈ 2.303)."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("counts", torch.zeros(NUM_CLASSES, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor) -> None:
        self.counts += torch.bincount(logits.argmax(1), minlength=NUM_CLASSES)

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        share = self.counts.double() / self.counts.sum()
        covered = (share >= COVERAGE_SHARE / NUM_CLASSES).double().mean()
        entropy = torch.special.entr(share).sum()  # Σ −p ln p, with 0 for empty classes
        return covered, entropy


HIGHER_IS_BETTER: dict[str, bool] = {
    "eval/fid": FrechetInceptionDistance.higher_is_better,
    "eval/kid": KernelInceptionDistance.higher_is_better,
    # The spread of KID over subsets: small means a precise estimate, not a better generator;
    # False only so that sorting by it puts the steadier runs first.
    "eval/kid_std": False,
    "eval/classifier_score": ClassifierScore.higher_is_better,
    "eval/class_coverage": ClassCoverage.higher_is_better,
    "eval/class_entropy": ClassCoverage.higher_is_better,
    "eval/label_accuracy": LabelAccuracy.higher_is_better,
    **{f"eval/class_acc/{k}": LabelAccuracy.higher_is_better for k in range(NUM_CLASSES)},
    "eval/precision": True,
    "eval/recall": True,
    "eval/density": True,  # ≈ 1 for real data; above 1 means samples crowd the dense modes
    "eval/coverage": True,
    "eval/memorization": False,
    "eval/intra_fid": False,
    **{f"eval/intra_fid/{k}": False for k in range(NUM_CLASSES)},
    "eval/cas": True,
    "eval/code_accuracy": CodeAccuracy.higher_is_better,
}
PERIODIC_KEYS = ("eval/fid", "eval/kid", "eval/kid_std", "eval/classifier_score", "eval/class_coverage",
                 "eval/class_entropy", "eval/label_accuracy", "eval/precision", "eval/recall", "eval/density",
                 "eval/coverage")  # plus eval/class_acc/<k>: what evaluate(final=False) returns


def higher_is_better(key: str) -> bool:
    """Direction of a score key (including any eval/class_acc/<k>)."""
    if key.startswith("eval/class_acc/"):
        return LabelAccuracy.higher_is_better
    if key.startswith("eval/intra_fid/"):
        return HIGHER_IS_BETTER["eval/intra_fid"]
    if key not in HIGHER_IS_BETTER:
        raise KeyError(f"unknown score key {key!r}; known: {', '.join(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[key]


def _images_sha256(images: torch.Tensor) -> str:
    digest = hashlib.sha256(str(tuple(images.shape)).encode() + str(images.dtype).encode())
    digest.update(images.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def _cache_path(evaluator: Evaluator, images: torch.Tensor, cache_dir: str | os.PathLike | None,
                suffix: str = "") -> Path:
    """Where a statistic of the evaluator's view of these images lives: keyed by (weights, pixels)."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "features"
    return root / f"{fingerprint(evaluator)[:16]}-{_images_sha256(images)[:16]}{suffix}.npy"


def _cached(path: Path, shape: tuple[int, ...], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The float64 array stored at path if it has this shape, else compute(), stored there."""
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == shape and cached.dtype == np.float64:
                return torch.from_numpy(cached)
        except (ValueError, OSError):
            pass  # a damaged cache entry is recomputed and overwritten below
    value = compute().double()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # concurrent trials may write the same key
    try:
        with open(tmp, "wb") as f:
            np.save(f, value.numpy())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a full disk must not leave half a file behind
    return value


def real_features(evaluator: Evaluator, images: torch.Tensor,
                  cache_dir: str | os.PathLike | None = None) -> torch.Tensor:
    """(N, 128) float64 evaluator features of real images, computed once per (weights, images)
    and kept in cache_dir (default `~/.cache/gan-bench/features`)."""
    return _cached(_cache_path(evaluator, images, cache_dir), (len(images), evaluator.num_features),
                   lambda: batched(evaluator.features, images, device_of(evaluator)))


def _fid(evaluator: Evaluator, real: torch.Tensor, fake: torch.Tensor) -> float:
    fid = fid_metric(evaluator)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


def _check(images: torch.Tensor, labels: torch.Tensor | None) -> None:
    n = len(images)
    if n < 2:
        raise ValueError(f"score needs at least 2 images, got {n}")
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")


def _features_and_logits(evaluator: Evaluator, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One evaluator pass: (float64 features, logits), both on the CPU."""
    device = device_of(evaluator)
    features32 = batched(evaluator.features, images, device)
    with torch.no_grad():
        logits = evaluator.classify(features32.to(device)).cpu()
    return features32.double(), logits


def _score_features(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None, *,
                    evaluator: Evaluator, real_features: torch.Tensor, seed: int) -> dict[str, float]:
    """score() once the evaluator has seen the samples."""
    n = len(features)
    out = {"eval/fid": _fid(evaluator, real_features, features)}
    kid = kid_metric(evaluator, subset_size=min(KID_SUBSET_SIZE, n, len(real_features)))
    kid.update(real_features, real=True)
    kid.update(features, real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global RNG
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    out["eval/kid"], out["eval/kid_std"] = float(kid_mean), float(kid_std)

    classifier_score = ClassifierScore(seed=seed)
    classifier_score.update(logits)
    out["eval/classifier_score"] = float(classifier_score.compute())
    coverage = ClassCoverage()
    coverage.update(logits)
    covered, entropy = coverage.compute()
    out["eval/class_coverage"], out["eval/class_entropy"] = float(covered), float(entropy)

    if labels is not None:
        label_accuracy = LabelAccuracy()
        label_accuracy.update(logits, labels)
        overall, per_class = label_accuracy.compute()
        out["eval/label_accuracy"] = float(overall)
        out.update({f"eval/class_acc/{k}": float(acc) for k, acc in enumerate(per_class)})
    return out


def score(images: torch.Tensor, labels: torch.Tensor | None, *, evaluator: Evaluator,
          real_features: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Every eval/* score of N generated images (uint8 N×28×28 or float N×1×28×28 in [-1, 1])
    that needs only the reference set's features (evaluate() adds the rest);
    labels are the classes asked of a conditional generator (None for unconditional ones).
    real_features: the reference set, e.g. real_features(evaluator, mnist.test_images)."""
    _check(images, labels)
    features, logits = _features_and_logits(evaluator, images)
    return _score_features(features, logits, labels, evaluator=evaluator, real_features=real_features, seed=seed)


def fid_floor(evaluator: Evaluator, mnist: Mnist, n: int, *, seed: int = 0,
              cache_dir: str | os.PathLike | None = None) -> float:
    """FID of n seeded train images vs the 10k test images: what a perfect generator scores at this N
    (FID is biased upward at finite N, so report it next to any FID measured with n samples)."""
    subset = _train_subset(mnist, n, seed)
    test = real_features(evaluator, mnist.test_images, cache_dir)
    train = real_features(evaluator, mnist.train_images[subset], cache_dir)
    return _fid(evaluator, test, train)


def _train_subset(mnist: Mnist, n: int, seed: int) -> torch.Tensor:
    """n seeded indices into mnist.train_images: the real stand-in for n generated samples."""
    if not 2 <= n <= len(mnist.train_images):
        raise ValueError(f"n must be in 2..{len(mnist.train_images)}, got {n}")
    return torch.randperm(len(mnist.train_images), generator=torch.Generator().manual_seed(seed))[:n]


# --- the full metric set ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """The real side of every score, for one evaluator and one MNIST view: mnist.test_* is the
    evaluation set, mnist.train_* the images the generators train on (the reference for memorization)."""

    mnist: Mnist
    features: torch.Tensor  # (N_eval, 128) float64 features of mnist.test_images
    radii: dict[int, torch.Tensor]  # k → k-NN radii of `features` for k = PR_K and DC_K
    train_features: torch.Tensor  # (N_train, 128) float64 features of mnist.train_images
    train_gaps: torch.Tensor  # (N_train,) each training feature's distance to its nearest other one


def reference(evaluator: Evaluator, mnist: Mnist, cache_dir: str | os.PathLike | None = None) -> Reference:
    """Reference for `mnist`, each part loaded from cache_dir or computed once and stored there."""
    ks = (fidelity.PR_K, fidelity.DC_K)
    features = real_features(evaluator, mnist.test_images, cache_dir)
    radii = _cached(_cache_path(evaluator, mnist.test_images, cache_dir, f"-knn{ks[0]}-{ks[1]}"),
                    (len(features), len(ks)), lambda: torch.stack(list(fidelity.knn_radii(features, ks).values()), 1))
    train_features = real_features(evaluator, mnist.train_images, cache_dir)
    # One N_train² pass (~30 s on one thread for 60k), cached: each memorization score then needs
    # only its samples' nearest training points.
    train_gaps = _cached(_cache_path(evaluator, mnist.train_images, cache_dir, "-nn1"), (len(train_features),),
                         lambda: fidelity.nearest(train_features, train_features,
                                                  exclude=torch.arange(len(train_features)))[0])
    return Reference(mnist, features, dict(zip(ks, radii.unbind(1), strict=True)), train_features, train_gaps)


def intra_fid(evaluator: Evaluator, features: torch.Tensor, labels: torch.Tensor, real_features: torch.Tensor,
              real_labels: torch.Tensor) -> dict[str, float]:
    """eval/intra_fid/<c>: FID between the samples asked to be class c and the real images of class c
    (Miyato & Koyama 2018); eval/intra_fid: their mean over the classes, NaN if a class has < 2 samples."""
    out = {}
    for c in range(NUM_CLASSES):
        fake, real = features[labels == c], real_features[real_labels == c]
        out[f"eval/intra_fid/{c}"] = _fid(evaluator, real, fake) if min(len(fake), len(real)) >= 2 else math.nan
    out["eval/intra_fid"] = float(np.mean(list(out.values())))
    return out


def _scores(images: torch.Tensor, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None, *,
            evaluator: Evaluator, reference: Reference, seed: int, final: bool, cas: bool) -> dict[str, float]:
    """Every score except memorization, from one evaluator pass over the samples."""
    out = _score_features(features, logits, labels, evaluator=evaluator, real_features=reference.features, seed=seed)
    out |= {f"eval/{k}": v for k, v in fidelity.prdc(reference.features, features, real_radii=reference.radii).items()}
    if final and labels is not None:
        out |= intra_fid(evaluator, features, labels, reference.features, reference.mnist.test_labels)
        if cas:
            out["eval/cas"] = cas_score.cas(images, labels, reference.mnist.test_images, reference.mnist.test_labels,
                                            seed=seed, device=device_of(evaluator))
    return out


def _code_accuracy(logits: torch.Tensor, codes: torch.Tensor) -> float:
    metric = CodeAccuracy()
    metric.update(logits, codes)
    return float(metric.compute())


def evaluate(images: torch.Tensor, labels: torch.Tensor | None, final: bool = True, *, evaluator: Evaluator,
             reference: Reference, seed: int = 0, cas: bool = True,
             codes: torch.Tensor | None = None) -> dict[str, float]:
    """Scores of N generated images (as for score()) against reference.

    final=False: the cheap periodic set, PERIODIC_KEYS (+ eval/class_acc/<k>). final=True adds
    eval/memorization and, when labels are given (conditional variants), eval/intra_fid(/<c>) and,
    unless cas=False, eval/cas (a classifier trained on the samples with the caller's torch
    threads; the expensive one). codes (the categorical codes of an InfoGAN-like generator) add
    eval/code_accuracy. Precision/recall/coverage depend on N:
    compare them only at equal N, next to floors() at that N."""
    _check(images, labels)
    _check(images, codes)
    features, logits = _features_and_logits(evaluator, images)
    out = _scores(images, features, logits, labels, evaluator=evaluator, reference=reference, seed=seed,
                  final=final, cas=cas)
    if codes is not None:
        out["eval/code_accuracy"] = _code_accuracy(logits, codes)
    if final:
        out["eval/memorization"] = fidelity.memorization(features, reference.train_features, reference.train_gaps)
    return out


def floors(evaluator: Evaluator, reference: Reference, n: int, *, seed: int = 0,
           cas: bool = True) -> dict[str, float]:
    """Every final score of real data at N = n, "what good looks like" for each column: n seeded
    training images with their true labels scored as samples (the same subset as fid_floor), except
    eval/memorization, which scores n held-out evaluation images (training images score ~1 by design)."""
    mnist = reference.mnist
    if n > len(reference.features):
        raise ValueError(f"n must be at most the {len(reference.features)} evaluation images, got {n}")
    subset = _train_subset(mnist, n, seed)
    images, labels = mnist.train_images[subset], mnist.train_labels[subset]
    features, logits = _features_and_logits(evaluator, images)
    out = _scores(images, features, logits, labels, evaluator=evaluator, reference=reference, seed=seed,
                  final=True, cas=cas)
    out["eval/code_accuracy"] = _code_accuracy(logits, labels)  # true labels as the codes
    held_out = torch.randperm(len(reference.features), generator=torch.Generator().manual_seed(seed))[:n]
    out["eval/memorization"] = fidelity.memorization(reference.features[held_out], reference.train_features,
                                                      reference.train_gaps)
    return out

