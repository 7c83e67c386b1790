"""The harness's standard ε-prediction training loop, bound to every ``TrainingJob`` it builds.

Defenses change training in four ways (the batch, the regression target, the stopping rule, the
whole procedure); ``fit`` takes the first three as hooks, and a defense that replaces the
procedure (DP-SGD, distillation) gets the same ``TrainingJob`` and may call ``fit`` for its parts.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.optimization import get_constant_schedule_with_warmup
from diffusers.training_utils import EMAModel

from benchmark.api.training import Monitor, RegressionTarget, TrainingJob, Transform, noised_batch
from benchmark.core import progress, runtime
from benchmark.core.checkpoints import load_checkpoint, save_checkpoint


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
    recipe, scheduler = job.recipe, job.scheduler
    accelerator = runtime.accelerator()
    generator = torch.Generator().manual_seed(job.seed if seed is None else seed)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=recipe.learning_rate)
    schedule = get_constant_schedule_with_warmup(optimizer, recipe.warmup_steps) if recipe.warmup_steps else None
    order = torch.empty(0, dtype=torch.long)
    losses: list[float] = []
    step, seconds_before = 0, 0.0
    stopped = False
    checkpoints = job.scratch / checkpoint_name
    resumed = load_checkpoint(checkpoints)
    if resumed is not None:
        tensors, optimizer_state, meta = resumed
        unet.load_state_dict({k[len("unet.") :]: v for k, v in tensors.items() if k.startswith("unet.")})
        optimizer.load_state_dict(optimizer_state)
        generator.set_state(tensors["generator"])
        order, losses, step, seconds_before = tensors["order"], meta["losses"], meta["step"], meta["seconds"]
        if schedule is not None:
            schedule.load_state_dict(meta["schedule"])
        if monitor is not None:
            monitor.restore({k[len("monitor.") :]: v for k, v in tensors.items() if k.startswith("monitor.")},
                            meta["monitor"])  # fmt: skip
    unet, optimizer = accelerator.prepare(unet, optimizer)
    ema = None
    if recipe.ema_decay:  # made after prepare, so its copy lives on the training device
        ema = EMAModel(accelerator.unwrap_model(unet).parameters(), decay=recipe.ema_decay)
        if resumed is not None:
            shadow = [tensors[f"ema.{i}"] for i in range(len(ema.shadow_params))]
            ema.load_state_dict(resumed[2]["ema"] | {"shadow_params": shadow})
            ema.to(accelerator.device)
    unet.train()
    started = time.perf_counter()
    every = runtime.checkpoint_every()
    device = accelerator.device
    with progress.steps(title, recipe.train_steps) as advance:
        advance(step)
        while step < recipe.train_steps and not stopped:
            if len(order) < min(recipe.batch_size, len(members)):
                order = torch.cat([order, torch.randperm(len(members), generator=generator)])
            batch_ids, order = order[: recipe.batch_size], order[recipe.batch_size :]
            clean = members[batch_ids] if transform is None else transform(members[batch_ids], generator)
            noisy, t, noise = noised_batch(scheduler, clean, generator)
            wanted = noise if regression_target is None else regression_target(noisy, t, noise, batch_ids)
            # every process draws the same global batch; each trains on its slice and DDP averages
            mine = slice(accelerator.process_index, None, accelerator.num_processes)
            condition = (
                {}
                if job.conditioning is None
                else {"encoder_hidden_states": job.conditioning[batch_ids][mine].to(device)}
            )
            prediction = unet(noisy[mine].to(device), t[mine].to(device), **condition).sample
            loss = F.mse_loss(prediction, wanted[mine].to(device))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(unet.parameters(), recipe.grad_clip)
            optimizer.step()
            if schedule is not None:
                schedule.step()
            if ema is not None:
                ema.step(unet.parameters())
            losses.append(accelerator.reduce(loss.detach(), "mean").item())
            step += 1
            advance()
            if monitor is not None:
                stopped = monitor.after_step(step, accelerator.unwrap_model(unet))
            due = every and step % every == 0 and step < recipe.train_steps and not stopped
            if due and accelerator.is_main_process:
                state = {f"unet.{k}": v for k, v in accelerator.unwrap_model(unet).state_dict().items()}
                state |= {"generator": generator.get_state(), "order": order}
                meta = {"step": step, "losses": losses, "seconds": seconds_before + time.perf_counter() - started}
                if schedule is not None:
                    meta["schedule"] = schedule.state_dict()
                if ema is not None:
                    ema_state = ema.state_dict()
                    state |= {f"ema.{i}": p for i, p in enumerate(ema_state.pop("shadow_params"))}
                    meta["ema"] = ema_state
                if monitor is not None:
                    monitor_tensors, meta["monitor"] = monitor.state()
                    state |= {f"monitor.{k}": v for k, v in monitor_tensors.items()}
                save_checkpoint(checkpoints, state, optimizer.state_dict(), meta)
    tail = losses[-max(1, len(losses) // 10) :]
    report = {
        "steps": step,
        "resumed_from_step": resumed[2]["step"] if resumed else 0,
        "train_seconds": round(seconds_before + time.perf_counter() - started, 3),
        "final_train_loss": sum(tail) / len(tail),
        "epochs": step * recipe.batch_size / len(members),
    }
    if ema is not None:
        ema.copy_to(unet.parameters())
        report["weights"] = f"EMA, decay {recipe.ema_decay}"
    if monitor is not None:
        report |= monitor.finish(accelerator.unwrap_model(unet))
    return report
