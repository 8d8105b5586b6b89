"""GAN: Generative Adversarial Nets (Goodfellow et al. 2014, arXiv 1406.2661), unconditional.

Source recipe: docs/recipes.md (document 004): MLP G 256 → 512 → 1024 → 784 and D 1024 → 512
→ 256 → 1 with LeakyReLU 0.2, D dropout 0.3, N(0, 0.02) init, Adam(2e-4, 0.5); G trains with
the non-saturating loss of the paper's §3 rather than the minimax one, which saturates early
(`--set loss=minimax` runs it).
Design choices and why:
- BatchNorm on G's 512- and 1024-unit layers (as DCGAN and PyTorch-GAN): without it the
  plain MLP G drew few of the 10 digit classes within the smoke budget (`--set g_norm=none`
  is document 004 as written).
- D returns a logit; BCE on logits is the stable form of the document's sigmoid + BCE.
- Unconditional: G and D ignore labels; label accuracy is not scored.
- Smoke budget of 2400 steps (~2.5 epochs) rather than 1500: one epoch of an MLP GAN covers
  too few classes. Measured numbers: README ("Measured").
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.recipe import Arch, DCond, DNorm, Embed, Recipe, RecipeConfig
from bench.registry import register
from bench.space import Domain, choice, uniform
from bench.variant import BUDGETS


@dataclass
class GANConfig(RecipeConfig):
    arch: Arch = "mlp"
    d_norm: DNorm = "none"
    d_dropout: float = 0.3
    embed: Embed = "none"
    d_cond: DCond = "none"


@register
class GAN(Recipe):
    name = "gan"
    summary = "unconditional GAN (Goodfellow et al. 2014): MLP G/D, non-saturating BCE"
    conditional = False
    Config = GANConfig
    # smoke: 2400 steps (see above); lr stays at the document's 2e-4.
    budgets = BUDGETS | {"smoke": BUDGETS["smoke"] | {"steps": 2400, "batch_size": 64, "eval_every": 800}}

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        own = {"d_dropout": uniform(0.0, 0.5) if space == "wide" else choice([0.2, 0.3, 0.4])}
        return super().search_space(space) | own
