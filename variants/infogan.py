"""InfoGAN: Interpretable Representation Learning by Information Maximizing GANs (Chen et al. 2016,
arXiv 1606.03657).

Unconditional: G(z, c) takes noise z (62-d) plus a 10-way categorical code and 2 continuous codes
U(−1, 1), never a class label. A head Q on D's trunk predicts the codes from an image, and both
D (with Q) and G minimise λ·L_I, a lower bound on the mutual information between codes and images:
    L_I = CE(Q_cat(G(z, c)), c_cat) + λ_cont · ½‖Q_cont(G(z, c)) − c_cont‖²   (unit-variance Gaussian)
On MNIST the categorical code tends to capture the digit class without any label; the trainer's
labels serve as that code, scored as `eval/code_accuracy` (evaluator class vs code after the best
one-to-one code → class matching, Hungarian), never as conditional label accuracy.
Paper's MNIST recipe: z 62-d, λ = 1 for the categorical code (λ_cont = 0.1 here as in PyTorch-GAN),
Adam with lr 2e-4 (D) and 1e-3 (G), β1 0.5; DCGAN-like G/D with a Q head FC 128 → BN → LReLU.
How we differ: cgan's conv trunks (no 1024-unit FC layers), the code one-hot concatenated to z.
The smoke budget keeps the paper's rates: lr 1e-3 for both gave worse FID and code accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bench.config import doc
from bench.data import NUM_CLASSES
from bench.errors import BenchError
from bench.nets import Discriminator
from bench.recipe import DCond, Embed, Recipe, RecipeConfig
from bench.registry import register
from bench.space import Domain, loguniform
from bench.variant import BUDGETS

CONTINUOUS = 2  # continuous codes, U(-1, 1) each


@dataclass
class InfoGANConfig(RecipeConfig):
    z_dim: int = 62
    lr_g: float = 1e-3
    embed: Embed = "onehot"
    d_cond: DCond = "none"
    info_weight: float = doc(1.0, "λ: weight of the mutual-information loss (D/Q and G)")
    cont_weight: float = doc(0.1, "λ_cont: weight of the continuous codes within it")

    def check(self) -> None:
        super().check()
        if self.info_weight < 0 or self.cont_weight < 0:
            raise BenchError("info_weight and cont_weight must be >= 0")


@register
class InfoGAN(Recipe):
    name = "infogan"
    summary = "InfoGAN (Chen et al. 2016): unsupervised 10-way + 2 continuous codes, Q head on D"
    conditional = False
    label_codes = True
    extra_latent = CONTINUOUS
    Config = InfoGANConfig
    budgets = BUDGETS
    cfg: InfoGANConfig

    def extend_d(self, d: Discriminator) -> None:
        width = d.head.in_features
        d.q = nn.Sequential(nn.Linear(width, 128, bias=False), nn.BatchNorm1d(128), nn.LeakyReLU(0.2, True),
                            nn.Linear(128, NUM_CLASSES + CONTINUOUS))

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(n, self.cfg.z_dim, generator=generator, device=self.device)
        cont = torch.rand(n, CONTINUOUS, generator=generator, device=self.device) * 2 - 1
        return torch.cat([noise, cont], 1)

    def _info(self, h_fake: torch.Tensor, codes: torch.Tensor, z: torch.Tensor, out: dict) -> torch.Tensor:
        q = self.d.q(h_fake)
        cat = F.cross_entropy(q[:, :NUM_CLASSES], codes)
        cont = 0.5 * (q[:, NUM_CLASSES:] - z[:, -CONTINUOUS:]).pow(2).sum(1).mean()
        out |= {"info_cat": cat.detach(), "info_cont": cont.detach()}
        return self.cfg.info_weight * (cat + self.cfg.cont_weight * cont)

    def d_extra(self, h_real, labels, h_fake, fake_labels, z, out) -> torch.Tensor:
        return self._info(h_fake, fake_labels, z, out)

    def g_extra(self, h_fake, fake_labels, z, out) -> torch.Tensor:
        return self._info(h_fake, fake_labels, z, out)

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        return super().search_space(space) | {"info_weight": loguniform(0.1, 10.0)}
