"""One training loop for every variant. It calls the variant's hooks, never its name."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from bench.config import TrainConfig
from bench.data import NUM_CLASSES, Mnist
from bench.records import CONFIG_FILE, FINAL_PREFIX, GRID_FILE, STATE_FILE, History, TrialResult, periodic_key
from bench.samples import generate, grid_png
from bench.variant import Variant

# scorer(images, labels or None, final, codes=codes or None) → eval/* scores; final=False asks for the
# cheap periodic set; codes: the categorical codes the samples were drawn from (InfoGAN), else None.
Scorer = Callable[..., dict[str, float]]
# on_report(result, checkpoint_dir or None); the directory is only valid during the call.
OnReport = Callable[[TrialResult, Path | None], None]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Trainer:
    """Trains one variant under one config; `scorer` (optional) scores its samples at each report."""

    def __init__(self, variant_cls: type[Variant], cfg: TrainConfig, mnist: Mnist,
                 device: torch.device | str | None = None, scorer: Scorer | None = None):
        self.cfg = cfg
        self.device = torch.device(device) if device else default_device()
        self.scorer = scorer
        torch.manual_seed(cfg.seed)  # weight init
        self.variant = variant_cls(cfg, self.device)
        self._speed_options()
        # The dataset stays resident on the training device; batches are drawn by index.
        self.images = mnist.train_images.to(self.device)
        self.labels = mnist.train_labels.to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.step = 0

    def _speed_options(self) -> None:
        """channels_last and compile_mode change how G and D run, never their parameters or state_dict
        keys (Module.compile wraps the call in place), so checkpoints load with or without them."""
        c, v = self.cfg, self.variant
        for net in (v.g, v.d):
            if c.channels_last:
                net.to(memory_format=torch.channels_last)  # in place: the optimizers keep their parameters
            if c.compile_mode != "none":
                net.compile(mode=c.compile_mode)

    # --- checkpoints -------------------------------------------------------------------
    def save(self, directory: Path, final: bool = False) -> None:
        state = {"variant": self.variant.state_dict(), "step": self.step,
                 "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state()}
        torch.save(state, directory / STATE_FILE)
        (directory / CONFIG_FILE).write_text(json.dumps(asdict(self.cfg), indent=1, sort_keys=True))
        if final:
            grid_png(self.variant, directory / GRID_FILE, seed=self.cfg.seed)

    def restore(self, directory: Path) -> None:
        state = torch.load(Path(directory) / STATE_FILE, map_location=self.device, weights_only=True)
        self.variant.load_state_dict(state["variant"])
        self.step = int(state["step"])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])

    # --- loop --------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.images), (self.cfg.batch_size,), generator=self.gen, device=self.device)
        real = self.images[idx].unsqueeze(1).float().div_(127.5).sub_(1.0)
        if self.cfg.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return real, self.labels[idx]

    def _autocast(self):
        # bf16 keeps float32's exponent range, so no loss scaling is needed (unlike float16)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")

    def train_step(self) -> dict[str, torch.Tensor]:
        v, c = self.variant, self.cfg
        for k in range(c.d_steps):
            real, labels = self._batch()
            fake_labels = torch.randint(0, NUM_CLASSES, (c.batch_size,), generator=self.gen, device=self.device)
            z = v.sample_z(c.batch_size, self.gen)
            last = k == c.d_steps - 1
            with torch.set_grad_enabled(last), self._autocast():  # the last fakes are reused by the G step
                fake = v.generate(z, fake_labels)
            with self._autocast():
                d_losses = v.d_loss(real, labels, fake.detach(), fake_labels, z)
            v.opt_d.zero_grad(set_to_none=True)
            d_losses["d"].backward()
            v.opt_d.step()
        v.d.requires_grad_(False)  # G's backward pass need not fill D's gradients
        with self._autocast():
            g_losses = v.g_loss(fake, fake_labels, z)
        v.opt_g.zero_grad(set_to_none=True)
        g_losses["g"].backward()
        v.opt_g.step()
        v.d.requires_grad_(True)
        losses = {("loss/d" if k == "d" else f"loss/d_{k}"): t.detach() for k, t in d_losses.items()}
        losses |= {("loss/g" if k == "g" else f"loss/g_{k}"): t.detach() for k, t in g_losses.items()}
        return losses

    def evaluate(self, final: bool) -> dict[str, float]:
        """Scores of final_n samples as eval/*, or of eval_n samples as periodic/* (see TrialResult)."""
        if self.scorer is None:
            return {}
        images, labels = generate(self.variant, self.cfg.final_n if final else self.cfg.eval_n, seed=self.cfg.seed)
        v = self.variant
        scores = self.scorer(images, labels if v.conditional else None, final,
                             codes=labels if v.label_codes else None)
        return scores if final else {periodic_key(k) if k.startswith(FINAL_PREFIX) else k: v for k, v in scores.items()}

    def weights_finite(self) -> bool:
        return all(torch.isfinite(p).all() for m in (self.variant.g, self.variant.d) for p in m.parameters())

    def run(self, on_report: OnReport | None = None, resume_from: Path | None = None) -> TrialResult:
        """Train to cfg.steps, reporting every eval_every steps and at the end (or on divergence).

        Losses are averaged over windows of log_every steps; each report carries the windows
        since the previous one. The final report has `final` set and eval/* scores at final_n samples.
        """
        c = self.cfg
        if resume_from is not None:
            self.restore(resume_from)
        self.clock = _Clock()
        window: dict[str, list[torch.Tensor]] = {}
        history: History = []
        while self.step < c.steps:
            losses = self.train_step()
            self.step += 1
            self.clock.steps += 1
            for key, value in losses.items():
                window.setdefault(key, []).append(value)
            if self.step % c.log_every == 0 or self.step == c.steps:
                means = {k: torch.stack(v).mean().item() for k, v in window.items()}
                window = {}
                history.append((self.step, means))
                if not all(math.isfinite(x) for x in means.values()) or not self.weights_finite():
                    return self._report(history, on_report, final=True, diverged=True)
            if c.eval_every and self.step % c.eval_every == 0 and self.step < c.steps:
                self._report(history, on_report, final=False)
                history = []
        return self._report(history, on_report, final=True)

    def _report(self, history: History, on_report: OnReport | None, final: bool,
                diverged: bool = False) -> TrialResult:
        """Score (unless diverged), checkpoint (unless diverged) and hand the result to on_report.
        Scoring and reporting time is kept out of the training throughput."""
        c, clock = self.cfg, self.clock
        clock.pause()
        result = TrialResult(step=self.step, final=final, diverged=diverged, history=history,
                             metrics={"perf/img_per_s": clock.steps * c.batch_size / max(clock.train_s, 1e-9),
                                      "perf/train_s": clock.train_s})
        if not diverged:
            t_eval = time.perf_counter()
            result.metrics |= self.evaluate(final)
            result.metrics["perf/eval_s"] = time.perf_counter() - t_eval
        with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
            if not diverged:
                self.save(Path(tmp), final=final)
            if on_report:
                on_report(result, None if diverged else Path(tmp))
        clock.resume()
        return result


class _Clock:
    """Training wall time and steps since the run (or its resumption) started, pauses excluded."""

    def __init__(self) -> None:
        self.steps, self.train_s, self._t0 = 0, 0.0, time.perf_counter()

    def pause(self) -> None:
        self.train_s += time.perf_counter() - self._t0

    def resume(self) -> None:
        self._t0 = time.perf_counter()
