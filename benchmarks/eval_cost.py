"""What one evaluation of N samples costs, by part, on one thread: the numbers behind README's
"scoring 10,000 samples" row. Seeded training images stand in for samples (the cost depends on N,
not on what the images show); the real side (bench.metrics.Reference) is cached first, as
`bench run` does before trials start.

    python benchmarks/eval_cost.py [--n 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench import cas, data, evaluator, fidelity, metrics


def timed(fn, repeat: int) -> float:
    """Median wall seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net, mnist = evaluator.load(), data.load_mnist()
    ref = metrics.reference(net, mnist, cache_dir=data.cache_root() / "features")
    pick = torch.randperm(len(mnist.train_images), generator=torch.Generator().manual_seed(0))[:args.n]
    images, labels = mnist.train_images[pick], mnist.train_labels[pick]
    features = ref.train_features[pick]
    kw = {"evaluator": net, "reference": ref}
    rows = {
        "score (FID, KID, label metrics)": lambda: metrics.score(images, labels, evaluator=net,
                                                                 real_features=ref.features),
        "evaluate, periodic": lambda: metrics.evaluate(images, labels, final=False, **kw),
        "evaluate, final, cas=False": lambda: metrics.evaluate(images, labels, cas=False, **kw),
        "  of which precision/recall/density/coverage": lambda: fidelity.prdc(ref.features, features,
                                                                              real_radii=ref.radii),
        "  of which memorization": lambda: fidelity.memorization(features, ref.train_features,
                                                                         ref.train_gaps),
        "cas (final, on by default)": lambda: cas.cas(images, labels, mnist.test_images, mnist.test_labels),
    }
    print(f"N = {args.n}, one thread, median of {args.repeat}")
    base = None
    for name, fn in rows.items():
        seconds = timed(fn, 1 if name.startswith("cas") else args.repeat)
        base = base or seconds
        print(f"| {name} | {seconds:.2f} s | {seconds / base:.2f}× score |")


if __name__ == "__main__":
    main()
