"""A diffusers ``UNet2DModel`` + ``DDPMScheduler`` trained by the harness on the members only."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from benchmark import progress, runtime
from benchmark.access import DiffusionModel
from benchmark.checkpoints import load_checkpoint, save_checkpoint
from benchmark.hashing import sha256_json
from benchmark.interfaces import Defense, Target, TrainedTarget
from benchmark.registry import TARGETS

TRAINER_VERSION = 1  # bump when the training loop changes the weights it produces


@dataclass
class DDPMUNetConfig:
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    attention: bool = False
    num_train_timesteps: int = 1000
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear"
    train_steps: int = 1000
    batch_size: int = 64
    learning_rate: float = 1e-3
    grad_clip: float = 1.0

    def validate(self) -> None:
        if not self.block_out_channels or any(c % 8 for c in self.block_out_channels):
            raise ValueError("block_out_channels must be a non-empty list of multiples of 8")
        for name in ("train_steps", "batch_size", "layers_per_block", "num_train_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")


def build_unet(config: DDPMUNetConfig, sample_shape: tuple[int, int, int]) -> UNet2DModel:
    channels, height, _ = sample_shape
    levels = len(config.block_out_channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    if config.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=height,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(32, min(config.block_out_channels)),
    )


def build_scheduler(config: DDPMUNetConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule)


def train(
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    members: torch.Tensor,
    config: DDPMUNetConfig,
    defense: Defense,
    seed: int,
    checkpoints: Path,
) -> dict:
    """ε-prediction MSE on the members; batches cycle through seeded permutations of the set.

    Every ``runtime.checkpoint_every()`` steps the whole state (weights, optimizer, the data and
    noise generator, the pending permutation, the losses so far) goes to ``checkpoints``; a killed
    run resumes there and ends with the same weights as an uninterrupted one.
    """
    accelerator = runtime.accelerator()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.learning_rate)
    order = torch.empty(0, dtype=torch.long)
    losses: list[float] = []
    step, seconds_before = 0, 0.0
    resumed = load_checkpoint(checkpoints)
    if resumed is not None:
        tensors, optimizer_state, meta = resumed
        unet.load_state_dict({k[len("unet.") :]: v for k, v in tensors.items() if k.startswith("unet.")})
        optimizer.load_state_dict(optimizer_state)
        generator.set_state(tensors["generator"])
        order, losses, step, seconds_before = tensors["order"], meta["losses"], meta["step"], meta["seconds"]
    unet, optimizer = accelerator.prepare(unet, optimizer)
    unet.train()
    started = time.perf_counter()
    every = runtime.checkpoint_every()
    with progress.steps("training target", config.train_steps) as advance:
        advance(step)
        while step < config.train_steps:
            if len(order) < min(config.batch_size, len(members)):
                order = torch.cat([order, torch.randperm(len(members), generator=generator)])
            batch_ids, order = order[: config.batch_size], order[config.batch_size :]
            clean = defense.transform(members[batch_ids], generator)
            noise = torch.randn(clean.shape, generator=generator)
            t = torch.randint(0, config.num_train_timesteps, (len(clean),), generator=generator)
            noisy = scheduler.add_noise(clean, noise, t)
            device = accelerator.device
            prediction = unet(noisy.to(device), t.to(device)).sample
            loss = F.mse_loss(prediction, noise.to(device))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(unet.parameters(), config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            advance()
            if every and step % every == 0 and step < config.train_steps:
                state = {f"unet.{k}": v for k, v in accelerator.unwrap_model(unet).state_dict().items()}
                state |= {"generator": generator.get_state(), "order": order}
                elapsed = seconds_before + time.perf_counter() - started
                save_checkpoint(
                    checkpoints, state, optimizer.state_dict(), {"step": step, "losses": losses, "seconds": elapsed}
                )
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "steps": config.train_steps,
        "resumed_from_step": resumed[2]["step"] if resumed else 0,
        "train_seconds": round(seconds_before + time.perf_counter() - started, 3),
        "final_train_loss": sum(tail) / len(tail),
        "epochs": config.train_steps * config.batch_size / len(members),
    }


@TARGETS.register("ddpm_unet", "diffusers UNet2DModel + DDPMScheduler trained by the harness on the members")
class DDPMUNet(Target):
    Config = DDPMUNetConfig

    def obtain(self, members: torch.Tensor, defense: Defense, seed: int, cache, key: dict) -> TrainedTarget:
        target_hash = sha256_json({"key": key, "seed": seed, "trainer": TRAINER_VERSION})

        def build(folder: Path, scratch: Path) -> dict:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                unet = build_unet(self.config, tuple(members.shape[1:]))
            scheduler = build_scheduler(self.config)
            report = train(unet, scheduler, members, self.config, defense, seed, scratch / "checkpoint")
            report["defense_costs"] = defense.costs()
            unet = runtime.accelerator().unwrap_model(unet).to("cpu").eval()
            DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)
            return report

        folder, report = cache.get_or_build("targets", target_hash, build)
        pipeline = DDPMPipeline.from_pretrained(folder, use_safetensors=True)
        unet = pipeline.unet.to(runtime.device()).eval()
        return TrainedTarget(DiffusionModel(unet, pipeline.scheduler), target_hash, report)
