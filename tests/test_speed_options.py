"""The opt-in speed options (amp, channels_last, compile_mode) train the same recipe, checked on the CPU.
Their speed is measured by benchmarks/throughput.py --options, never here."""

import pytest
import torch
from torch import nn

from bench import registry
from bench.errors import BenchError
from bench.samples import generate
from bench.trainer import Trainer

STEPS = {"steps": 3, "batch_size": 16, "eval_every": 0, "log_every": 1, "final_n": 20}


def _trainer(mnist, variant="cgan", **over):
    cls = registry.get(variant)
    return Trainer(cls, cls.make_config(STEPS | over), mnist, device="cpu")


def _losses(trainer) -> list[float]:
    return [value for _, losses in trainer.run().history for _, value in sorted(losses.items())]


def _convs(trainer) -> list[nn.Conv2d]:
    return [m for net in (trainer.variant.g, trainer.variant.d) for m in net.modules() if isinstance(m, nn.Conv2d)]


# conv nets with BN; spectral norm and conditional BN; layer norm with a gradient penalty; InfoGAN's Q head.
# wgan-gp with Adam β1 0.5 and one critic step: under its own β1 = 0, five critic steps turn a 1e-7 change of
# D's weights into a different loss at step 1 (36 vs 44, measured), so no two layouts could agree.
@pytest.mark.parametrize("variant, over", [("cgan", {}), ("sngan", {}), ("wgan-gp", {"beta1": 0.5, "d_steps": 1}),
                                           ("infogan", {})])
def test_channels_last_trains_the_same_weights(mnist, variant, over):
    reference = _losses(_trainer(mnist, variant, **over))  # built and run before the next: both use torch's global RNG
    nhwc = _trainer(mnist, variant, channels_last=True, **over)
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in _convs(nhwc))
    # the same losses, step after step, up to rounding that Adam amplifies (measured: 3e-4 relative, 3e-5 absolute)
    assert _losses(nhwc) == pytest.approx(reference, rel=1e-3, abs=1e-4)


def test_bf16_autocast_computes_in_bfloat16_and_tracks_float32(mnist):
    reference, bf16 = _losses(_trainer(mnist)), _trainer(mnist, amp="bf16")
    dtypes = set()
    for conv in _convs(bf16):
        conv.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    losses = _losses(bf16)
    assert torch.bfloat16 in dtypes  # the training step's convolutions ran in bf16
    assert {p.dtype for p in bf16.variant.g.parameters()} == {torch.float32}  # the weights did not
    assert losses == pytest.approx(reference, rel=0.05, abs=0.02)  # bf16 keeps ~3 significant digits
    assert losses != reference


def test_compiled_nets_train_like_eager_and_checkpoint_alike(mnist, tmp_path):
    eager = _trainer(mnist)
    reference, compiled = _losses(eager), _trainer(mnist, compile_mode="default")
    assert _losses(compiled) == pytest.approx(reference, rel=1e-3, abs=1e-5)
    assert compiled.variant.g.state_dict().keys() == eager.variant.g.state_dict().keys()
    compiled.save(tmp_path)
    restored = _trainer(mnist)  # eager, from the compiled run's checkpoint
    restored.restore(tmp_path)
    assert torch.equal(generate(restored.variant, 50, seed=0)[0], generate(compiled.variant, 50, seed=0)[0])


def test_compile_refuses_a_gradient_penalty():
    with pytest.raises(BenchError, match="double backward"):
        registry.get("wgan-gp").make_config({"compile_mode": "default"})
