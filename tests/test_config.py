"""--set parsing and type checks against the typed config."""

import pytest

from bench.config import TrainConfig, build, parse_sets
from bench.errors import BenchError


def test_overrides_are_typed():
    cfg = build(TrainConfig, {"steps": 10}, parse_sets(["lr_g=1e-3", "batch_size=32", "seed=7"]))
    assert (cfg.steps, cfg.lr_g, cfg.batch_size, cfg.seed) == (10, 1e-3, 32, 7)
    assert isinstance(cfg.batch_size, int) and isinstance(cfg.lr_g, float)


@pytest.mark.parametrize("item, message", [
    ("lr_g=abc", "expected float"),
    ("batch_size=3.5", "expected int"),
    ("lr_g=0", "lr_g must be > 0"),
    ("lr_d=-1", "lr_d must be > 0"),
    ("beta1=1.5", "beta1 must be in [0, 1)"),
    ("final_n=1", "final_n must be >= 2"),
    ("stepz=5", "did you mean 'steps'"),
    ("eval_split=train", "expected one of test, val"),
])
def test_bad_values_are_refused(item, message):
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        build(TrainConfig, parse_sets([item]))


def test_set_needs_key_and_value():
    with pytest.raises(BenchError, match="expected key=value"):
        parse_sets(["lr_g"])
