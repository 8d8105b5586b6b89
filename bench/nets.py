"""Backbones, normalizations and label conditioning that every recipe assembles (the `arch`,
`g_norm`, `d_norm`, `embed` and `d_cond` parts). Layer order and defaults are documented in
docs/recipes.md; each builder returns plain torch modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from bench.data import NUM_CLASSES

if TYPE_CHECKING:
    from bench.recipe import RecipeConfig

IMAGE = 28 * 28
WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def init_normal(module: nn.Module, std: float = 0.02) -> None:
    """N(0, 0.02) weights, zero biases, BN weight N(1, 0.02) (Radford et al. 2015)."""
    for m in module.modules():
        if isinstance(m, WEIGHTED):
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    for m in module.modules():  # after the loop above, which drew its embeddings as weights
        if isinstance(m, ConditionalBatchNorm):
            nn.init.normal_(m.gain.weight, 1.0, std)
            nn.init.zeros_(m.shift.weight)


def apply_spectral_norm(module: nn.Module) -> None:
    """Spectral norm (Miyato et al. 2018) on every weight of `module`: call after init."""
    for m in [m for m in module.modules() if isinstance(m, WEIGHTED)]:
        spectral_norm(m)


class ConditionalBatchNorm(nn.Module):
    """BatchNorm without affine, then a per-class gain and shift (de Vries et al. 2017, as in
    Miyato & Koyama 2018's generator): the label enters G at every normalized layer."""

    def __init__(self, features: int, dims: int):
        super().__init__()
        self.bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(features, affine=False)
        self.gain, self.shift = nn.Embedding(NUM_CLASSES, features), nn.Embedding(NUM_CLASSES, features)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (-1, x.shape[1]) + (1,) * (x.dim() - 2)
        return self.bn(x) * self.gain(y).view(shape) + self.shift(y).view(shape)


class LabelSequential(nn.Sequential):
    """nn.Sequential that hands the labels to the layers that take them (conditional BN)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, y) if isinstance(layer, ConditionalBatchNorm) else layer(x)
        return x


def _norm(kind: str, features: int, dims: int, cbn: bool = False) -> list[nn.Module]:
    """The normalization layer after a hidden layer ([] for sn and none: sn wraps weights instead)."""
    if kind == "bn":
        if cbn:
            return [ConditionalBatchNorm(features, dims)]
        return [nn.BatchNorm1d(features) if dims == 1 else nn.BatchNorm2d(features)]
    if kind == "ln":  # over all of a sample's features; GroupNorm(1, C) is LayerNorm over (C, H, W)
        return [nn.LayerNorm(features) if dims == 1 else nn.GroupNorm(1, features)]
    return []


def _act(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.2, True) if kind == "lrelu" else nn.ReLU(True)


def widths(text: str) -> list[int]:
    """'1024,512,256' → [1024, 512, 256]; ValueError unless every width is a positive int."""
    out = [int(w) for w in text.split(",")]
    if not out or min(out) <= 0:
        raise ValueError(text)
    return out


# --- generators: (latent width, config, conditional BN?) → layers from a latent vector to 1×28×28 ---------
def _g_dcgan(n_in: int, c: RecipeConfig, cbn: bool) -> list[nn.Module]:
    ch, bn = c.g_channels, c.g_norm == "bn"
    return [nn.Linear(n_in, 2 * ch * 49, bias=not bn), *_norm(c.g_norm, 2 * ch * 49, 1, cbn), nn.ReLU(True),
            nn.Unflatten(1, (2 * ch, 7, 7)),
            nn.ConvTranspose2d(2 * ch, ch, 4, 2, 1, bias=not bn), *_norm(c.g_norm, ch, 2, cbn), nn.ReLU(True),  # 14²
            nn.ConvTranspose2d(ch, 1, 4, 2, 1), nn.Tanh()]  # 28²


def _g_upconv(n_in: int, c: RecipeConfig, cbn: bool) -> list[nn.Module]:
    ch, bn = c.g_channels, c.g_norm == "bn"

    def up(c_in: int, c_out: int) -> list[nn.Module]:
        return [nn.Upsample(scale_factor=2), nn.Conv2d(c_in, c_out, 3, 1, 1, bias=not bn),
                *_norm(c.g_norm, c_out, 2, cbn), nn.ReLU(True)]

    return [nn.Linear(n_in, 2 * ch * 49, bias=not bn), *_norm(c.g_norm, 2 * ch * 49, 1, cbn), nn.ReLU(True),
            nn.Unflatten(1, (2 * ch, 7, 7)), *up(2 * ch, 2 * ch), *up(2 * ch, ch),  # 14², 28²
            nn.Conv2d(ch, 1, 3, 1, 1), nn.Tanh()]


def _g_mlp(n_in: int, c: RecipeConfig, cbn: bool) -> list[nn.Module]:
    hidden, bn = widths(c.mlp_g), c.g_norm == "bn"
    layers: list[nn.Module] = [nn.Linear(n_in, hidden[0]), _act(c.mlp_act)]  # no norm on the first layer
    for w_in, w in zip(hidden, hidden[1:], strict=False):
        layers += [nn.Linear(w_in, w, bias=not bn), *_norm(c.g_norm, w, 1, cbn), _act(c.mlp_act)]
    return layers + [nn.Linear(hidden[-1], IMAGE), nn.Tanh(), nn.Unflatten(1, (1, 28, 28))]


# --- discriminator trunks: (input channels, config) → (layers from 1×28×28 to features, feature width) ----
def _d_dcgan(k: int, c: RecipeConfig) -> tuple[list[nn.Module], int]:
    ch = c.d_channels
    return [nn.Conv2d(k, ch, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 14² (no norm on D's first layer: DCGAN)
            nn.Conv2d(ch, 2 * ch, 4, 2, 1, bias=c.d_norm != "bn"), *_norm(c.d_norm, 2 * ch, 2),
            nn.LeakyReLU(0.2, True), nn.Flatten()], 2 * ch * 49  # 7²


def _d_upconv(k: int, c: RecipeConfig) -> tuple[list[nn.Module], int]:
    ch, bias = c.d_channels, c.d_norm != "bn"
    return [nn.Conv2d(k, ch, 3, 2, 1), nn.LeakyReLU(0.2, True),  # 14²
            nn.Conv2d(ch, 2 * ch, 3, 2, 1, bias=bias), *_norm(c.d_norm, 2 * ch, 2), nn.LeakyReLU(0.2, True),  # 7²
            nn.Conv2d(2 * ch, 4 * ch, 3, 2, 1, bias=bias), *_norm(c.d_norm, 4 * ch, 2), nn.LeakyReLU(0.2, True),
            nn.Flatten()], 4 * ch * 16  # 4²


def _d_mlp(k: int, c: RecipeConfig) -> tuple[list[nn.Module], int]:
    hidden, drop = widths(c.mlp_d), [nn.Dropout(c.d_dropout)] if c.d_dropout else []
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(k * IMAGE, hidden[0]), _act(c.mlp_act), *drop]
    for w_in, w in zip(hidden, hidden[1:], strict=False):
        layers += [nn.Linear(w_in, w, bias=c.d_norm != "bn"), *_norm(c.d_norm, w, 1), _act(c.mlp_act), *drop]
    return layers, hidden[-1]


G_ARCHS = {"dcgan": _g_dcgan, "upconv": _g_upconv, "mlp": _g_mlp}
D_ARCHS = {"dcgan": _d_dcgan, "upconv": _d_upconv, "mlp": _d_mlp}


class Generator(nn.Module):
    """(latent, y) → 1×28×28 in [-1, 1]. `embed` says how y enters: multiplied into or concatenated
    to the latent (a learned embedding), a one-hot concatenated, per-class BN gains (cbn), or not at all."""

    def __init__(self, c: RecipeConfig, latent: int):
        super().__init__()
        self.mode = c.embed
        if c.embed in ("multiply", "concat"):
            self.embed = nn.Embedding(NUM_CLASSES, latent)
        n_in = latent + {"concat": latent, "onehot": NUM_CLASSES}.get(c.embed, 0)
        self.net = LabelSequential(*G_ARCHS[c.arch](n_in, c, c.embed == "cbn"))

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.mode == "multiply":
            z = z * self.embed(y)
        elif self.mode == "concat":
            z = torch.cat([z, self.embed(y)], 1)
        elif self.mode == "onehot":
            z = torch.cat([z, nn.functional.one_hot(y, NUM_CLASSES).to(z.dtype)], 1)
        return self.net(z, y)


class Discriminator(nn.Module):
    """(x, y) → (one adversarial output per image, trunk features). `d_cond` says how y enters: a
    second image channel, a projection on the features (Miyato & Koyama 2018), an embedding concatenated
    to the features, or not at all (ac/tac: classifier heads `cls`/`twin` on the features instead)."""

    def __init__(self, c: RecipeConfig):
        super().__init__()
        self.cond = c.d_cond
        if c.d_cond == "channel":
            self.label_map = nn.Embedding(NUM_CLASSES, IMAGE)  # the label as a second image channel
        layers, width = D_ARCHS[c.arch](2 if c.d_cond == "channel" else 1, c)
        if c.d_dropout and c.arch != "mlp":  # the mlp trunk drops out after every hidden layer instead
            layers.append(nn.Dropout(c.d_dropout))
        self.features = nn.Sequential(*layers)
        if c.d_cond == "concat":
            self.label_features = nn.Embedding(NUM_CLASSES, IMAGE)
        self.head = nn.Linear(width + (IMAGE if c.d_cond == "concat" else 0), 1)
        if c.d_cond == "projection":
            self.project = nn.Embedding(NUM_CLASSES, width)
        if c.d_cond in ("ac", "tac"):
            self.cls = nn.Linear(width, NUM_CLASSES)
        if c.d_cond == "tac":
            self.twin = nn.Linear(width, NUM_CLASSES)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cond == "channel":
            x = torch.cat([x, self.label_map(y).view(-1, 1, 28, 28)], 1)
        h = self.features(x)
        out = self.head(torch.cat([h, self.label_features(y)], 1) if self.cond == "concat" else h).squeeze(1)
        if self.cond == "projection":
            out = out + (self.project(y) * h).sum(1)
        return out, h
