"""The shipped MNIST classifier that scores every variant: a small CNN whose 128-d penultimate
layer is the feature space for FID/KID and whose softmax feeds the label-based metrics.

Shipped weights: `train(load_mnist(), seed=0, epochs=10, threads=1)` then `save(...)`
(= `OMP_NUM_THREADS=1 bench evaluator train --seed 0 --epochs 10 --out bench/assets/evaluator.pt`;
other defaults: batch 128, AdamW lr 3e-3 wd 5e-4, OneCycle, ±2 px shifts), torch 2.13 CPU,
1272 s on a shared 2-core machine: test accuracy 99.63%, sha256 below. Bit-identical retraining
needs the same thread count (and CPU kernels).
"""

from __future__ import annotations

import hashlib
import io
import math
import pickle
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from bench.data import Mnist
from bench.errors import BenchError

WEIGHTS_PATH = Path(__file__).resolve().parent / "assets" / "evaluator.pt"
WEIGHTS_SHA256 = "56c55bfcdd504ea81df0340764d9f8b4681f5bdd6c92ba6f84e462b38eded5f5"
BATCH = 100  # images per inference batch: small batches stay in cache (1000 was ~2× slower on CPU)


class Evaluator(nn.Module):
    """Three conv blocks → 128-d features → 10 logits. Input: float N×1×28×28 in [-1, 1]."""

    num_features = 128

    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True), nn.MaxPool2d(2)]

        # 28 → 14 → 7 → 3 (floor), so the flattened map is 128×3×3 = 1152.
        self.body = nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                                  nn.Linear(1152, self.num_features), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, 10))
        # channels_last conv weights make every activation channels_last: CPU max-pooling is
        # ~9× faster in that layout than in NCHW (it was a third of the inference time).
        self.body.to(memory_format=torch.channels_last)
        self.frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 128) penultimate activations: the space FID and KID are measured in."""
        return self.body(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from features, so metrics that need both run the conv stack once."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))

    def freeze(self) -> Evaluator:
        for p in self.parameters():
            p.requires_grad_(False)
        self.frozen = True
        return self.eval()

    def train(self, mode: bool = True) -> Evaluator:
        # A parent module's .train() (e.g. a torchmetrics Metric holding us) must not turn
        # dropout/BN-updates back on: the scores would change from call to call.
        return super().train(mode and not self.frozen)


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 N×28×28 (or N×1×28×28) pixels → float N×1×28×28 in [-1, 1]; float input passes through."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected N×28×28 or N×1×28×28 images, got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    return images.float()


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
            device: torch.device | str = "cpu") -> torch.Tensor:
    """fn over to_input(images) in BATCH-sized chunks on device, results gathered on the CPU
    (converting per chunk keeps memory flat; outputs are small: N×128 at most)."""
    return torch.cat([fn(to_input(images[i:i + BATCH].to(device))).cpu() for i in range(0, len(images), BATCH)])


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of images whose argmax logit equals the label."""
    predicted = batched(model, images, device_of(model)).argmax(1)
    return (predicted == labels.cpu()).double().mean().item()


def _augment(x: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random translation by up to ±shift pixels: pad with background (-1), crop per image."""
    n = x.shape[0]
    padded = F.pad(x, (shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * shift + 1, (2, n, 1), generator=generator)
    span = torch.arange(28)
    rows, cols = (dy + span)[:, :, None], (dx + span)[:, None, :]
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


def train(mnist: Mnist, *, seed: int = 0, epochs: int = 10, batch_size: int = 128, lr: float = 3e-3,
          weight_decay: float = 5e-4, threads: int | None = None,
          log: Callable[[str], None] = print) -> Evaluator:
    """Train from scratch on the 60k train images; bit-reproducible for the same seed and thread count."""
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = Evaluator()
        steps_per_epoch = math.ceil(len(mnist.train_images) / batch_size)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, epochs=epochs,
                                                       steps_per_epoch=steps_per_epoch)
        for epoch in range(epochs):
            model.train()
            start, total_loss = time.perf_counter(), 0.0
            order = torch.randperm(len(mnist.train_images), generator=generator)
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                x = _augment(to_input(mnist.train_images[idx]), generator)
                loss = F.cross_entropy(model(x), mnist.train_labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total_loss += loss.item() * len(idx)
            model.eval()
            acc = accuracy(model, mnist.test_images, mnist.test_labels)
            log(f"epoch {epoch + 1}/{epochs}: loss {total_loss / len(order):.4f}, "
                f"test acc {acc:.4%}, {time.perf_counter() - start:.0f} s")
        return model.freeze()
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_deterministic)


def _serialize(model: nn.Module) -> bytes:
    # Tensors only (loadable with weights_only=True); a BytesIO keeps the bytes independent
    # of the destination file name, so equal weights always give equal sha256.
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def fingerprint(model: nn.Module) -> str:
    """sha256 of the weights as save() writes them: the key for caches of evaluator outputs."""
    return hashlib.sha256(_serialize(model)).hexdigest()


def save(model: nn.Module, path: str | Path) -> str:
    """Write the state_dict to path; returns its sha256 (pin it as WEIGHTS_SHA256 to ship it)."""
    data = _serialize(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def load(path: str | Path | None = None, device: str = "cpu",
         expected_sha256: str | None = WEIGHTS_SHA256) -> Evaluator:
    """Frozen evaluator in eval mode. Checks the file's sha256 against expected_sha256
    (the pinned shipped weights by default; None skips the check for self-trained weights)."""
    path = Path(path) if path is not None else WEIGHTS_PATH
    if not path.is_file():
        raise BenchError(f"evaluator weights {path} not found; reinstall gan-bench or run `bench evaluator train`")
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and got != expected_sha256:
        raise BenchError(f"evaluator weights {path}: sha256 {got} does not match the pinned {expected_sha256}; "
                         "reinstall gan-bench or run `bench evaluator train` and pin the new hash")
    model = Evaluator()
    try:
        model.load_state_dict(torch.load(io.BytesIO(data), map_location=device, weights_only=True))
    except (RuntimeError, KeyError, ValueError, pickle.UnpicklingError):
        # torch's own message suggests weights_only=False, which is exactly what we must not do.
        raise BenchError(f"evaluator weights {path} are not a readable Evaluator state_dict (damaged file or "
                         "another architecture); run `bench evaluator train` to make new ones") from None
    return model.to(device).freeze()
