"""Typed run configuration: shared fields, `--set key=value` parsing and range checks."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from bench.errors import BenchError, did_you_mean


def doc(default: Any, text: str) -> Any:
    """A dataclass field whose meaning is kept beside its default (shown by `bench list -v`)."""
    return field(default=default, metadata={"doc": text})


@dataclass
class TrainConfig:
    """Fields every variant shares. Presets set the budget; `--set` overrides any field."""

    seed: int = doc(0, "seed for weights, batches, noise and evaluation samples")
    steps: int = doc(2000, "generator updates")
    batch_size: int = doc(64, "images per discriminator and generator batch")
    z_dim: int = doc(100, "latent dimension, z ~ N(0, I)")
    lr_g: float = doc(2e-4, "Adam learning rate of the generator")
    lr_d: float = doc(2e-4, "Adam learning rate of the discriminator")
    beta1: float = doc(0.5, "Adam beta1 (Radford et al. 2015)")
    beta2: float = doc(0.999, "Adam beta2")
    d_steps: int = doc(1, "discriminator updates per generator update")
    eval_every: int = doc(500, "steps between periodic evaluations and checkpoints (0: final only)")
    eval_n: int = doc(1000, "samples per periodic evaluation (curves)")
    final_n: int = doc(10000, "samples for the final evaluation (the reported numbers)")
    eval_split: Literal["test", "val"] = doc(
        "test", "what the scores measure: test = the 10,000 MNIST test images (training on all 60,000 training "
                "images); val = the last 10,000 training images, held out from training (the search phase's)")
    cas: bool = doc(True, "final evaluation: train a classifier on the samples (eval/cas; conditional "
                          "variants; the costly metric)")
    log_every: int = doc(10, "steps per logged loss point (the mean over that window)")
    # Opt-in speed options, meant for GPUs (CPU speeds: benchmarks/throughput.py --options).
    amp: Literal["none", "bf16"] = doc("none", "autocast the forward passes of each training step to bfloat16 "
                                               "(weights, optimizer and evaluation stay float32)")
    channels_last: bool = doc(False, "NHWC memory layout for G, D and the batches (tensor-core convolutions)")
    compile_mode: Literal["none", "default", "reduce-overhead", "max-autotune"] = doc(
        "none", "torch.compile G and D (reduce-overhead: with CUDA graphs); compiling takes a while at the start, "
                "and a gradient penalty cannot be compiled (no double backward)")

    def check(self) -> None:
        """Raise BenchError for values no run can use."""
        positive = ["steps", "batch_size", "z_dim", "d_steps", "lr_g", "lr_d", "log_every"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise BenchError(f"{name} must be > 0, got {getattr(self, name)}; fix it with --set {name}=…")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise BenchError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("eval_n", "final_n"):
            if getattr(self, name) < 2:
                raise BenchError(f"{name} must be >= 2 samples, got {getattr(self, name)}")
        if self.seed < 0 or self.eval_every < 0:
            raise BenchError("seed and eval_every must be >= 0")


def _coerce(name: str, typ: Any, value: Any) -> Any:
    if get_origin(typ) is Literal:
        choices = get_args(typ)
        if value not in choices:
            raise BenchError(f"--set {name}={value}: expected one of {', '.join(map(str, choices))}")
        return value
    if typ is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise BenchError(f"--set {name}={value}: expected true or false")
    if typ is int and isinstance(value, float) and value.is_integer():
        value = int(value)
    try:
        out = typ(value)
    except (TypeError, ValueError):
        raise BenchError(f"--set {name}={value}: expected {typ.__name__}") from None
    if typ is int and isinstance(value, str) and str(out) != value.strip().lstrip("+"):
        raise BenchError(f"--set {name}={value}: expected int")
    return out


def field_types(cls: type[TrainConfig]) -> dict[str, type]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def describe(cls: type[TrainConfig]) -> list[tuple[str, Any, str]]:
    """(name, default, meaning) of every field; a variant that only redeclares a default keeps the
    meaning its base class wrote, and a field with fixed choices lists them."""
    rows = []
    for f, typ in zip(dataclasses.fields(cls), field_types(cls).values(), strict=True):
        text = next((g.metadata["doc"] for base in cls.__mro__ if dataclasses.is_dataclass(base)
                     for g in dataclasses.fields(base) if g.name == f.name and "doc" in g.metadata), "")
        if get_origin(typ) is Literal:
            text += f" [{'|'.join(map(str, get_args(typ)))}]"
        rows.append((f.name, f.default, text))
    return rows


def build(cls: type[TrainConfig], *layers: dict[str, Any]) -> TrainConfig:
    """Defaults, then each layer of overrides in order (preset, search sample, --set)."""
    types = field_types(cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key not in types:
                raise BenchError(f"unknown config key {key!r} for {cls.__name__}{did_you_mean(key, types)}; "
                                 f"keys: {', '.join(types)}")
            values[key] = _coerce(key, types[key], value)
    cfg = cls(**values)
    cfg.check()
    return cfg


def parse_sets(items: list[str]) -> dict[str, str]:
    """['lr_g=1e-3', 'embed=concat'] → {'lr_g': '1e-3', 'embed': 'concat'} (typed later by build)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set {item!r}: expected key=value, e.g. --set lr_g=1e-4")
        out[key.strip()] = value.strip()
    return out
