"""Label-balanced samples from a generator: the same code scores a trial and `bench sample`."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from bench.data import NUM_CLASSES
from bench.variant import Variant


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """N×1×28×28 in [-1, 1] → N×28×28 uint8, exactly as a saved samples file stores them."""
    return ((images.squeeze(1) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def generate(variant: Variant, n: int, seed: int, batch: int = 1000,
             labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples with labels 0,1,…,9,0,1,… (or the n `labels` given) and noise from `seed`;
    G in eval mode (BN running stats).

    Scoring quantized uint8 images means `bench sample` + `bench evaluate` reproduce a trial's
    numbers bit for bit.
    """
    was_training = variant.g.training
    variant.g.eval()
    gen = torch.Generator(device=variant.device).manual_seed(seed)
    labels = (torch.arange(n) % NUM_CLASSES if labels is None else labels).to(variant.device)
    out = []
    for start in range(0, n, batch):
        y = labels[start:start + batch]
        out.append(to_uint8(variant.generate(variant.sample_z(len(y), gen), y)).cpu())
    variant.g.train(was_training)
    return torch.cat(out), labels.cpu()


def grid_png(variant: Variant, path, seed: int = 0) -> None:
    """10×10 grid, row r = label r (unconditional variants: 100 free samples)."""
    images, _ = generate(variant, 100, seed)
    tiles = images.reshape(10, 10, 28, 28).permute(1, 2, 0, 3).reshape(280, 280)  # row = label
    Image.fromarray(np.pad(tiles.numpy(), 2)).save(path)
