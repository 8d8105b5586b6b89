"""GAN: Generative Adversarial Nets (Goodfellow et al. 2014, arXiv 1406.2661), unconditional.

Follows seed-architectures.md, document 004: MLP networks, z ~ N(0, I) of dimension 100,
G: 256 → 512 → 1024 → 784 with LeakyReLU 0.2 and tanh; D: 1024 → 512 → 256 → 1 with
LeakyReLU 0.2 and Dropout 0.3; N(0, 0.02) init; Adam(2e-4, 0.5); D on a real and a fake
batch, then G through the frozen D with "real" targets (the non-saturating loss of §3 of the
paper rather than the minimax log(1 − D(G(z))), which saturates early in training).

How and why we differ from the seed document:
- BatchNorm on G's 512- and 1024-unit layers (as in DCGAN, Radford et al. 2015, and
  PyTorch-GAN's gan.py). Document 004's plain MLP G, after 2400 steps at batch 64 (the
  smoke budget, ~140 s on one CPU thread), drew mostly 1s in salt noise (6 of 10 classes by
  the shipped evaluator, FID 574); with BN it draws all 10 classes (class entropy 2.17 of
  2.30, FID 337 — still noisy strokes: MLP GANs need many epochs).
- D returns a logit and the losses use BCEWithLogits: document 004's sigmoid + BCE is the
  same function, computed less stably.
- Labels are ignored (`conditional = False`): the trainer still passes them; generate()
  and the losses do not look at them, so label accuracy is not scored for this variant.
- The smoke budget is 2400 steps (~2.5 epochs, ~1100 img/s on one thread) rather than the
  shared 1500: one epoch of an MLP GAN covers too few digit classes (field-notes.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import TrainConfig, doc
from bench.registry import register
from bench.variant import BUDGETS, Variant, init_normal


@dataclass
class GANConfig(TrainConfig):
    dropout: float = doc(0.3, "dropout after each hidden layer of D (document 004)")

    def check(self) -> None:
        super().check()
        from bench.errors import BenchError

        if not 0 <= self.dropout < 1:
            raise BenchError(f"dropout must be in [0, 1), got {self.dropout}")


def generator(z_dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(z_dim, 256), nn.LeakyReLU(0.2, True),
        nn.Linear(256, 512, bias=False), nn.BatchNorm1d(512), nn.LeakyReLU(0.2, True),
        nn.Linear(512, 1024, bias=False), nn.BatchNorm1d(1024), nn.LeakyReLU(0.2, True),
        nn.Linear(1024, 28 * 28), nn.Tanh(),
        nn.Unflatten(1, (1, 28, 28)),
    )


def discriminator(dropout: float) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 1024), nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
        nn.Linear(1024, 512), nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
        nn.Linear(512, 256), nn.LeakyReLU(0.2, True), nn.Dropout(dropout),
        nn.Linear(256, 1), nn.Flatten(0),  # one logit per image
    )


@register
class GAN(Variant):
    name = "gan"
    summary = "unconditional GAN (Goodfellow et al. 2014): MLP G/D, non-saturating BCE"
    conditional = False
    Config = GANConfig
    # smoke: ~140 s on one CPU thread (~1100 img/s); lr stays 2e-4 (5e-4 was no better here).
    budgets = BUDGETS | {"smoke": BUDGETS["smoke"] | {"steps": 2400, "batch_size": 64, "eval_every": 800}}
    cfg: GANConfig

    def build(self) -> tuple[nn.Module, nn.Module]:
        g, d = generator(self.cfg.z_dim), discriminator(self.cfg.dropout)
        init_normal(g)
        init_normal(d)
        return g, d

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.g(z)  # unconditional: labels ignored

    def d_loss(self, real, labels, fake, fake_labels) -> dict[str, torch.Tensor]:
        out_real, out_fake = self.d(real), self.d(fake)
        loss_real = F.binary_cross_entropy_with_logits(out_real, torch.ones_like(out_real))
        loss_fake = F.binary_cross_entropy_with_logits(out_fake, torch.zeros_like(out_fake))
        return {"d": loss_real + loss_fake, "real": loss_real.detach(), "fake": loss_fake.detach()}

    def g_loss(self, fake, fake_labels) -> dict[str, torch.Tensor]:
        out = self.d(fake)
        return {"g": F.binary_cross_entropy_with_logits(out, torch.ones_like(out))}

    @classmethod
    def search_space(cls, space: str) -> dict[str, Any]:
        from ray import tune

        own = {"dropout": tune.uniform(0.0, 0.5) if space == "wide" else tune.choice([0.2, 0.3, 0.4])}
        return super().search_space(space) | own
