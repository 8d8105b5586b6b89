"""GAN: Generative Adversarial Nets (Goodfellow et al. 2014, arXiv 1406.2661), unconditional.

Source recipe: docs/recipes.md (document 004): MLP G 256 → 512 → 1024 → 784 and D 1024 → 512
→ 256 → 1 with LeakyReLU 0.2, D dropout 0.3, N(0, 0.02) init, Adam(2e-4, 0.5); G trains with
the non-saturating loss of the paper's §3 rather than the minimax one, which saturates early.
Design choices and why:
- BatchNorm on G's 512- and 1024-unit layers (as DCGAN and PyTorch-GAN): without it the
  plain MLP G drew few of the 10 digit classes within the smoke budget.
- D returns a logit; BCE on logits is the stable form of the document's sigmoid + BCE.
- Unconditional: generate() and the losses ignore labels; label accuracy is not scored.
- Smoke budget of 2400 steps (~2.5 epochs) rather than 1500: one epoch of an MLP GAN covers
  too few classes. Measured numbers: README ("Measured").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.config import TrainConfig, doc
from bench.errors import BenchError
from bench.registry import register
from bench.space import Domain, choice, uniform
from bench.variant import BUDGETS, Variant, init_normal, ns_loss


@dataclass
class GANConfig(TrainConfig):
    dropout: float = doc(0.3, "dropout after each hidden layer of D (document 004)")

    def check(self) -> None:
        super().check()
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
    # smoke: 2400 steps (see above); lr stays at the document's 2e-4.
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
        loss_real, loss_fake = ns_loss(out_real, real=True), ns_loss(out_fake, real=False)
        return {"d": loss_real + loss_fake, "real": loss_real.detach(), "fake": loss_fake.detach()}

    def g_loss(self, fake, fake_labels) -> dict[str, torch.Tensor]:
        return {"g": ns_loss(self.d(fake), real=True)}

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        own = {"dropout": uniform(0.0, 0.5) if space == "wide" else choice([0.2, 0.3, 0.4])}
        return super().search_space(space) | own
