"""Data augmentation during training (SecMI's study: flip and cutout lower ASR and AUC "to some extent").

Each member is seen under many random views, so the model fits the views' distribution rather than
the exact pixels an attack later queries with. The views are drawn from the training generator, so
a run is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.api import DEFENSES, Defense


@dataclass
class AugmentationConfig:
    """``flip``: horizontal flip with probability 1/2. ``crop_padding``: reflect-pad by this many
    pixels, then crop back to the original size at a random offset (0 turns cropping off)."""

    flip: bool = True
    crop_padding: int = 2

    def validate(self) -> None:
        if self.crop_padding < 0:
            raise ValueError("crop_padding must be ≥ 0")
        if not self.flip and not self.crop_padding:
            raise ValueError("turn on flip or set crop_padding > 0; with neither this is the `none` defense")


@DEFENSES.register("augmentation", "random horizontal flip and padded random crop of every training batch")
class Augmentation(Defense[AugmentationConfig]):
    def transform(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.config.flip:
            flip = torch.rand(len(batch), generator=generator) < 0.5
            batch = torch.where(flip[:, None, None, None], batch.flip(-1), batch)
        pad = self.config.crop_padding
        if pad:
            height, width = batch.shape[-2:]
            padded = F.pad(batch, (pad, pad, pad, pad), mode="reflect")
            dy, dx = torch.randint(0, 2 * pad + 1, (2, len(batch), 1), generator=generator)
            rows, cols = dy + torch.arange(height), dx + torch.arange(width)  # (batch, height), (batch, width)
            images = torch.arange(len(batch))[:, None, None, None]
            channels = torch.arange(batch.shape[1])[None, :, None, None]
            batch = padded[images, channels, rows[:, None, :, None], cols[:, None, None, :]]
        return batch

    def costs(self) -> dict:
        return {"flip": self.config.flip, "crop_padding": self.config.crop_padding}
