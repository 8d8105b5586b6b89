"""Training throughput (images/s) per variant: the trainer alone, one trial's loop inside a Ray task,
and K trainers packed on one device at once (separate processes, one thread each on the CPU), so you
can see what packing trials (`--gpus-per-trial 0.25`, `--cpus-per-trial`) buys on your machine.
Scoring, checkpoints and MLflow are left out: this is the training loop's speed. Prints a table and
writes a CSV.

    python benchmarks/throughput.py [--variants cgan,acgan,lsgan] [--steps 300] [--pack 1,2,4,8] [--csv t.csv]
                                    [--set arch=upconv ...]   # a recipe's parts, as `bench run --set`
                                    [--options gpu]           # + the trainer with each speed option

`--options` adds one "trainer" row per speed option (config fields amp, channels_last, compile_mode): `gpu`
(the default on CUDA) is bf16 autocast, channels_last, torch.compile, CUDA graphs and all together; `none`
(the default on a CPU) skips them; or a list like `amp=bf16 channels_last=true,amp=bf16` (a comma joins).

It imports Ray itself (for the "ray" row) rather than through bench.tuner: the package keeps Ray to that
module so its other commands work without it; a benchmark of Ray's overhead needs it by definition.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import time

import torch

from bench import registry
from bench.config import parse_sets
from bench.data import load_mnist
from bench.trainer import Trainer, default_device


def images_per_s(variant: str, steps: int, device: str, threads: int = 1, sets: dict | None = None) -> float:
    """Train `steps` G steps of the variant at its smoke config from scratch; images per second (after
    5 warm-up steps, which also pay for lazy initialisation)."""
    torch.set_num_threads(threads)
    cls = registry.get(variant)
    cfg = cls.make_config(cls.budgets["smoke"], sets or {})
    trainer = Trainer(cls, cfg, load_mnist(), device=device)
    for _ in range(5):
        trainer.train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * cfg.batch_size / (time.perf_counter() - start)


GPU_OPTIONS = ["amp=bf16", "channels_last=true", "compile_mode=default", "compile_mode=reduce-overhead",
               "amp=bf16,channels_last=true,compile_mode=max-autotune"]


def option_sets(spec: str, device: str) -> list[str]:
    if spec == "auto":
        spec = "gpu" if device == "cuda" else "none"
    return {"gpu": GPU_OPTIONS, "none": []}.get(spec, spec.split())


def _worker(args: tuple[str, int, str, int, dict], out) -> None:
    out.put(images_per_s(*args))


def packed(variant: str, steps: int, device: str, k: int, sets: dict | None = None) -> list[float]:
    """K trainers at once, each in its own process (as K Ray trials would be); each one's images/s."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=((variant, steps, device, 1, sets), out)) for _ in range(k)]
    for p in procs:
        p.start()
    rates = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return rates


def under_ray(variant: str, steps: int, device: str, sets: dict | None = None) -> float:
    import ray

    ray.init(num_cpus=1, num_gpus=1 if device == "cuda" else 0, include_dashboard=False, logging_level="ERROR")
    try:
        task = ray.remote(num_cpus=1, num_gpus=1 if device == "cuda" else 0)(images_per_s)
        return ray.get(task.remote(variant, steps, device, 1, sets))
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="cgan,acgan,lsgan")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pack", default="1,2,4,8", help="K values: trainers packed on the device at once")
    parser.add_argument("--no-ray", action="store_true", help="skip the row under Ray")
    parser.add_argument("--csv", default="throughput.csv")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config field, as bench run")
    parser.add_argument("--options", default="auto", help="speed options to time: gpu | none | 'k=v,k=v k=v' "
                                                          "(default: gpu on CUDA, none on a CPU)")
    args = parser.parse_args()
    sets = parse_sets(args.set)
    device = str(default_device())
    rows = []

    def add(variant: str, mode: str, k: int, rates: list[float]) -> None:
        rows.append({"variant": variant, "mode": mode, "k": k, "img_per_s": round(sum(rates)),
                     "per_trial": round(sum(rates) / k)})
        print(f"{variant:8s} {mode:12s} K={k:<2d} {sum(rates):8.0f} img/s in all, {sum(rates) / k:6.0f} per trial",
              flush=True)

    print(f"device {device}, one thread per trainer, {args.steps} steps each")
    for variant in registry.parse_list(args.variants):
        add(variant, "trainer", 1, [images_per_s(variant, args.steps, device, sets=sets)])
        for option in option_sets(args.options, device):
            add(variant, f"trainer+{option}", 1,
                [images_per_s(variant, args.steps, device, sets=sets | parse_sets(option.split(",")))])
        if not args.no_ray:
            add(variant, "ray", 1, [under_ray(variant, args.steps, device, sets)])
        for k in map(int, args.pack.split(",")):
            add(variant, "packed", k, packed(variant, args.steps, device, k, sets))
    with open(args.csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
