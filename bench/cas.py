"""Classification Accuracy Score (Ravuri & Vinyals 2019, arXiv 1905.10887): train a fresh classifier
on labelled generated digits, report its accuracy on real test digits.

High CAS needs samples that are both right for their label and varied enough to teach every digit;
label accuracy (the evaluator's verdict on each sample) sees only the first. The classifier is fixed
(CasNet, EPOCHS epochs of Adam, batch BATCH, no augmentation: CAS measures the samples, not the
recipe) and seeded, so a score changes only with the samples, the seed, the thread count and the
CPU kernels. It is the expensive metric (a training run): final evaluations only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bench.evaluator import accuracy, to_input

EPOCHS = 5
BATCH = 64
LR = 1e-3


class CasNet(nn.Module):
    """LeNet-sized CNN (118k weights): two 5×5 conv + pool blocks, one hidden layer."""

    def __init__(self) -> None:
        super().__init__()
        # 28 → conv5 → 24 → pool → 12 → conv5 → 8 → pool → 4, so 32 × 4 × 4 = 512 features.
        self.net = nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                 nn.Linear(512, 200), nn.ReLU(), nn.Linear(200, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, seed: int = 0, epochs: int = EPOCHS,
                     device: torch.device | str = "cpu") -> CasNet:
    """A CasNet trained from a seeded init on (images, labels): uint8 N×28×28 or float N×1×28×28 in [-1, 1]."""
    torch.manual_seed(seed)  # the caller (cas) restores the global RNG afterwards
    generator = torch.Generator().manual_seed(seed)
    model = CasNet().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, y = to_input(images).to(device), labels.long().to(device)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def cas(images: torch.Tensor, labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor, *,
        seed: int = 0, epochs: int = EPOCHS, threads: int | None = None,
        device: torch.device | str = "cpu") -> float:
    """Test accuracy of a CasNet trained on the generated (images, labels).

    threads: torch threads for the training (restored afterwards; None keeps the caller's, e.g. a
    Ray trial's). The caller's RNG and settings are restored. On the CPU the run is bit-reproducible
    (deterministic algorithms); on a GPU it is seeded but not forced deterministic, since cuBLAS
    would then demand CUBLAS_WORKSPACE_CONFIG set before CUDA starts."""
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    if threads:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(torch.device(device).type == "cpu" or old_deterministic)
    try:
        with torch.random.fork_rng(devices=[]):
            model = train_classifier(images, labels, seed=seed, epochs=epochs, device=device)
        return accuracy(model, test_images, test_labels)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_deterministic)
