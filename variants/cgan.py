"""cGAN: Conditional Generative Adversarial Nets (Mirza & Osindero 2014, arXiv 1411.1784).

G(z, y) and D(x, y) both see the label; non-saturating BCE on D's logits. Source recipe:
docs/recipes.md (documents 000 and 003; README "Source recipes" runs them as written). Design
choices and why:
- DCGAN-style G (Radford et al. 2015, arXiv 1511.06434): Linear → 7×7 → ConvTranspose k4 s2
  → 14×14 → ConvTranspose k4 s2 → 28×28, BatchNorm + ReLU, tanh. The documents' 3×3 convs
  after upsampling (`arch=upconv`) cost several times more at 28×28, too slow for the CPU
  smoke budget.
- D: two stride-2 convs (BatchNorm on the second; without it D learns blobs) → one logit.
- D sees the label by projection (Miyato & Koyama 2018, arXiv 1802.05637) by default; document
  003's label channel is `d_cond=channel`. G's embedding is multiplied into z (document 003)
  or concatenated (`embed=concat`, document 000); it keeps N(0, 1) init so classes differ at once.
- Adam(2e-4, 0.5); the smoke budget uses lr 1e-3 (document 003), which 1500 steps need.
Measured numbers: README ("Measured") and the reports under reports/.
"""

from __future__ import annotations

from bench.recipe import Recipe, RecipeConfig
from bench.registry import register
from bench.space import Domain, choice
from bench.variant import BUDGETS

# smoke: lr 1e-3 as in document 003 (see above); shared by the conditional conv recipes.
FAST_SMOKE = BUDGETS | {"smoke": BUDGETS["smoke"] | {"lr_g": 1e-3, "lr_d": 1e-3}}


@register
class CGAN(Recipe):
    name = "cgan"
    summary = "conditional GAN (Mirza & Osindero 2014): DCGAN-style conv G/D, projection D, BCE"
    Config = RecipeConfig  # the defaults are this recipe
    budgets = FAST_SMOKE

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        own = {"embed": choice(["concat", "multiply"])}
        if space == "wide":
            own |= {"d_cond": choice(["projection", "channel"]),
                    "g_channels": choice([16, 32, 64]), "d_channels": choice([16, 32, 64])}
        return super().search_space(space) | own
