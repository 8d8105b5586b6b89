"""The contract every variant implements. The trainer calls these hooks and nothing else.

A variant owns its networks, its losses and its search space; the trainer owns the loop
(batches, noise, labels, optimizer steps, evaluation, checkpoints).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from bench.config import TrainConfig, build
from bench.space import Domain, choice, loguniform, uniform

# Budgets shared by every variant unless it overrides them. `standard` follows compare_gan's
# MNIST budget (Lucic et al. 2018): 20 epochs of 60k images at batch 64 = 18,750 G steps.
BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {"steps": 1500, "batch_size": 64, "eval_every": 500, "eval_n": 1000},
    "standard": {"steps": 18750, "batch_size": 64, "eval_every": 1875, "eval_n": 2000},
}


class Variant(ABC):
    """One GAN recipe. Subclasses set the class attributes and implement the four hooks."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for `bench list`
    conditional: ClassVar[bool] = True  # G takes class labels; label accuracy is scored
    # G's labels are an unsupervised categorical code (InfoGAN): scored as eval/code_accuracy instead.
    label_codes: ClassVar[bool] = False
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    budgets: ClassVar[dict[str, dict[str, Any]]] = BUDGETS

    def __init__(self, cfg: TrainConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.g, self.d = self.build()
        self.g.to(self.device)
        self.d.to(self.device)
        self.opt_g, self.opt_d = self.optimizers()

    @classmethod
    def make_config(cls, *layers: dict[str, Any]) -> TrainConfig:
        """The variant's config: defaults, then each layer of overrides (see config.build), checked."""
        cfg = build(cls.Config, *layers)
        cls.check_config(cfg)
        return cfg

    @classmethod  # noqa: B027 (a hook that has nothing to check by default)
    def check_config(cls, cfg: TrainConfig) -> None:
        """Raise BenchError for a config this variant cannot train as meant (beyond cfg.check())."""

    # --- hooks -------------------------------------------------------------------------
    @abstractmethod
    def build(self) -> tuple[nn.Module, nn.Module]:
        """Return (generator, discriminator), freshly initialised."""

    @abstractmethod
    def generate(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """G(z, y) → images N×1×28×28 in [-1, 1]. Unconditional variants ignore labels."""

    @abstractmethod
    def d_loss(self, real: torch.Tensor, labels: torch.Tensor, fake: torch.Tensor,
               fake_labels: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Discriminator losses (fake = G(z, fake_labels)); key 'd' is minimised, other keys are
        logged as loss/d_<key>."""

    @abstractmethod
    def g_loss(self, fake: torch.Tensor, fake_labels: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Generator losses on fakes that carry gradient; key 'g' is minimised."""

    def optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        c = self.cfg
        return (torch.optim.Adam(self.g.parameters(), lr=c.lr_g, betas=(c.beta1, c.beta2)),
                torch.optim.Adam(self.d.parameters(), lr=c.lr_d, betas=(c.beta1, c.beta2)))

    @classmethod
    def search_space(cls, space: str) -> dict[str, Domain]:
        """Domains (bench.space, plain data) over config fields; 'wide' and 'narrow' follow
        Lucic et al. 2018. Subclasses add their own knobs: `super().search_space(space) | {...}`.
        """
        if space == "wide":
            return {
                "lr_g": loguniform(1e-5, 1e-2),
                "lr_d": loguniform(1e-5, 1e-2),
                "beta1": uniform(0.0, 0.95),
                "d_steps": choice([1, 5]),
                "batch_size": choice([32, 64, 128]),
                "z_dim": choice([64, 100, 128]),
            }
        if space == "narrow":
            return {"lr_g": loguniform(1e-4, 1e-3), "lr_d": loguniform(1e-4, 1e-3)}
        raise ValueError(f"unknown search space {space!r}")

    # --- shared helpers ----------------------------------------------------------------
    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, generator=generator, device=self.device)

    def state_dict(self) -> dict[str, Any]:
        return {"g": self.g.state_dict(), "d": self.d.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.g.load_state_dict(state["g"])
        self.d.load_state_dict(state["d"])
        if "opt_g" in state:
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            # The config wins over the saved optimizer settings: PBT restores a checkpoint
            # under a mutated config, and that config's learning rates must take effect.
            c = self.cfg
            for opt, lr in ((self.opt_g, c.lr_g), (self.opt_d, c.lr_d)):
                for group in opt.param_groups:
                    group["lr"], group["betas"] = lr, (c.beta1, c.beta2)

