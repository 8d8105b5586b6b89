"""The trainer's contracts on a real variant: reproducible, resumable, divergence-safe."""

from functools import partial

import torch

from bench import registry
from bench.config import build
from bench.faults import Faults, FaultyTrainer
from bench.trainer import Trainer

TINY = {"steps": 40, "batch_size": 16, "eval_every": 20, "log_every": 5, "eval_n": 20, "final_n": 20}


def _trainer(mnist, scorer=None, trainer_cls=Trainer, **over):
    cls = registry.get("cgan")
    return trainer_cls(cls, build(cls.Config, TINY | over), mnist, device="cpu", scorer=scorer)


def _weights(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.variant.g.parameters()])


def test_same_seed_same_final_metrics(mnist, evaluator, real_test_features):
    from bench.metrics import score

    def scorer(images, labels, final, codes=None):
        return score(images, labels, evaluator=evaluator, real_features=real_test_features, seed=0)

    a, b = _trainer(mnist, scorer), _trainer(mnist, scorer)
    reports = []
    ra, rb = a.run(on_report=lambda result, _: reports.append(result)), b.run()
    # The periodic evaluation (eval_n samples) and the final one (final_n) never share a key.
    assert [r.final for r in reports] == [False, True]
    assert "periodic/fid" in reports[0].metrics and not any(k.startswith("eval/") for k in reports[0].metrics)
    assert "eval/fid" in ra.metrics and not any(k.startswith("periodic/") for k in ra.metrics)
    assert torch.equal(_weights(a), _weights(b))
    assert ra.history == rb.history
    evals = {k: v for k, v in ra.metrics.items() if k.startswith("eval/")}
    assert evals and evals == {k: v for k, v in rb.metrics.items() if k.startswith("eval/")}
    c = _trainer(mnist, seed=1)
    c.run()
    assert not torch.equal(_weights(a), _weights(c))


def test_resume_from_checkpoint_equals_uninterrupted_run(mnist, tmp_path):
    full = _trainer(mnist)
    full.run()
    saved = []

    def keep_first(result, ckpt):
        if not saved:
            (tmp_path / "ck").mkdir()
            for f in ckpt.iterdir():
                (tmp_path / "ck" / f.name).write_bytes(f.read_bytes())
            saved.append(result.step)

    _trainer(mnist).run(on_report=keep_first)
    resumed = _trainer(mnist)
    resumed.run(resume_from=tmp_path / "ck")
    assert saved == [20]
    assert torch.equal(_weights(full), _weights(resumed))


def test_reports_carry_each_loss_window_once(mnist):
    reports = []
    _trainer(mnist).run(on_report=lambda r, d: reports.append(r))
    steps = [s for r in reports for s, _ in r.history]
    assert steps == list(range(5, 41, 5))
    assert [r.final for r in reports] == [False, True]
    assert all(set(losses) >= {"loss/d", "loss/g"} for r in reports for _, losses in r.history)


def test_nan_loss_ends_as_diverged(mnist):
    reports = []
    faulty = partial(FaultyTrainer, faults=Faults(nan="cgan:12"))
    result = _trainer(mnist, trainer_cls=faulty).run(on_report=lambda r, d: reports.append((r, d)))
    assert result.diverged and result.final
    assert result.step == 15  # detected at the first logged window that holds the NaN
    assert reports[-1][1] is None  # no checkpoint of diverged weights
    assert not any(k.startswith("eval/") for k in result.metrics)  # nothing scored


def test_production_trainer_ignores_fault_variables(mnist, monkeypatch):
    monkeypatch.setenv("BENCH_FAULT_NAN", "1")
    result = _trainer(mnist, steps=10, eval_every=0).run()
    assert not result.diverged and result.step == 10


def test_a_fault_aimed_at_another_variant_spares_this_one(mnist, monkeypatch):
    monkeypatch.setenv("BENCH_FAULT_NAN", "acgan:1")
    faults = Faults.from_env()
    assert faults == Faults(nan="acgan:1")
    result = _trainer(mnist, trainer_cls=partial(FaultyTrainer, faults=faults), steps=10, eval_every=0).run()
    assert not result.diverged and result.step == 10
