"""The harness's standard ε-prediction training loop, bound to every ``TrainingJob`` it builds.

Defenses change training in four ways (the batch, the regression target, the stopping rule, the
whole procedure); ``fit`` takes the first three as hooks, and a defense that replaces the
procedure (DP-SGD, distillation) gets the same ``TrainingJob`` and may call ``job.fit`` for its parts.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_constant_schedule_with_warmup
from diffusers.training_utils import EMAModel

from benchmark.api.training import Monitor, RegressionTarget, TrainingJob, Transform, noised_batch
from benchmark.core import progress, runtime
from benchmark.core.loop_state import LoopCheckpoint


def fit(
    job: TrainingJob,
    unet: UNet2DModel,
    *,
    members: torch.Tensor | None = None,
    transform: Transform | None = None,
    regression_target: RegressionTarget | None = None,
    monitor: Monitor | None = None,
    seed: int | None = None,
    checkpoint_name: str = "checkpoint",
    title: str = "training target",
) -> dict[str, Any]:
    """Train ``unet`` in place on ``members`` (default: the job's) with MSE to the noise (or to
    ``regression_target``); batches cycle through seeded permutations of the set.

    Every ``runtime.checkpoint_every()`` steps the whole state (weights, optimizer, the data and
    noise generator, the pending permutation, the losses so far, the monitor's state) goes to
    ``job.scratch / checkpoint_name``; a killed run resumes there and ends with the same weights as
    an uninterrupted one.
    """
    members = job.members if members is None else members
    loop = _Loop(job, unet, members, monitor, job.seed if seed is None else seed, job.scratch / checkpoint_name)
    with progress.steps(title, job.recipe.train_steps) as advance:
        advance(loop.progress.step)
        while loop.progress.step < job.recipe.train_steps and not loop.stopped:
            loop.step(transform, regression_target)
            advance()
            loop.checkpoint_if_due()
    return loop.finish()


class _Loop:
    """The state of one ``fit`` call: model, optimizer, schedule, EMA, batch order, checkpoints."""

    def __init__(self, job: TrainingJob, unet: UNet2DModel, members: torch.Tensor, monitor: Monitor | None,
                 seed: int, folder) -> None:  # fmt: skip
        self.job, self.members, self.monitor, self.recipe = job, members, monitor, job.recipe
        self.accelerator = runtime.accelerator()
        self.generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(unet.parameters(), lr=self.recipe.learning_rate)
        warmup = self.recipe.warmup_steps
        self.schedule = get_constant_schedule_with_warmup(optimizer, warmup) if warmup else None
        self.checkpoints = LoopCheckpoint(folder, {"data": self.generator})
        self.progress, tensors, meta = self.checkpoints.restore(unet, optimizer)
        self.order = tensors.get("order", torch.empty(0, dtype=torch.long))
        if self.schedule is not None and meta:
            self.schedule.load_state_dict(meta["schedule"])
        if monitor is not None and meta:
            monitor.restore(_prefixed(tensors, "monitor."), meta["monitor"])
        self.unet, self.optimizer = self.accelerator.prepare(unet, optimizer)
        self.ema = None
        if self.recipe.ema_decay:  # made after prepare, so its copy lives on the training device
            self.ema = EMAModel(self.accelerator.unwrap_model(self.unet).parameters(), decay=self.recipe.ema_decay)
            if meta:
                shadow = [tensors[f"ema.{i}"] for i in range(len(self.ema.shadow_params))]
                self.ema.load_state_dict(meta["ema"] | {"shadow_params": shadow})
                self.ema.to(self.accelerator.device)
        self.unet.train()
        self.stopped = False

    def _batch(self) -> torch.Tensor:
        if len(self.order) < min(self.recipe.batch_size, len(self.members)):
            self.order = torch.cat([self.order, torch.randperm(len(self.members), generator=self.generator)])
        batch_ids, self.order = self.order[: self.recipe.batch_size], self.order[self.recipe.batch_size :]
        return batch_ids

    def step(self, transform: Transform | None, regression_target: RegressionTarget | None) -> None:
        """One optimiser step; every process draws the same global batch, trains on its slice, DDP averages."""
        accelerator, device = self.accelerator, self.accelerator.device
        batch_ids = self._batch()
        clean = self.members[batch_ids] if transform is None else transform(self.members[batch_ids], self.generator)
        noisy, t, noise = noised_batch(self.job.scheduler, clean, self.generator)
        wanted = noise if regression_target is None else regression_target(noisy, t, noise, batch_ids)
        mine = slice(accelerator.process_index, None, accelerator.num_processes)
        condition = {}
        if self.job.conditioning is not None:
            condition = {"encoder_hidden_states": self.job.conditioning[batch_ids][mine].to(device)}
        prediction = self.unet(noisy[mine].to(device), t[mine].to(device), **condition).sample
        loss = F.mse_loss(prediction, wanted[mine].to(device))
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(self.unet.parameters(), self.recipe.grad_clip)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        if self.ema is not None:
            self.ema.step(self.unet.parameters())
        self.progress.losses.append(accelerator.reduce(loss.detach(), "mean").item())
        self.progress.step += 1
        if self.monitor is not None:
            self.stopped = self.monitor.after_step(self.progress.step, accelerator.unwrap_model(self.unet))

    def checkpoint_if_due(self) -> None:
        if self.stopped or not self.accelerator.is_main_process:
            return
        if not self.checkpoints.due(self.progress, self.recipe.train_steps):
            return
        tensors, values = {"order": self.order}, {}
        if self.schedule is not None:
            values["schedule"] = self.schedule.state_dict()
        if self.ema is not None:
            ema_state = self.ema.state_dict()
            tensors |= {f"ema.{i}": p for i, p in enumerate(ema_state.pop("shadow_params"))}
            values["ema"] = ema_state
        if self.monitor is not None:
            monitor_tensors, values["monitor"] = self.monitor.state()
            tensors |= {f"monitor.{k}": v for k, v in monitor_tensors.items()}
        unet = self.accelerator.unwrap_model(self.unet)
        self.checkpoints.save(unet, self.optimizer, self.progress, tensors, values)

    def finish(self) -> dict[str, Any]:
        report = self.progress.report(epochs=self.progress.step * self.recipe.batch_size / len(self.members))
        if self.ema is not None:
            self.ema.copy_to(self.unet.parameters())
            report["weights"] = f"EMA, decay {self.recipe.ema_decay}"
        if self.monitor is not None:
            report |= self.monitor.finish(self.accelerator.unwrap_model(self.unet))
        return report


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
