"""The Variant contract, checked for every registered variant, plus the registry's strictness.

Fast by design (tiny configs, CPU): the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import math
import random
import re

import pytest
import torch

from bench import registry
from bench.config import describe
from bench.data import NUM_CLASSES
from bench.errors import BenchError
from bench.recipe import RecipeConfig
from bench.variant import Variant

NAMES = registry.names()
TINY = {"steps": 3, "batch_size": 8, "eval_every": 0, "log_every": 1, "eval_n": 2, "final_n": 2}


def make(name: str, **over) -> Variant:
    cls = registry.get(name)
    torch.manual_seed(0)
    return cls(cls.make_config(TINY, over))


def test_expected_variants_registered():
    assert {"gan", "cgan", "acgan", "lsgan"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_builds(name):
    cls = registry.get(name)
    v = cls(cls.make_config())
    assert isinstance(v.g, torch.nn.Module) and isinstance(v.d, torch.nn.Module)
    assert v.name == name and v.summary and isinstance(v.conditional, bool)
    assert sum(p.numel() for p in v.g.parameters()) > 0
    assert sum(p.numel() for p in v.d.parameters()) > 0


@pytest.mark.parametrize("name", NAMES)
def test_trainer_steps_give_finite_losses_and_move_weights(name, mnist):
    from bench.trainer import Trainer

    cls = registry.get(name)
    cfg = cls.make_config(TINY)
    trainer = Trainer(cls, cfg, mnist, device="cpu", scorer=None)
    before = {f"{net}.{k}": p.detach().clone() for net in ("g", "d")
              for k, p in getattr(trainer.variant, net).named_parameters()}
    result = trainer.run()
    assert result.final and not result.diverged and result.step == TINY["steps"]
    points = [means for _, means in result.history]
    assert points and all("loss/d" in m and "loss/g" in m for m in points)
    assert all(math.isfinite(x) for m in points for x in m.values())
    after = {f"{net}.{k}": p.detach() for net in ("g", "d")
             for k, p in getattr(trainer.variant, net).named_parameters()}
    for net in ("g", "d"):
        changed = [k for k in before if k.startswith(net) and not torch.equal(before[k], after[k])]
        assert changed, f"{name}: no {net.upper()} parameter changed after {TINY['steps']} steps"


@pytest.mark.parametrize("name", NAMES)
def test_generate_shape_range_and_labels(name):
    v = make(name)
    v.g.eval()
    n = 2 * NUM_CLASSES
    z = v.sample_z(n, torch.Generator().manual_seed(1))
    y = torch.arange(n) % NUM_CLASSES
    with torch.no_grad():
        x = v.generate(z, y)
        x_other = v.generate(z, (y + 1) % NUM_CLASSES)
    assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    if v.conditional or v.label_codes:
        assert not torch.allclose(x, x_other), "G ignores its labels (or codes)"
    else:
        assert torch.equal(x, x_other), "unconditional G must ignore labels"


def _step(v: Variant, b: int = 8) -> dict[str, torch.Tensor]:
    """One D and one G update by hand (fills both optimizers' state); returns both losses."""
    real = torch.rand(b, 1, 28, 28) * 2 - 1
    labels = torch.randint(0, NUM_CLASSES, (b,))
    fake_labels = torch.randint(0, NUM_CLASSES, (b,))
    z = v.sample_z(b)
    fake = v.generate(z, fake_labels)
    v.opt_d.zero_grad()
    d_losses = v.d_loss(real, labels, fake.detach(), fake_labels, z)
    d_losses["d"].backward()
    v.opt_d.step()
    v.d.requires_grad_(False)
    v.opt_g.zero_grad()
    g_losses = v.g_loss(fake, fake_labels, z)
    g_losses["g"].backward()
    v.opt_g.step()
    v.d.requires_grad_(True)
    return {"d": d_losses["d"].detach(), "g": g_losses["g"].detach()}


def _assert_same(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name):
    v = make(name)
    for _ in range(2):
        _step(v)
    buf = io.BytesIO()
    torch.save(v.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    fresh = make(name, seed=1)  # different init, so loading must do the work
    fresh.load_state_dict(state)
    _assert_same(v.opt_g.state_dict(), fresh.opt_g.state_dict(), "opt_g")
    _assert_same(v.opt_d.state_dict(), fresh.opt_d.state_dict(), "opt_d")
    z = v.sample_z(10, torch.Generator().manual_seed(2))
    y = torch.arange(10)
    for mode in (False, True):  # eval (running BN stats) and train (batch stats)
        v.g.train(mode)
        fresh.g.train(mode)
        with torch.no_grad():
            assert torch.equal(v.generate(z, y), fresh.generate(z, y))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("space", ["wide", "narrow"])
def test_search_space(name, space):
    cls = registry.get(name)
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    own = fields - {f.name for f in dataclasses.fields(RecipeConfig)}  # beyond the shared parts
    domains = cls.search_space(space)
    assert set(domains) <= fields, f"keys that are not config fields: {set(domains) - fields}"
    assert set(Variant.search_space(space)) <= set(domains), "must extend super().search_space(space)"
    if own:
        assert own & set(domains), f"{name}: none of its own knobs {sorted(own)} is searched in {space!r}"
    rng = random.Random(0)
    for _ in range(5):
        sample = {k: d.sample(rng) for k, d in domains.items()}
        cfg = cls.make_config({"steps": 10}, sample)
        for k, value in sample.items():
            assert getattr(cfg, k) == pytest.approx(value)


@pytest.mark.parametrize("name", NAMES)
def test_config_defaults_and_docs(name):
    cls = registry.get(name)
    cls.make_config()
    for field_name, _, meaning in describe(cls.Config):
        assert meaning, f"{name}: config field {field_name} has no doc(...) here or in a base class"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("budget", ["smoke", "standard"])
def test_budgets_build_valid_configs(name, budget):
    cls = registry.get(name)
    assert budget in cls.budgets
    cfg = cls.make_config(cls.budgets[budget])
    assert cfg.steps > 0 and cfg.batch_size > 0


@pytest.mark.parametrize("name", NAMES)
def test_module_docstring_cites_arxiv_briefly_and_stays_in_the_repo(name):
    module = importlib.import_module(registry.get(name).__module__)
    doc = module.__doc__
    assert doc and re.search(r"arXiv \d{4}\.\d{4,5}", doc), module.__name__
    assert len(doc.strip().splitlines()) <= 15, f"{module.__name__}: numbers belong in the README and reports"
    assert ".md" not in doc.replace("docs/recipes.md", ""), f"{module.__name__} points outside the repository"


def test_duplicate_registration_raises():
    existing = registry.get("cgan")

    class Impostor(existing):  # same name, different class
        pass

    with pytest.raises(ValueError, match="registered twice"):
        registry.register(Impostor)
    assert registry.get("cgan") is existing
    assert registry.register(existing) is existing  # re-registering the same class is a no-op


def test_unknown_name_suggests_closest():
    with pytest.raises(BenchError, match="did you mean 'cgan'"):
        registry.get("cgann")
