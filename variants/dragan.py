"""DRAGAN: On Convergence and Stability of GANs (Kodali et al. 2017, arXiv 1705.07215).

The non-saturating GAN loss plus a gradient penalty around the real data: with x̃ = x + 0.5·std(x)·u,
u ~ U[0, 1), and x̂ = αx + (1 − α)x̃,
    D: BCE(D(x) → 1) + BCE(D(G(z)) → 0) + λ·E[(‖∇D(x̂)‖ − 1)²]       G: BCE(D(G(z)) → 1)
λ = 10 and the perturbation as in the authors' code; no BatchNorm in D (the penalty is per sample).
How we differ: the paper is unconditional; ours is cgan with only the regularizer (and D's norm)
changed: the same conv G/D, projection D and budgets, so the comparison with cgan isolates DRAGAN's
penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.recipe import DNorm, Penalty, Recipe, RecipeConfig
from bench.registry import register
from bench.space import Domain, loguniform
from variants.cgan import FAST_SMOKE


@dataclass
class DRAGANConfig(RecipeConfig):
    penalty: Penalty = "dragan"
    d_norm: DNorm = "none"


@register
class DRAGAN(Recipe):
    name = "dragan"
    summary = "DRAGAN (Kodali et al. 2017): cgan + gradient penalty around perturbed reals, no D norm"
    Config = DRAGANConfig
    budgets = FAST_SMOKE

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        return super().search_space(space) | {"penalty_weight": loguniform(1.0, 100.0)}
