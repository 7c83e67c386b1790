"""What an attack may call on a model, per threat model, as typed protocols.

The harness hands each attack an object that satisfies exactly one of these (its threat model's);
every UNet forward and backward pass behind it is counted, and anything else is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, Union, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class GrayBoxView(Protocol):
    """ε_θ(x, t) on any input, and the noise schedule; no parameters, no gradients."""

    sample_shape: tuple[int, int, int]
    device: torch.device
    alphas_cumprod: torch.Tensor
    num_train_timesteps: int
    text_conditioned: bool

    @property
    def captions(self) -> list[str]:
        """The scored images' own captions, in image order (text-conditioned targets only)."""

    @property
    def pad_token(self) -> str:
        """The text encoder's padding token, as text (text-conditioned targets only)."""

    def predict_noise(
        self, x_t: torch.Tensor, t: int | torch.Tensor, captions: Sequence[str] | None = None
    ) -> torch.Tensor:
        """One counted forward pass per row; ``t`` is an int or one timestep per row."""

    def predict_noise_with_attention(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, list[np.ndarray]]:
        """ε_θ with the scored images' own captions, and per image each caption word's share of the
        UNet's cross-attention (text-conditioned targets only); one counted pass per row."""

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Closed-form forward noising x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε (no query)."""

    def ddim_step(self, x: torch.Tensor, t_from: int, t_to: int, eps: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM move (σ=0) from t_from to t_to with the prediction made at t_from."""


@runtime_checkable
class WhiteBoxView(GrayBoxView, Protocol):
    """Gray-box plus gradients of the denoising loss with respect to the parameters."""

    def loss_gradient_norms(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
        """(N, P): per image of ``x0`` (N, C, H, W), the ℓ2 norm of ∇_θ per parameter tensor of its
        loss averaged over ``timesteps``, with ``noise`` (N, K, C, H, W) one draw per timestep."""


@runtime_checkable
class BlackBoxView(Protocol):
    """Only an image-variation API: noise an image to t, then DDIM back to 0 in a few steps."""

    sample_shape: tuple[int, int, int]
    device: torch.device

    def vary(self, images: torch.Tensor, t: int, steps: int) -> torch.Tensor:
        """One variation per image, with noise the service draws; costs ``steps`` counted passes per image."""


AccessView = Union[GrayBoxView, WhiteBoxView, BlackBoxView]  # noqa: UP007 (a runtime alias, kept readable)
