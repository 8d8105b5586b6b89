"""Fidelity, diversity and memorization from nearest neighbours in a feature space (Ray/MLflow-free).

- precision, recall (Kynkäänniemi et al. 2019, arXiv 1904.06991), k = PR_K = 3: the share of
  generated samples inside the real manifold (the union of balls around each real point reaching
  its k-th nearest real neighbour), and the share of real points inside the generated manifold.
- density, coverage (Naeem et al. 2020, arXiv 2002.09797), k = DC_K = 5: how many real balls
  contain a generated sample on average, divided by k (≈ 1 for real data, above 1 when samples
  crowd dense regions), and the share of real balls that hold at least one generated sample.
- memorization (see memorization()): the share of generated samples that sit closer to
  their nearest training point than any other training point does.

The definitions, including the strict `<`, follow the authors' reference code (the `prdc` package),
so the numbers agree with it on the same features. Distances are Euclidean in float64, computed by
torch in row blocks of CHUNK rows: a 10k × 10k comparison holds at most CHUNK × 10k distances.
The real side's radii depend only on the real features: knn_radii() computes them once, so a
caller can cache them beside the real features. Memorization searches 60k training features, so
nearest() ranks squared distances in float32 and measures the pair it finds in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

PR_K = 3
DC_K = 5
CHUNK = 512  # rows per distance block: 512 × 10k float64 is 40 MB, nearest's 512 × 60k float32 120 MB


def _distance_blocks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, float64 distances from a[rows] to every row of b) for consecutive blocks of a's rows."""
    a, b = a.double(), b.double()
    for start in range(0, len(a), CHUNK):
        rows = slice(start, min(start + CHUNK, len(a)))
        yield rows, torch.cdist(a[rows], b)


def knn_radii(features: torch.Tensor, ks: Sequence[int] = (PR_K, DC_K)) -> dict[int, torch.Tensor]:
    """k → (N,) float64 distance from each point to its k-th nearest other point, for every k in ks;
    one pass over the N × N distances however many ks."""
    k_max = max(ks)
    if len(features) <= k_max:
        raise ValueError(f"need more than {k_max} points for {k_max}-NN radii, got {len(features)}")
    # Column 0 of the k_max + 1 smallest is the point itself (distance 0), so column k is the k-th other.
    blocks = _distance_blocks(features, features)
    smallest = torch.cat([d.topk(k_max + 1, dim=1, largest=False).values for _, d in blocks])
    return {k: smallest[:, k].clone() for k in ks}


def nearest(queries: torch.Tensor, points: torch.Tensor, *,
            exclude: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(float64 distance, index) of each query's nearest row of points; exclude[i], when given, is
    a row of points that query i must skip (itself, to find a point's nearest *other* point).

    The search ranks |p|² − 2 q·p (the squared distance less the row's constant |q|²: one matmul
    per block, no square root) in float32, as cdist's matmul path does, then measures the pair it
    finds in float64: only a near-tie (~1e-6 relative) can pick another, equally near row."""
    q, p = queries.float(), points.float()
    p_sq = p.square().sum(dim=1)
    indices = []
    for start in range(0, len(q), CHUNK):
        rows = slice(start, min(start + CHUNK, len(q)))
        d = torch.addmm(p_sq, q[rows], p.T, alpha=-2)
        if exclude is not None:
            d[torch.arange(len(d)), exclude[rows]] = torch.inf
        indices.append(d.argmin(dim=1))
    index = torch.cat(indices)
    return (queries.double() - points.double()[index]).norm(dim=1), index


def prdc(real: torch.Tensor, fake: torch.Tensor, *, real_radii: dict[int, torch.Tensor] | None = None,
         pr_k: int = PR_K, dc_k: int = DC_K) -> dict[str, float]:
    """precision, recall (k = pr_k), density, coverage (k = dc_k) of fake features against real ones.

    real_radii: knn_radii(real, (pr_k, dc_k)), precomputed; computed here when None. One pass over
    the fake × real distances gives all four; the fake side's own radii (for recall) need a second.
    """
    if real_radii is None:
        real_radii = knn_radii(real, (pr_k, dc_k))
    real_pr, real_dc = real_radii[pr_k].double(), real_radii[dc_k].double()
    fake_pr = knn_radii(fake, (pr_k,))[pr_k]
    in_real_manifold = torch.zeros(len(fake), dtype=torch.bool)
    real_balls_hit = torch.zeros(len(fake), dtype=torch.float64)
    in_fake_manifold = torch.zeros(len(real), dtype=torch.bool)
    nearest_fake = torch.full((len(real),), torch.inf, dtype=torch.float64)
    for rows, d in _distance_blocks(fake, real):  # d[j, i] = |fake_j − real_i|
        in_real_manifold[rows] = (d < real_pr).any(dim=1)
        real_balls_hit[rows] = (d < real_dc).sum(dim=1).double()
        in_fake_manifold |= (d < fake_pr[rows, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, d.min(dim=0).values)
    return {"precision": in_real_manifold.double().mean().item(),
            "recall": in_fake_manifold.double().mean().item(),
            "density": (real_balls_hit.sum() / (dc_k * len(fake))).item(),
            "coverage": (nearest_fake < real_dc).double().mean().item()}


def memorization(fake: torch.Tensor, train: torch.Tensor) -> float:
    """Share of fake features closer to their nearest training feature t than t is to its nearest
    other training feature: samples inside the gap around one training image where no other real
    digit lies. It is 1 − the authenticity of Alaa et al. 2022 (arXiv 2102.08921), in the spirit of
    Meehan et al.'s (arXiv 2004.05675) data-copying test. Copies of training images score 1; real
    held-out images give the floor, so a value well above the floor flags copying. Only the training
    points that are some sample's nearest need their gap: 2 × N × N_train distances, no N_train² pass."""
    distance, index = nearest(fake, train)
    anchors = index.unique()
    gap = torch.empty(len(train), dtype=torch.float64)
    gap[anchors] = nearest(train[anchors], train, exclude=anchors)[0]
    return (distance < gap[index]).double().mean().item()
