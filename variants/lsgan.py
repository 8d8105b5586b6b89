"""LSGAN: Least Squares Generative Adversarial Networks (Mao et al. 2017, arXiv 1611.04076).

variants/cgan.py (same networks, label conditioning and budgets) with `loss=ls`: least squares
on D's raw output (source recipe: docs/recipes.md, document 001):

    D: ½·E[(D(x, y) − b)²] + ½·E[(D(G(z, y'), y') − a)²]      G: ½·E[(D(G(z, y'), y') − c)²]

Codes a = 0 (fake), b = 1 (real), c = 1 (what G wants D to believe), as in document 001;
(a, b, c) = (−1, 1, 0) is the paper's Pearson χ² form: `--set ls_a=-1 --set ls_c=0`.
Design choice and why: document 001 uses MLPs (README "Source recipes" runs them); we keep cgan's
conv networks so that cgan and lsgan differ in the loss only, which is the comparison LSGAN is
about. D's output is used raw (no sigmoid), as the paper requires. Measured numbers: README ("Measured").
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.recipe import Loss, RecipeConfig
from bench.registry import register
from bench.space import Domain, choice
from variants.cgan import CGAN


@dataclass
class LSGANConfig(RecipeConfig):
    loss: Loss = "ls"


@register
class LSGAN(CGAN):
    name = "lsgan"
    summary = "least-squares cGAN (Mao et al. 2017): cgan's conv G/D, MSE on D's raw output"
    Config = LSGANConfig

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        # Only the fake target moves: (a, b, c) = (0, 1, 1) or (−1, 1, 1), both with G aiming at
        # the real label. Sampling c independently would allow c = a (G chasing "fake").
        return super().search_space(space) | {"ls_a": choice([0.0, -1.0])}
