"""WGAN-GP: Improved Training of Wasserstein GANs (Gulrajani et al. 2017, arXiv 1704.00028).

The critic estimates the Wasserstein-1 distance, E[D(x)] − E[D(G(z))], kept 1-Lipschitz by a
gradient penalty λ·E[(‖∇D(x̂)‖ − 1)²] on random points x̂ between reals and fakes:
    D: D(G(z, y')) − D(x, y) + λ·GP       G: −D(G(z, y'))
The paper's recipe: λ = 10, 5 critic updates per G update, Adam(1e-4, β = (0, 0.9)), no
BatchNorm in the critic (the penalty is per sample; BN couples a batch's samples).
How we differ: cgan's conv G (BatchNorm, as the paper's G) and conv critic with layer norm in
place of BatchNorm (`d_norm=ln`, the paper's recommended drop-in; `--set d_norm=none` is its MNIST
code), conditional through projection (Miyato & Koyama 2018): a cWGAN-GP. lr 2e-4 rather than
1e-4, which 1500 G steps need (docs/recipes.md has the calibration); each G step costs ~5 of cgan's.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.recipe import DNorm, Loss, Penalty, Recipe, RecipeConfig
from bench.registry import register
from bench.space import Domain, choice
from bench.variant import BUDGETS


@dataclass
class WGANGPConfig(RecipeConfig):
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.9
    d_steps: int = 5
    loss: Loss = "wasserstein"
    penalty: Penalty = "gp"
    d_norm: DNorm = "ln"


@register
class WGANGP(Recipe):
    name = "wgan-gp"
    summary = "Wasserstein GAN + gradient penalty (Gulrajani et al. 2017): n_critic 5, projection critic, D layer norm"
    Config = WGANGPConfig
    budgets = BUDGETS

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        own = {"penalty_weight": choice([1.0, 10.0] if space == "narrow" else [0.1, 1.0, 10.0, 100.0])}
        return super().search_space(space) | own
