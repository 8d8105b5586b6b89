"""cGAN: Conditional Generative Adversarial Nets (Mirza & Osindero 2014, arXiv 1411.1784).

G(z, y) and D(x, y) both see the label; non-saturating BCE on D's logits. Source recipe:
docs/recipes.md (documents 000 and 003). Design choices and why:
- DCGAN-style G (Radford et al. 2015, arXiv 1511.06434): Linear → 7×7 → ConvTranspose k4 s2
  → 14×14 → ConvTranspose k4 s2 → 28×28, BatchNorm + ReLU, tanh. The documents' 3×3 convs
  after upsampling cost several times more at 28×28, too slow for the CPU smoke budget.
- D: two stride-2 convs (BatchNorm on the second; without it D learns blobs) → one logit.
- D sees the label by projection (Miyato & Koyama 2018, arXiv 1802.05637) by default; document
  003's label channel is `d_cond=channel`. G's embedding is multiplied into z (document 003)
  or concatenated (`embed=concat`, document 000); it keeps N(0, 1) init so classes differ at once.
- Adam(2e-4, 0.5); the smoke budget uses lr 1e-3 (document 003), which 1500 steps need.
Measured numbers: README ("Measured") and the reports under reports/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from bench.config import TrainConfig, doc
from bench.data import NUM_CLASSES
from bench.errors import BenchError
from bench.registry import register
from bench.space import Domain, choice
from bench.variant import BUDGETS, Variant, init_normal, ns_loss


@dataclass
class ConvConfig(TrainConfig):
    """The widths of the conv G and D that cgan, lsgan and acgan share."""

    g_channels: int = doc(32, "G channels at 14×14 (twice this at 7×7)")
    d_channels: int = doc(32, "D channels at 14×14 (twice this at 7×7)")

    def check(self) -> None:
        super().check()
        for name in ("g_channels", "d_channels"):
            if getattr(self, name) <= 0:
                raise BenchError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass
class CGANConfig(ConvConfig):
    embed: Literal["concat", "multiply"] = doc(
        "multiply", "how G's label embedding joins z: multiply (doc 003) or concat (doc 000)")
    d_cond: Literal["projection", "channel"] = doc(
        "projection", "how D sees the label: projection (Miyato & Koyama 2018) or a second image channel (doc 003)")


class Generator(nn.Module):
    """(z, y) → 28×28 image: z ⊙ embed(y) (or [z, embed(y)]) → Linear → 7×7 → 14×14 → 28×28."""

    def __init__(self, z_dim: int, channels: int, embed: str = "multiply"):
        super().__init__()
        c = self.c = channels
        self.embed_mode = embed
        self.embed = nn.Embedding(NUM_CLASSES, z_dim)
        in_dim = 2 * z_dim if embed == "concat" else z_dim
        self.stem = nn.Sequential(nn.Linear(in_dim, 2 * c * 7 * 7, bias=False), nn.BatchNorm1d(2 * c * 7 * 7),
                                  nn.ReLU(True))
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True),  # 14×14
            nn.ConvTranspose2d(c, 1, 4, 2, 1), nn.Tanh(),  # 28×28
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        e = self.embed(y)
        h = torch.cat([z, e], 1) if self.embed_mode == "concat" else z * e
        return self.net(self.stem(h).view(-1, 2 * self.c, 7, 7))


class Discriminator(nn.Module):
    """(x, y) → one logit: 28 → 14 → 7 conv trunk; the label enters by projection or as a channel."""

    def __init__(self, channels: int, cond: str = "projection"):
        super().__init__()
        c = channels
        self.cond = cond
        if cond == "channel":
            self.label_map = nn.Embedding(NUM_CLASSES, 28 * 28)  # the label as a second image channel
        self.features = nn.Sequential(
            nn.Conv2d(2 if cond == "channel" else 1, c, 4, 2, 1), nn.LeakyReLU(0.2, True),  # 14×14
            nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2, True),  # 7×7
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * c * 7 * 7, 1)
        if cond == "projection":
            self.project = nn.Embedding(NUM_CLASSES, 2 * c * 7 * 7)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.cond == "channel":
            x = torch.cat([x, self.label_map(y).view(-1, 1, 28, 28)], 1)
        h = self.features(x)
        out = self.head(h).squeeze(1)
        if self.cond == "projection":
            out = out + (self.project(y) * h).sum(1)
        return out


@register
class CGAN(Variant):
    name = "cgan"
    summary = "conditional GAN (Mirza & Osindero 2014): DCGAN-style conv G/D, projection D, BCE"
    conditional = True
    Config = CGANConfig
    # smoke: lr 1e-3 as in document 003 (see above).
    budgets = BUDGETS | {"smoke": BUDGETS["smoke"] | {"steps": 1500, "batch_size": 64, "lr_g": 1e-3, "lr_d": 1e-3}}
    cfg: CGANConfig

    def build(self) -> tuple[nn.Module, nn.Module]:
        c = self.cfg
        g = Generator(c.z_dim, c.g_channels, c.embed)
        d = Discriminator(c.d_channels, c.d_cond)
        init_normal(g)
        init_normal(d)
        nn.init.normal_(g.embed.weight, 0.0, 1.0)
        if c.d_cond == "channel":
            nn.init.normal_(d.label_map.weight, 0.0, 1.0)
        return g, d

    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.g(z, labels)

    def d_loss(self, real, labels, fake, fake_labels) -> dict[str, torch.Tensor]:
        out_real = self.d(real, labels)
        out_fake = self.d(fake, fake_labels)
        loss_real, loss_fake = ns_loss(out_real, real=True), ns_loss(out_fake, real=False)
        return {"d": loss_real + loss_fake, "real": loss_real.detach(), "fake": loss_fake.detach()}

    def g_loss(self, fake, fake_labels) -> dict[str, torch.Tensor]:
        return {"g": ns_loss(self.d(fake, fake_labels), real=True)}

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        own = {"embed": choice(["concat", "multiply"])}
        if space == "wide":
            own |= {"d_cond": choice(["projection", "channel"]),
                    "g_channels": choice([16, 32, 64]), "d_channels": choice([16, 32, 64])}
        return super().search_space(space) | own
