"""Search-space domains as plain data.

Variants describe what to search with these values; only `bench/tuner.py` translates them to
Ray Tune, so swapping the tuner never touches a recipe.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Loguniform:
    lo: float
    hi: float

    def sample(self, rng: random.Random) -> float:
        return math.exp(rng.uniform(math.log(self.lo), math.log(self.hi)))


@dataclass(frozen=True)
class Uniform:
    lo: float
    hi: float

    def sample(self, rng: random.Random) -> float:
        return rng.uniform(self.lo, self.hi)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)


@dataclass(frozen=True)
class Grid:
    """Every value once (a grid axis), rather than a random draw."""

    values: tuple[Any, ...]


Domain = Loguniform | Uniform | Choice


def loguniform(lo: float, hi: float) -> Loguniform:
    return Loguniform(lo, hi)


def uniform(lo: float, hi: float) -> Uniform:
    return Uniform(lo, hi)


def choice(values: list[Any] | tuple[Any, ...]) -> Choice:
    return Choice(tuple(values))


def grid(values: list[Any] | tuple[Any, ...]) -> Grid:
    return Grid(tuple(values))
