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
so the numbers agree with it on the same features. Every comparison is decided as float64 decides
it, at float32 speed: squared distances come from one float32 matmul per block of CHUNK rows, with
a rigorous bound on their error, and only the pairs within that bound of a radius (or of the k-th
neighbour) are measured again in float64. The real side's radii depend only on the real features:
knn_radii() computes them once, so a caller can cache them beside the real features. Memorization
searches 60k training features: nearest() ranks in float32 and measures the pair it finds in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

PR_K = 3
DC_K = 5
# Rows per distance block: 64 × 10k float32 is 2.5 MB, so the several passes over a block stay in
# cache (P/R/D/C at 10k: 3.0 s with 512 rows, 1.8 s with 64, one thread); nearest's 64 × 60k is 15 MB.
CHUNK = 64
SLACK_FACTOR = 2  # margin on the float32 error bound of _squared_distance_blocks
EXTRA_CANDIDATES = 8  # float32 candidates beyond k + 1 per row, so float64 rarely has to measure a whole row


def _squared_distance_blocks(a: torch.Tensor, b: torch.Tensor) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """(rows, d2, slack) for consecutive blocks of a's rows: d2 the float32 squared distances from
    a[rows] to every row of b (|a|² + |b|² − 2 a·b, one matmul), slack a bound on d2's error.

    The bound: each of |a|², |b|² and a·b in float32 is within (dim + 2) u of the sum of its terms'
    magnitudes (u = 2⁻²⁴, the rounding of the inputs included), which makes
    |d2 − d²| ≤ 2 (dim + 2) u (|a|² + |b|²); SLACK_FACTOR doubles that for the final additions."""
    a32, b32 = a.float(), b.float()
    a_sq, b_sq = a32.square().sum(dim=1), b32.square().sum(dim=1)
    u = SLACK_FACTOR * (a.shape[1] + 2) * 2.0 ** -24
    for start in range(0, len(a), CHUNK):
        rows = slice(start, min(start + CHUNK, len(a)))
        d2 = torch.addmm(b_sq, a32[rows], b32.T, alpha=-2).add_(a_sq[rows, None])
        yield rows, d2, (b_sq + a_sq[rows, None]).mul_(u)


def _exact(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """float64 Euclidean distances between paired rows (broadcast over leading dimensions)."""
    return (a.double() - b.double()).norm(dim=-1)


def _closer(d2: torch.Tensor, slack: torch.Tensor, radius: torch.Tensor, a: torch.Tensor,
            b: torch.Tensor) -> torch.Tensor:
    """Boolean |a_i − b_j| < radius (radius broadcast to d2's shape), as float64 decides it: the
    float32 d2 answers wherever it is farther from radius² than its slack, float64 the few others."""
    r2 = radius.square().float()
    closer = d2 < r2
    i, j = ((d2 - r2).abs_() <= slack).nonzero(as_tuple=True)
    closer[i, j] = _exact(a[i], b[j]) < radius.expand_as(d2)[i, j]
    return closer


def knn_radii(features: torch.Tensor, ks: Sequence[int] = (PR_K, DC_K)) -> dict[int, torch.Tensor]:
    """k → (N,) float64 distance from each point to its k-th nearest other point, for every k in ks;
    one pass over the N × N distances however many ks.

    float32 picks each row's k_max + 1 + EXTRA_CANDIDATES nearest, float64 measures and sorts them.
    A row where a point left out could still be nearer than the k_max-th (by the slack bound) is
    measured whole in float64, so the radii equal float64's."""
    k_max = max(ks)
    if len(features) <= k_max:
        raise ValueError(f"need more than {k_max} points for {k_max}-NN radii, got {len(features)}")
    n_candidates = min(len(features), k_max + 1 + EXTRA_CANDIDATES)
    smallest = []
    for rows, d2, slack in _squared_distance_blocks(features, features):
        candidates = d2.topk(n_candidates, dim=1, largest=False)
        exact = _exact(features[rows, None], features[candidates.indices]).sort(dim=1).values[:, :k_max + 1]
        # Column 0 of the k_max + 1 smallest is the point itself (distance 0), so column k is the k-th other.
        if n_candidates < len(features):
            unsafe = exact[:, k_max].square() > candidates.values[:, -1] - slack.max(dim=1).values
            for row in unsafe.nonzero().flatten().tolist():
                exact[row] = _exact(features[rows][row], features).topk(k_max + 1, largest=False).values
        smallest.append(exact)
    smallest = torch.cat(smallest)
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
    block = torch.empty(CHUNK, len(p))  # reused: a fresh block per step grew the heap to GBs on a 60k² pass
    for start in range(0, len(q), CHUNK):
        rows = slice(start, min(start + CHUNK, len(q)))
        d = torch.addmm(p_sq, q[rows], p.T, alpha=-2, out=block[: rows.stop - rows.start])
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
    covered = torch.zeros(len(real), dtype=torch.bool)
    for rows, d2, slack in _squared_distance_blocks(fake, real):  # d2[j, i] ≈ |fake_j − real_i|²
        block = (d2, slack)
        in_real_manifold[rows] = _closer(*block, real_pr[None], fake[rows], real).any(dim=1)
        in_dc_ball = _closer(*block, real_dc[None], fake[rows], real)
        real_balls_hit[rows] = in_dc_ball.sum(dim=1).double()
        covered |= in_dc_ball.any(dim=0)
        in_fake_manifold |= _closer(*block, fake_pr[rows, None], fake[rows], real).any(dim=0)
    return {"precision": in_real_manifold.double().mean().item(),
            "recall": in_fake_manifold.double().mean().item(),
            "density": (real_balls_hit.sum() / (dc_k * len(fake))).item(),
            "coverage": covered.double().mean().item()}


def memorization(fake: torch.Tensor, train: torch.Tensor, train_gaps: torch.Tensor | None = None) -> float:
    """Share of fake features closer to their nearest training feature t than t is to its nearest
    other training feature: samples inside the gap around one training image where no other real
    digit lies. It is 1 − the authenticity of Alaa et al. 2022 (arXiv 2102.08921), in the spirit of
    Meehan et al.'s (arXiv 2004.05675) data-copying test. Copies of training images score 1; real
    held-out images give the floor, so a value well above the floor flags copying.

    train_gaps: every training point's distance to its nearest other one (a cacheable N_train² pass);
    when None, only the training points that are some sample's nearest are measured."""
    distance, index = nearest(fake, train)
    if train_gaps is None:
        anchors = index.unique()
        train_gaps = torch.empty(len(train), dtype=torch.float64)
        train_gaps[anchors] = nearest(train[anchors], train, exclude=anchors)[0]
    return (distance < train_gaps[index]).double().mean().item()
