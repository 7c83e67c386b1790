"""A diffusers ``UNet2DModel`` + ``DDPMScheduler`` trained by the harness on the members only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

from benchmark.api import TARGETS, DiffusionModel, Recipe, TrainableTarget, TrainingPlan, added_later, runtime

TRAINER_VERSION = 1  # bump when the training loop changes the weights it produces (joins the cache key)


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
    # the reference CIFAR-10 DDPM recipe needs these; off by default (and then out of every hash)
    attention_levels: list[int] = added_later([])
    dropout: float = added_later(0.0)
    warmup_steps: int = added_later(0)
    ema_decay: float = added_later(0.0)

    def validate(self) -> None:
        if not self.block_out_channels or any(c % 8 for c in self.block_out_channels):
            raise ValueError("block_out_channels must be a non-empty list of multiples of 8")
        for name in ("train_steps", "batch_size", "layers_per_block", "num_train_timesteps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if any(not 0 <= level < len(self.block_out_channels) for level in self.attention_levels):
            raise ValueError(f"attention_levels must index block_out_channels (0..{len(self.block_out_channels) - 1})")
        if not 0 <= self.dropout < 1 or not 0 <= self.ema_decay < 1 or self.warmup_steps < 0:
            raise ValueError("dropout and ema_decay must be in [0, 1) and warmup_steps ≥ 0")


def build_unet(config: DDPMUNetConfig, sample_shape: tuple[int, int, int]) -> UNet2DModel:
    channels, height, _ = sample_shape
    levels = len(config.block_out_channels)
    down = ["DownBlock2D"] * levels
    up = ["UpBlock2D"] * levels
    for level in {*config.attention_levels, *([levels - 1] if config.attention else [])}:
        down[level], up[levels - 1 - level] = "AttnDownBlock2D", "AttnUpBlock2D"
    return UNet2DModel(
        sample_size=height,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        norm_num_groups=min(32, min(config.block_out_channels)),
        dropout=config.dropout,
    )


def build_scheduler(config: DDPMUNetConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, beta_schedule=config.beta_schedule)


@TARGETS.register("ddpm_unet", "diffusers UNet2DModel + DDPMScheduler trained by the harness on the members")
class DDPMUNet(TrainableTarget[DDPMUNetConfig]):
    trainer_version = TRAINER_VERSION

    def training_plan(self, members: torch.Tensor, captions: Sequence[str] | None, seed: int) -> TrainingPlan:
        def new_unet() -> UNet2DModel:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                return build_unet(self.config, tuple(members.shape[1:]))

        c = self.config
        recipe = Recipe(c.train_steps, c.batch_size, c.learning_rate, c.grad_clip, c.warmup_steps, c.ema_decay)
        return TrainingPlan(new_unet, build_scheduler(c), members, recipe)

    def save(self, unet: torch.nn.Module, plan: TrainingPlan, folder: Path) -> None:
        DDPMPipeline(unet=unet, scheduler=plan.scheduler).save_pretrained(folder, safe_serialization=True)

    def load(self, folder: Path | None, sample_shape: tuple[int, ...]) -> DiffusionModel:
        pipeline = DDPMPipeline.from_pretrained(folder, use_safetensors=True)
        return DiffusionModel(pipeline.unet.to(runtime.device()).eval(), pipeline.scheduler)
