"""The recipe parts against their definitions, every part choice through `--set`, and the
combinations that are refused."""

from __future__ import annotations

import math

import pytest
import torch
from test_variants import TINY, _assert_same, _step
from torch import nn

from bench import losses, nets, registry
from bench.errors import BenchError

REAL = torch.tensor([2.0, -0.5, 0.0])
FAKE = torch.tensor([-1.0, 0.5, 3.0])


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def mean(values) -> float:
    return sum(values) / len(values)


def test_losses_match_hand_computed_values():
    r, f = REAL.tolist(), FAKE.tolist()
    expected_d = {
        "ns": (mean([softplus(-x) for x in r]), mean([softplus(x) for x in f])),  # -log σ(x), -log(1 - σ(x))
        "minimax": (mean([softplus(-x) for x in r]), mean([softplus(x) for x in f])),
        "ls": (mean([0.5 * (x - 1) ** 2 for x in r]), mean([0.5 * x ** 2 for x in f])),  # a, b = 0, 1
        "hinge": (mean([max(0.0, 1 - x) for x in r]), mean([max(0.0, 1 + x) for x in f])),
        "wasserstein": (-mean(r), mean(f)),
    }
    expected_g = {"ns": mean([softplus(-x) for x in f]), "minimax": -mean([softplus(x) for x in f]),
                  "ls": mean([0.5 * (x - 1) ** 2 for x in f]), "hinge": -mean(f), "wasserstein": -mean(f)}
    for loss, (d_real, d_fake) in expected_d.items():
        got_real, got_fake = losses.d_adversarial(loss, REAL, FAKE)
        assert (float(got_real), float(got_fake)) == pytest.approx((d_real, d_fake), rel=1e-6), loss
        assert float(losses.g_adversarial(loss, FAKE)) == pytest.approx(expected_g[loss], rel=1e-6), loss


def test_least_squares_codes():
    a, b, c = -1.0, 1.0, 0.0  # the Pearson χ² codes of Mao et al. 2017
    d_real, d_fake = losses.d_adversarial("ls", REAL, FAKE, (a, b, c))
    assert float(d_real) == pytest.approx(mean([0.5 * (x - b) ** 2 for x in REAL.tolist()]))
    assert float(d_fake) == pytest.approx(mean([0.5 * (x - a) ** 2 for x in FAKE.tolist()]))
    g = losses.g_adversarial("ls", FAKE, (a, b, c))
    assert float(g) == pytest.approx(mean([0.5 * x ** 2 for x in FAKE.tolist()]))


def linear_critic(norm: float) -> nn.Module:
    """D(x) = wᵀx with ‖w‖ = norm: its gradient is w everywhere, so ‖∇D‖ = norm at every point."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 1, bias=False), nn.Flatten(0))
    with torch.no_grad():
        w = critic[1].weight
        w.mul_(norm / w.norm())
    return critic


def penalty(name: str, critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> float:
    return float(losses.penalty(name, critic, real, fake).detach())


@pytest.mark.parametrize("name", ["gp", "dragan"])
def test_gradient_penalties_vanish_on_a_1_lipschitz_critic(name):
    real, fake = torch.rand(16, 1, 28, 28) * 2 - 1, torch.rand(16, 1, 28, 28) * 2 - 1
    assert penalty(name, linear_critic(1.0), real, fake) == pytest.approx(0.0, abs=1e-10)
    assert penalty(name, linear_critic(3.0), real, fake) == pytest.approx(4.0, rel=1e-5)  # (3 - 1)²


def test_r1_is_half_the_squared_gradient_norm_on_reals():
    real, fake = torch.rand(16, 1, 28, 28), torch.rand(16, 1, 28, 28)
    assert penalty("r1", linear_critic(2.0), real, fake) == pytest.approx(2.0, rel=1e-5)  # ½·2²
    assert losses.penalty("none", linear_critic(2.0), real, fake) is None


def test_penalty_trains_the_critic():
    critic = linear_critic(3.0)
    value = losses.penalty("gp", critic, torch.rand(8, 1, 28, 28), torch.rand(8, 1, 28, 28))
    value.backward()
    assert critic[1].weight.grad is not None and critic[1].weight.grad.norm() > 0


def test_spectral_norm_brings_every_d_weight_to_unit_top_singular_value():
    cls = registry.get("sngan")
    v = cls(cls.make_config(TINY, {"d_channels": 8}))
    x, y = torch.rand(32, 1, 28, 28) * 2 - 1, torch.randint(0, 10, (32,))
    for _ in range(30):  # each training-mode forward runs one power iteration
        v.d(x, y)
    weights = [m.weight for m in v.d.modules() if isinstance(m, nets.WEIGHTED)]
    assert len(weights) >= 4  # two convs, the head, the projection embedding
    for w in weights:
        sigma = torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.02)
    raw = [m.parametrizations.weight.original for m in v.d.modules() if isinstance(m, nets.WEIGHTED)]
    assert any(abs(float(torch.linalg.matrix_norm(w.detach().flatten(1), ord=2)) - 1) > 0.1 for w in raw)


def test_conditional_batchnorm_scales_per_class():
    cbn = nets.ConditionalBatchNorm(4, dims=1)
    with torch.no_grad():
        cbn.gain.weight.copy_(torch.arange(1.0, 11.0).unsqueeze(1).expand(10, 4))
        cbn.shift.weight.zero_()
    x = torch.randn(64, 4)
    y = torch.randint(0, 10, (64,))
    normed = nn.BatchNorm1d(4, affine=False)(x)
    torch.testing.assert_close(cbn(x, y), normed * (y + 1).unsqueeze(1).float())


def test_code_accuracy_finds_the_best_matching():
    from bench.metrics import CodeAccuracy

    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 10, (2000,), generator=gen)
    perm = torch.randperm(10, generator=gen)
    predicted = perm[codes]
    noisy = torch.rand(2000, generator=gen) < 0.2
    predicted[noisy] = torch.randint(0, 10, (int(noisy.sum()),), generator=gen)
    metric = CodeAccuracy()
    metric.update(nn.functional.one_hot(predicted, 10).float(), codes)
    assert float(metric.compute()) == pytest.approx(float((predicted == perm[codes]).double().mean()))
    metric.reset()
    metric.update(nn.functional.one_hot(codes, 10).float(), codes)
    assert float(metric.compute()) == 1.0


# Every choice of every part, set on the variant where it makes sense, with the companions it needs.
PART_CHOICES = (
    [("cgan", {"arch": a}) for a in ("dcgan", "mlp", "upconv")]
    + [("gan", {"arch": a}) for a in ("dcgan", "upconv")]
    + [("cgan", {"loss": x}) for x in ("ns", "minimax", "ls", "hinge")]
    + [("cgan", {"loss": "wasserstein", "penalty": "gp", "d_norm": "none"}),
       ("cgan", {"loss": "wasserstein", "d_norm": "sn"})]
    + [("cgan", {"penalty": p, "d_norm": "ln"}) for p in ("gp", "dragan", "r1")]
    + [("cgan", {"d_norm": n}) for n in ("bn", "sn", "ln", "none")]
    + [("cgan", {"d_norm": n, "arch": "mlp"}) for n in ("bn", "ln")]
    + [("cgan", {"g_norm": n}) for n in ("sn", "none")]
    + [("cgan", {"g_norm": "sn", "arch": "mlp"})]
    + [("cgan", {"embed": e}) for e in ("multiply", "concat", "onehot", "cbn")]
    + [("cgan", {"embed": "cbn", "arch": a}) for a in ("mlp", "upconv")]
    + [("cgan", {"d_cond": d}) for d in ("projection", "channel", "concat", "ac", "tac")]
    + [("cgan", {"d_cond": d, "arch": "mlp"}) for d in ("channel", "concat")]
    + [("cgan", {"d_dropout": 0.25}), ("cgan", {"arch": "mlp", "mlp_act": "relu", "mlp_g": "64,128",
                                                 "mlp_d": "128,64"})]
)


@pytest.mark.parametrize(("name", "sets"), PART_CHOICES, ids=lambda x: x if isinstance(x, str) else
                         "-".join(f"{k}={v}" for k, v in x.items()))
def test_every_part_choice_builds_trains_and_round_trips(name, sets):
    cls = registry.get(name)
    cfg = cls.make_config(TINY, {k: str(v) for k, v in sets.items()})  # typed like --set values
    for key, value in sets.items():
        assert getattr(cfg, key) == value
    torch.manual_seed(0)
    v = cls(cfg)
    for _ in range(2):
        out = _step(v)
        assert all(math.isfinite(float(t)) for t in out.values()), out
    state = v.state_dict()
    fresh = cls(cfg)
    fresh.load_state_dict(state)
    _assert_same(v.state_dict(), fresh.state_dict())
    z, y = v.sample_z(10), torch.arange(10)
    v.g.eval()
    fresh.g.eval()
    with torch.no_grad():
        assert torch.equal(v.generate(z, y), fresh.generate(z, y))


@pytest.mark.parametrize(("name", "sets", "message"), [
    ("cgan", {"loss": "wasserstein"}, "needs a Lipschitz critic"),
    ("cgan", {"penalty": "gp"}, "BatchNorm in D mixes"),
    ("cgan", {"embed": "cbn", "g_norm": "none"}, "needs g_norm=bn"),
    ("cgan", {"embed": "none"}, "would ignore them"),
    ("cgan", {"d_cond": "none"}, "labels untrained"),
    ("gan", {"d_cond": "ac"}, "no class labels for D"),
    ("gan", {"embed": "concat"}, "is unconditional"),
    ("infogan", {"d_cond": "projection"}, "no class labels for D"),
    ("lsgan", {"ls_a": "1"}, "must differ"),
    ("cgan", {"mlp_g": "64,-1"}, "expected positive widths"),
    ("cgan", {"loss": "wgan"}, "expected one of ns, minimax, ls, hinge, wasserstein"),
])
def test_meaningless_combinations_are_refused(name, sets, message):
    cls = registry.get(name)
    with pytest.raises(BenchError, match=message):
        cls.make_config(TINY, sets)


def test_cli_refuses_a_meaningless_part_in_one_line(capsys):
    from bench.cli import main

    assert main(["run", "--variants", "gan,cgan", "--preset", "smoke", "--set", "d_cond=ac",
                 "--output", "/nonexistent/never-written"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: gan has no class labels"), err


def test_list_verbose_shows_each_part_and_its_choices(capsys):
    from bench.cli import main

    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out
    for key, choices in [("arch", "dcgan|mlp|upconv"), ("loss", "ns|minimax|ls|hinge|wasserstein"),
                         ("penalty", "none|gp|dragan|r1"), ("d_norm", "bn|sn|ln|none"),
                         ("embed", "multiply|concat|onehot|cbn|none"),
                         ("d_cond", "projection|channel|concat|ac|tac|none")]:
        assert any(line.strip().startswith(f"{key} = ") and f"[{choices}]" in line for line in out.splitlines()), key
    assert "defaults: loss='hinge', d_norm='sn', embed='cbn'" in out  # sngan's parts
    assert all(registry.get(n).summary in out for n in registry.names())



@pytest.mark.parametrize(("name", "gets"), [("cgan", "labels"), ("infogan", "codes"), ("gan", "neither")])
def test_the_scorer_gets_labels_or_codes(name, gets, mnist):
    from bench.trainer import Trainer

    seen = {}

    def scorer(images, labels, final, codes=None):
        seen.update(labels=labels, codes=codes)
        return {}

    cls = registry.get(name)
    Trainer(cls, cls.make_config(TINY), mnist, device="cpu", scorer=scorer).run()
    assert {k for k, v in seen.items() if v is not None} == ({gets} if gets != "neither" else set())
    if gets != "neither":
        assert sorted(seen[gets].tolist()) == sorted(i % 10 for i in range(TINY["final_n"]))
