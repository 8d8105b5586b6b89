"""Adversarial losses and discriminator regularizers as functions of D's outputs, one place for
every recipe (the model is compare_gan's loss_lib / penalty_lib, Kurach et al. 2019, arXiv 1807.04720).

A loss maps D's raw outputs on real and fake batches to (D's loss on reals, D's loss on fakes) and
fakes to G's loss; a penalty maps a critic function and a batch to a scalar added to D's loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Critic = Callable[[torch.Tensor], torch.Tensor]


def ns_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """BCE of D's logits against 'real' (1) or 'fake' (0), the stable form of sigmoid + BCE."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def d_adversarial(loss: str, real: torch.Tensor, fake: torch.Tensor,
                  ls: tuple[float, float, float] = (0.0, 1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """D's loss as (term on reals, term on fakes), each a batch mean. `ls` = (a, b, c) of LSGAN."""
    a, b, _ = ls
    if loss in ("ns", "minimax"):  # D's side is the same BCE for both (Goodfellow et al. 2014)
        return ns_loss(real, real=True), ns_loss(fake, real=False)
    if loss == "ls":  # Mao et al. 2017, eq. 2
        return 0.5 * (real - b).pow(2).mean(), 0.5 * (fake - a).pow(2).mean()
    if loss == "hinge":  # Lim & Ye 2017; Miyato et al. 2018
        return F.relu(1.0 - real).mean(), F.relu(1.0 + fake).mean()
    if loss == "wasserstein":  # Arjovsky et al. 2017: D maximises E[D(x)] - E[D(G(z))]
        return -real.mean(), fake.mean()
    raise ValueError(f"unknown loss {loss!r}")


def g_adversarial(loss: str, fake: torch.Tensor, ls: tuple[float, float, float] = (0.0, 1.0, 1.0)) -> torch.Tensor:
    """G's loss on D's raw outputs for its fakes."""
    if loss == "ns":  # -log D(G(z)): the non-saturating form of Goodfellow et al. 2014, §3
        return ns_loss(fake, real=True)
    if loss == "minimax":  # log(1 - D(G(z))), the game as written; saturates when D wins
        return -ns_loss(fake, real=False)
    if loss == "ls":
        return 0.5 * (fake - ls[2]).pow(2).mean()
    if loss in ("hinge", "wasserstein"):
        return -fake.mean()
    raise ValueError(f"unknown loss {loss!r}")


def _grad_norm(critic: Critic, x: torch.Tensor) -> torch.Tensor:
    """‖∇ₓ critic(x)‖₂ per sample, differentiable (the penalty trains D through it)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(1).norm(2, dim=1)


def penalty(name: str, critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
    """The regularizer's value before its weight, or None for `none`. Randomness: torch's global RNG
    (seeded by the trainer and saved in checkpoints)."""
    if name == "none":
        return None
    n = real.shape[0]
    if name == "gp":  # Gulrajani et al. 2017: (‖∇D(x̂)‖ - 1)² on lines between reals and fakes
        eps = torch.rand(n, 1, 1, 1, device=real.device)
        return (_grad_norm(critic, eps * real + (1 - eps) * fake) - 1).pow(2).mean()
    if name == "dragan":  # Kodali et al. 2017: the same, around reals perturbed by 0.5·std·U[0, 1)
        alpha = torch.rand(n, 1, 1, 1, device=real.device)
        noisy = real + 0.5 * real.std() * torch.rand_like(real)
        return (_grad_norm(critic, alpha * real + (1 - alpha) * noisy) - 1).pow(2).mean()
    if name == "r1":  # Mescheder et al. 2018: ½‖∇D(x)‖² on reals
        return 0.5 * _grad_norm(critic, real).pow(2).mean()
    raise ValueError(f"unknown penalty {name!r}")
