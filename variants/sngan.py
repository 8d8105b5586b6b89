"""SNGAN with a projection discriminator: Spectral Normalization for GANs (Miyato et al. 2018,
arXiv 1802.05957) and cGANs with Projection Discriminator (Miyato & Koyama 2018, arXiv 1802.05637).

Hinge loss, D(x, y) = ψ(φ(x)) + embed(y)ᵀφ(x) with spectral norm on every D weight (the
projection embedding included), and G conditioned by conditional BatchNorm (per-class gains and
shifts):
    D: E[max(0, 1 − D(x, y))] + E[max(0, 1 + D(G(z, y'), y'))]       G: −E[D(G(z, y'), y')]
How we differ: the papers' ResNets are replaced by cgan's two-layer conv G and D (the same
backbone as every conv recipe here, so the comparison is about the parts), and we use one D step
with Adam(2e-4, 0.5, 0.999), the "standard CNN" setting (C) of Miyato et al. 2018, Table 1,
rather than the ResNet setting (n_dis 5, β = (0, 0.9)). The smoke budget uses lr 1e-3 as cgan.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.recipe import DNorm, Embed, Loss, Recipe, RecipeConfig
from bench.registry import register
from bench.space import Domain, choice
from variants.cgan import FAST_SMOKE


@dataclass
class SNGANConfig(RecipeConfig):
    loss: Loss = "hinge"
    d_norm: DNorm = "sn"
    embed: Embed = "cbn"


@register
class SNGAN(Recipe):
    name = "sngan"
    summary = "spectral-norm GAN (Miyato et al. 2018): hinge loss, SN projection D, conditional-BN G"
    Config = SNGANConfig
    budgets = FAST_SMOKE

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        own = {"d_steps": choice([1, 2, 5])} if space == "wide" else {}
        return super().search_space(space) | own
