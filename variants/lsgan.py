"""LSGAN: Least Squares Generative Adversarial Networks (Mao et al. 2017, arXiv 1611.04076).

variants/cgan.py (same networks, label conditioning and budgets) with the BCE losses replaced
by least squares on D's raw output (source recipe: docs/recipes.md, document 001):

    D: ½·E[(D(x, y) − b)²] + ½·E[(D(G(z, y'), y') − a)²]      G: ½·E[(D(G(z, y'), y') − c)²]

Codes a = 0 (fake), b = 1 (real), c = 1 (what G wants D to believe), as in document 001;
(a, b, c) = (−1, 1, 0) is the paper's Pearson χ² form: `--set a=-1 --set c=0`.
Design choice and why: document 001 uses MLPs; we keep cgan's conv networks so that cgan and
lsgan differ in the loss only, which is the comparison LSGAN is about. D's output is used raw
(no sigmoid), as the paper requires. Measured numbers: README ("Measured").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.config import doc
from bench.errors import BenchError
from bench.registry import register
from bench.space import Domain, choice
from variants.cgan import CGAN, CGANConfig


@dataclass
class LSGANConfig(CGANConfig):
    a: float = doc(0.0, "least-squares target for fakes in D's loss")
    b: float = doc(1.0, "least-squares target for reals in D's loss")
    c: float = doc(1.0, "least-squares target G pushes its fakes towards")

    def check(self) -> None:
        super().check()
        if self.a == self.b:
            raise BenchError(f"a and b must differ (got a=b={self.a}): D could not tell real from fake")


@register
class LSGAN(CGAN):
    name = "lsgan"
    summary = "least-squares cGAN (Mao et al. 2017): cgan's conv G/D, MSE on D's raw output"
    Config = LSGANConfig
    cfg: LSGANConfig

    def d_loss(self, real, labels, fake, fake_labels) -> dict[str, torch.Tensor]:
        c = self.cfg
        loss_real = 0.5 * (self.d(real, labels) - c.b).pow(2).mean()
        loss_fake = 0.5 * (self.d(fake, fake_labels) - c.a).pow(2).mean()
        return {"d": loss_real + loss_fake, "real": loss_real.detach(), "fake": loss_fake.detach()}

    def g_loss(self, fake, fake_labels) -> dict[str, torch.Tensor]:
        return {"g": 0.5 * (self.d(fake, fake_labels) - self.cfg.c).pow(2).mean()}

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        # Only the fake target moves: (a, b, c) = (0, 1, 1) or (−1, 1, 1), both with G aiming at
        # the real label. Sampling c independently would allow c = a (G chasing "fake").
        return super().search_space(space) | {"a": choice([0.0, -1.0])}
