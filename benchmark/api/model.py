"""The model record every part of the benchmark passes around (threat models: :mod:`benchmark.core.protocol`).

It lives in the plugin API because targets build it, defenses train it and attacks are scored
against it; nothing here knows about caches, training loops or result cards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import SchedulerMixin
    from transformers import PreTrainedTokenizerBase


@dataclass
class DiffusionModel:
    """A noise-prediction network and the noise schedule it was trained with.

    Latent text-to-image models add two encoders: ``encode_images`` maps pixel images to what the
    UNet denoises (VAE latents), and ``encode_text`` maps captions to the UNet's cross-attention
    condition; ``tokenizer`` is the text encoder's (for pad tokens and word-to-token positions).
    Attacks then work in latent space with each image's caption as condition, through the same
    access views.
    """

    unet: torch.nn.Module
    scheduler: SchedulerMixin
    encode_images: Callable[[torch.Tensor], torch.Tensor] | None = None
    encode_text: Callable[[Sequence[str]], torch.Tensor] | None = None
    latent_shape: tuple[int, int, int] | None = None
    tokenizer: PreTrainedTokenizerBase | None = None

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        if self.latent_shape is not None:
            return self.latent_shape
        config = self.unet.config
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return (config.in_channels, height, width)

    @property
    def text_conditioned(self) -> bool:
        return self.encode_text is not None

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """What attacks see of ``images``: the images themselves, or their latents."""
        if self.encode_images is None or not len(images):
            return images
        with torch.inference_mode():
            return self.encode_images(images).float().cpu()

    def forward(self, x: torch.Tensor, t: torch.Tensor, captions: Sequence[str] | None = None) -> torch.Tensor:
        """``ε_θ(x, t[, caption])`` for one batch, uncounted (utility measurement, not attacks)."""
        if captions is None:
            return self.unet(x, t).sample
        return self.unet(x, t, encoder_hidden_states=self.encode_text(captions)).sample

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device


UTILITY_TIMESTEPS = 10
UTILITY_NOISE_SEED = 20261127


def denoising_mse(
    model: DiffusionModel, images: torch.Tensor, captions: Sequence[str] | None = None, batch_size: int = 256
) -> float:
    """Mean ε-prediction MSE over fixed timesteps and noise (in latent space, conditioned on each
    image's caption, for a text-to-image target). The harness's utility and early stopping's
    validation loss are this one number, so a defense stops on what the card reports."""
    images = model.prepare(images)
    captions = captions if model.text_conditioned else None
    steps = int(model.scheduler.config.num_train_timesteps)
    timesteps = torch.linspace(0, steps - 1, UTILITY_TIMESTEPS).round().long()
    generator = torch.Generator().manual_seed(UTILITY_NOISE_SEED)
    total, count = 0.0, 0
    with torch.inference_mode():
        for t in timesteps:
            noise = torch.randn(images.shape, generator=generator)
            noisy = model.scheduler.add_noise(images, noise, t.repeat(len(images)))
            for start in range(0, len(images), batch_size):
                chunk = noisy[start : start + batch_size].to(model.device)
                rows = None if captions is None else captions[start : start + batch_size]
                predicted = model.forward(chunk, t.repeat(len(chunk)).to(model.device), rows).cpu()
                total += float(((predicted - noise[start : start + batch_size]) ** 2).mean(dim=(1, 2, 3)).sum())
                count += len(chunk)
    return total / count
