"""TAC-GAN: Twin Auxiliary Classifiers GAN (Gong et al. 2019, arXiv 1907.02690).

ACGAN's classifier loss pushes G towards samples that are easy to classify, which shrinks each
class's diversity (its "bias"). TAC-GAN adds a twin classifier that learns to tell G's fakes'
labels, and G is also trained to fool it; the two terms together make G match p(x | y):
    D: adv + aux_weight · [CE(cls(x), y) + CE(twin(G(z, y')), y')]
    G: adv + aux_weight · [CE(cls(G(z, y')), y') − CE(twin(G(z, y')), y')]
As in the authors' code the classifier learns from real images only (ACGAN's also from fakes).
How we differ: acgan's networks, budgets and aux_weight, with the twin head on D's shared trunk,
so `--variants acgan,tacgan` isolates the twin: watch label accuracy (ACGAN's bias raises it)
against intra-FID and recall (the diversity TAC-GAN restores).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.recipe import DCond, RecipeConfig
from bench.registry import register
from variants.acgan import ACGAN


@dataclass
class TACGANConfig(RecipeConfig):
    d_cond: DCond = "tac"


@register
class TACGAN(ACGAN):
    name = "tacgan"
    summary = "twin auxiliary classifier GAN (Gong et al. 2019): acgan + a twin classifier on fakes"
    Config = TACGANConfig
