"""A recipe assembled from parts: backbone, adversarial loss, D regularizer, normalizations and
label conditioning, each a config field that `--set` swaps (`bench list -v` lists the choices).

`Recipe` implements the Variant hooks from those parts, so a variant file only states its paper, its
default parts and what is its own (InfoGAN's Q head). Combinations that cannot train as meant are
refused with the fix, never run silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from bench import losses, nets
from bench.config import TrainConfig, doc
from bench.errors import BenchError
from bench.variant import Variant

Arch = Literal["dcgan", "mlp", "upconv"]
Loss = Literal["ns", "minimax", "ls", "hinge", "wasserstein"]
Penalty = Literal["none", "gp", "dragan", "r1"]
DNorm = Literal["bn", "sn", "ln", "none"]
GNorm = Literal["bn", "sn", "none"]
Embed = Literal["multiply", "concat", "onehot", "cbn", "none"]
DCond = Literal["projection", "channel", "concat", "ac", "tac", "none"]
GRADIENT_PENALTIES = ("gp", "dragan", "r1")


@dataclass
class RecipeConfig(TrainConfig):
    """The parts of a recipe. Variants change defaults by redeclaring a field (`loss: Loss = "hinge"`)."""

    arch: Arch = doc("dcgan", "backbone of G and D: dcgan (stride-2 convs, DCGAN), mlp (documents 001/004), "
                              "upconv (nearest-neighbour upsampling + 3×3 convs, documents 000/003)")
    loss: Loss = doc("ns", "adversarial loss: ns (non-saturating BCE), minimax, ls (least squares, ls_a/b/c), "
                           "hinge, wasserstein (needs penalty=gp/dragan or d_norm=sn)")
    penalty: Penalty = doc("none", "D regularizer: gp (WGAN-GP), dragan, r1 (on reals), none")
    penalty_weight: float = doc(10.0, "weight of the penalty: λ of gp and dragan, γ of r1")
    d_norm: DNorm = doc("bn", "D normalization after each hidden layer but the first: bn, sn (spectral norm "
                              "on every D weight), ln (layer norm), none")
    g_norm: GNorm = doc("bn", "G normalization after each hidden layer (mlp: but the first): bn, sn, none")
    embed: Embed = doc("multiply", "how G sees the label: multiply (embedding ⊙ z), concat ([z, embedding]), "
                                   "onehot ([z, one-hot]), cbn (conditional BatchNorm), none (unconditional)")
    d_cond: DCond = doc("projection", "how D sees the label: projection (Miyato & Koyama 2018), channel (a second "
                                      "image channel), concat (an embedding joined to D's features), ac (auxiliary "
                                      "classifier), tac (twin auxiliary classifiers), none (unconditional)")
    aux_weight: float = doc(1.0, "weight of the classifier cross-entropies of d_cond=ac/tac")
    g_channels: int = doc(32, "conv G width: channels at the finest resolution (twice this below)")
    d_channels: int = doc(32, "conv D width: channels of its first conv (doubling per stride-2 conv)")
    d_dropout: float = doc(0.0, "D dropout: before the head (conv backbones), after each hidden layer (mlp)")
    mlp_g: str = doc("256,512,1024", "mlp G hidden widths, comma-separated")
    mlp_d: str = doc("1024,512,256", "mlp D hidden widths, comma-separated")
    mlp_act: Literal["lrelu", "relu"] = doc("lrelu", "mlp hidden activation: LeakyReLU(0.2) or ReLU")
    ls_a: float = doc(0.0, "loss=ls: target of fakes in D's loss")
    ls_b: float = doc(1.0, "loss=ls: target of reals in D's loss")
    ls_c: float = doc(1.0, "loss=ls: target G pushes its fakes towards")

    def check(self) -> None:
        super().check()
        for name in ("g_channels", "d_channels"):
            if getattr(self, name) <= 0:
                raise BenchError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("penalty_weight", "aux_weight"):
            if getattr(self, name) < 0:
                raise BenchError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.d_dropout < 1:
            raise BenchError(f"d_dropout must be in [0, 1), got {self.d_dropout}")
        for name in ("mlp_g", "mlp_d"):
            try:
                nets.widths(getattr(self, name))
            except ValueError:
                raise BenchError(f"{name}={getattr(self, name)!r}: expected positive widths, e.g. "
                                 f"--set {name}=1024,512,256") from None
        self._check_parts()

    def _check_parts(self) -> None:
        if self.loss == "ls" and self.ls_a == self.ls_b:
            raise BenchError(f"ls_a and ls_b must differ (got {self.ls_a}): D could not tell real from fake")
        if self.loss == "wasserstein" and self.penalty not in ("gp", "dragan") and self.d_norm != "sn":
            raise BenchError("loss=wasserstein needs a Lipschitz critic: add --set penalty=gp (WGAN-GP) or "
                             "--set d_norm=sn")
        if self.penalty in GRADIENT_PENALTIES and self.d_norm == "bn":
            raise BenchError(f"penalty={self.penalty} constrains each sample's gradient, but BatchNorm in D mixes "
                             "the samples of a batch (Gulrajani et al. 2017, §4): add --set d_norm=ln (or sn, none)")
        if self.penalty in GRADIENT_PENALTIES and self.compile_mode != "none":
            raise BenchError(f"penalty={self.penalty} differentiates D's gradient, which torch.compile cannot "
                             "(no double backward): drop --set compile_mode or use penalty=none")
        if self.embed == "cbn" and self.g_norm != "bn":
            raise BenchError(f"embed=cbn puts the label into G's BatchNorm layers; it needs g_norm=bn, "
                             f"got g_norm={self.g_norm}")


class Recipe(Variant):
    """The Variant hooks implemented from a RecipeConfig's parts."""

    Config = RecipeConfig
    cfg: RecipeConfig
    extra_latent: int = 0  # latent inputs beyond z_dim that a subclass draws itself (InfoGAN's continuous codes)

    @classmethod
    def check_config(cls, cfg: RecipeConfig) -> None:
        labelled = cls.conditional or cls.label_codes
        if labelled and cfg.embed == "none":
            raise BenchError(f"{cls.name} generates from labels: embed=none would ignore them; "
                             "choose multiply, concat, onehot or cbn")
        if not labelled and cfg.embed != "none":
            raise BenchError(f"{cls.name} is unconditional: embed must be none (got {cfg.embed}); "
                             "a conditional recipe is --variants cgan")
        if cls.conditional and cfg.d_cond == "none":
            raise BenchError(f"{cls.name} is conditional: d_cond=none would leave its labels untrained; "
                             "choose projection, channel, concat, ac or tac")
        if not cls.conditional and cfg.d_cond != "none":
            raise BenchError(f"{cls.name} has no class labels for D: d_cond must be none (got {cfg.d_cond})")

    def build(self) -> tuple[nn.Module, nn.Module]:
        c = self.cfg
        g, d = nets.Generator(c, c.z_dim + self.extra_latent), nets.Discriminator(c)
        self.extend_d(d)
        nets.init_normal(g)
        nets.init_normal(d)
        # Label embeddings that feed G or an image channel start at N(0, 1), so classes differ at once.
        for emb in (getattr(g, "embed", None), getattr(d, "label_map", None), getattr(d, "label_features", None)):
            if emb is not None:
                nn.init.normal_(emb.weight, 0.0, 1.0)
        for net, norm in ((g, c.g_norm), (d, c.d_norm)):
            if norm == "sn":
                nets.apply_spectral_norm(net)
        return g, d

    def extend_d(self, d: nets.Discriminator) -> None:
        """Add modules of the variant's own to D before init (they train with D's optimizer)."""

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.g(z, labels)

    def _ls(self) -> tuple[float, float, float]:
        return self.cfg.ls_a, self.cfg.ls_b, self.cfg.ls_c

    def d_loss(self, real, labels, fake, fake_labels, z) -> dict[str, torch.Tensor]:
        c = self.cfg
        out_real, h_real = self.d(real, labels)
        out_fake, h_fake = self.d(fake, fake_labels)
        loss_real, loss_fake = losses.d_adversarial(c.loss, out_real, out_fake, self._ls())
        out = {"real": loss_real.detach(), "fake": loss_fake.detach()}
        total = loss_real + loss_fake
        reg = losses.penalty(c.penalty, lambda x: self.d(x, labels)[0], real, fake)
        if reg is not None:
            out["penalty"] = reg.detach()
            total = total + c.penalty_weight * reg
        extra = self.d_extra(h_real, labels, h_fake, fake_labels, z, out)
        if extra is not None:
            total = total + extra
        return {"d": total} | out

    def d_extra(self, h_real, labels, h_fake, fake_labels, z, out: dict) -> torch.Tensor | None:
        """D's terms beyond the adversarial loss and penalty, from D's trunk features (weighted), or
        None; logs into `out`. Here: the classifier terms of d_cond=ac/tac."""
        if self.cfg.d_cond not in ("ac", "tac"):
            return None
        # ac (Odena et al. 2016): one classifier learns both reals and fakes. tac (Gong et al. 2019, as
        # in the authors' code): the classifier learns reals only and the twin learns G's fakes.
        cls_real = self.d.cls(h_real)
        ce_real = F.cross_entropy(cls_real, labels)
        if self.cfg.d_cond == "ac":
            key, ce_fake = "cls_fake", F.cross_entropy(self.d.cls(h_fake), fake_labels)
        else:
            key, ce_fake = "twin_fake", F.cross_entropy(self.d.twin(h_fake), fake_labels)
        out |= {"cls_real": ce_real.detach(), key: ce_fake.detach(),
                "acc_real": (cls_real.argmax(1) == labels).float().mean()}
        return self.cfg.aux_weight * (ce_real + ce_fake)

    def g_loss(self, fake, fake_labels, z) -> dict[str, torch.Tensor]:
        out_fake, h_fake = self.d(fake, fake_labels)
        adv = losses.g_adversarial(self.cfg.loss, out_fake, self._ls())
        out = {"adv": adv.detach()}
        extra = self.g_extra(h_fake, fake_labels, z, out)
        return {"g": adv} if extra is None else {"g": adv + extra} | out

    def g_extra(self, h_fake, fake_labels, z, out: dict) -> torch.Tensor | None:
        """G's terms beyond the adversarial loss (weighted), or None; logs into `out`. Here: d_cond=ac
        wants fakes classified as their labels; tac also wants the twin to fail on them, which
        cancels ac's pull towards easy-to-classify samples (Gong et al. 2019)."""
        c = self.cfg
        if c.d_cond not in ("ac", "tac"):
            return None
        ce = F.cross_entropy(self.d.cls(h_fake), fake_labels)
        out["cls"] = ce.detach()
        if c.d_cond == "tac":
            twin = F.cross_entropy(self.d.twin(h_fake), fake_labels)
            out["twin"] = twin.detach()
            return c.aux_weight * (ce - twin)
        return c.aux_weight * ce
