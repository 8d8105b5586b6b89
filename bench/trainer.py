"""One training loop for every variant. It calls the variant's hooks, never its name."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from bench import faults
from bench.config import TrainConfig
from bench.data import Mnist
from bench.samples import generate, grid_png
from bench.variant import NUM_CLASSES, Variant

Scorer = Callable[[torch.Tensor, torch.Tensor | None], dict[str, float]]
# on_report(result, checkpoint_dir or None); the directory is only valid during the call.
OnReport = Callable[[dict[str, Any], Path | None], None]

STATE_FILE = "state.pt"
GRID_FILE = "grid.png"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Diverged(Exception):
    pass


class Trainer:
    def __init__(self, variant_cls: type[Variant], cfg: TrainConfig, mnist: Mnist,
                 device: torch.device | str | None = None, scorer: Scorer | None = None,
                 trial_key: str = "local"):
        self.cfg = cfg
        self.device = torch.device(device) if device else default_device()
        self.scorer = scorer
        self.trial_key = trial_key
        torch.manual_seed(cfg.seed)  # weight init
        self.variant = variant_cls(cfg, self.device)
        # The dataset stays resident on the training device; batches are drawn by index.
        self.images = mnist.train_images.to(self.device)
        self.labels = mnist.train_labels.to(self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.step = 0

    # --- checkpoints -------------------------------------------------------------------
    def save(self, directory: Path, final: bool = False) -> None:
        state = {"variant": self.variant.state_dict(), "step": self.step,
                 "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state()}
        torch.save(state, directory / STATE_FILE)
        (directory / "config.json").write_text(json.dumps(asdict(self.cfg), indent=1, sort_keys=True))
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
        return real, self.labels[idx]

    def train_step(self) -> dict[str, torch.Tensor]:
        v, c = self.variant, self.cfg
        for k in range(c.d_steps):
            real, labels = self._batch()
            fake_labels = torch.randint(0, NUM_CLASSES, (c.batch_size,), generator=self.gen, device=self.device)
            z = v.sample_z(c.batch_size, self.gen)
            last = k == c.d_steps - 1
            with torch.set_grad_enabled(last):  # the last fakes are reused by the G step
                fake = v.generate(z, fake_labels)
            d_losses = v.d_loss(real, labels, fake.detach(), fake_labels)
            v.opt_d.zero_grad(set_to_none=True)
            d_losses["d"].backward()
            v.opt_d.step()
        v.d.requires_grad_(False)  # G's backward pass need not fill D's gradients
        g_losses = v.g_loss(fake, fake_labels)
        v.opt_g.zero_grad(set_to_none=True)
        g_losses["g"].backward()
        v.opt_g.step()
        v.d.requires_grad_(True)
        losses = {("loss/d" if k == "d" else f"loss/d_{k}"): t.detach() for k, t in d_losses.items()}
        losses |= {("loss/g" if k == "g" else f"loss/g_{k}"): t.detach() for k, t in g_losses.items()}
        return losses

    def evaluate(self, n: int) -> dict[str, float]:
        if self.scorer is None:
            return {}
        images, labels = generate(self.variant, n, seed=self.cfg.seed)
        return self.scorer(images, labels if self.variant.conditional else None)

    def weights_finite(self) -> bool:
        return all(torch.isfinite(p).all() for m in (self.variant.g, self.variant.d) for p in m.parameters())

    def run(self, on_report: OnReport | None = None, resume_from: Path | None = None) -> dict[str, Any]:
        """Train to cfg.steps, reporting at every eval_every steps and at the end.

        Each report carries the loss windows logged since the previous one (`history`), so the
        caller can log every point exactly once; the final report has `final=1` and full-N metrics.
        """
        c = self.cfg
        if resume_from is not None:
            self.restore(resume_from)
        history: list[tuple[int, dict[str, float]]] = []
        window: dict[str, list[torch.Tensor]] = {}
        train_s, t0 = 0.0, time.perf_counter()
        steps_timed = 0
        result: dict[str, Any] = {}

        def report(final: bool, diverged: bool = False) -> dict[str, Any]:
            nonlocal history, train_s, t0, steps_timed
            train_s += time.perf_counter() - t0
            res: dict[str, Any] = {"step": self.step, "final": int(final), "diverged": int(diverged),
                                   "history": history,
                                   "perf/img_per_s": steps_timed * c.batch_size / max(train_s, 1e-9),
                                   "perf/train_s": train_s}
            if not diverged and (final or c.eval_every):
                t_eval = time.perf_counter()
                res |= self.evaluate(c.final_n if final else c.eval_n)
                res["perf/eval_s"] = time.perf_counter() - t_eval
            with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
                if not diverged:
                    self.save(Path(tmp), final=final)
                if on_report:
                    on_report(res, None if diverged else Path(tmp))
            history = []
            t0 = time.perf_counter()
            return res

        while self.step < c.steps:
            faults.before_step(self.step, self.trial_key)
            losses = self.train_step()
            self.step += 1
            steps_timed += 1
            if faults.poison(self.step):
                losses = {k: torch.full_like(t, math.nan) for k, t in losses.items()}
            for key, value in losses.items():
                window.setdefault(key, []).append(value)
            if self.step % c.log_every == 0 or self.step == c.steps:
                means = {k: torch.stack(v).mean().item() for k, v in window.items()}
                window = {}
                history.append((self.step, means))
                if not all(math.isfinite(x) for x in means.values()) or not self.weights_finite():
                    return report(final=True, diverged=True)
            if c.eval_every and self.step % c.eval_every == 0 and self.step < c.steps:
                result = report(final=False)
        result = report(final=True)
        return result
