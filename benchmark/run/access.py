"""The only door attacks have to a model: counted queries behind a threat-model view.

Attacks never hold the UNet. They get a view whose methods match their threat model; every UNet
forward pass goes through :class:`QueryCounter`, and that count is what the results report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size

from benchmark.api.model import DiffusionModel, ThreatModel
from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError, ThreatModelError


class QueryCounter:
    """Wraps the UNet and counts forward passes per sample (a batch of n counts n)."""

    def __init__(
        self, unet: torch.nn.Module, batch_size: int, encode_text: Callable[[Sequence[str]], torch.Tensor] | None = None
    ) -> None:
        self._unet = unet
        self._encode_text = encode_text
        self.batch_size = batch_size
        self.forward_passes = 0
        self.backward_passes = 0

    def reset(self) -> None:
        self.forward_passes = 0
        self.backward_passes = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, captions: Sequence[str] | None = None) -> torch.Tensor:
        """Batched forwards; on an out-of-memory error the batch size halves and the chunk reruns
        (so a suite's batch size is a ceiling, and a GPU of any size finishes). Captions, one per
        row, are encoded chunk by chunk, so no condition for the whole set sits in memory."""
        outputs, start = [], 0
        while start < x.shape[0]:
            end = start + self.batch_size
            try:
                condition = None if captions is None else self._encode_text(captions[start:end])
                outputs.append(runtime.sharded_forward(self._unet, x[start:end], t[start:end], condition))
            except Exception as error:
                if not should_reduce_batch_size(error) or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                clear_device_cache(garbage_collection=True)
                continue
            self.forward_passes += outputs[-1].shape[0]
            start = end
        return torch.cat(outputs)


def _timesteps(t: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return t.to(device=device, dtype=torch.long)
    return torch.full((n,), int(t), device=device, dtype=torch.long)


class _View:
    """Shared by all views: names the threat model in the error when an attack reaches past it."""

    threat_model: ThreatModel

    def __getattr__(self, name: str) -> Any:
        raise ThreatModelError(
            f"a {self.threat_model.value} attack tried to use '{name}', which its threat model does not "
            f"allow; declare a stronger threat model or use only the {type(self).__name__} methods"
        )


class GrayBoxAccess(_View):
    """ε_θ(x, t) on any input, and the noise schedule; no parameters, no gradients."""

    threat_model = ThreatModel.GRAY_BOX

    def __init__(self, model: DiffusionModel, batch_size: int = 256) -> None:
        self._model = model
        self.counter = QueryCounter(model.unet, batch_size, model.encode_text)
        self.sample_shape = model.sample_shape
        self.device = model.device
        self.alphas_cumprod = model.scheduler.alphas_cumprod.to(torch.float64).clone()
        self.num_train_timesteps = int(model.scheduler.config.num_train_timesteps)
        self.text_conditioned = model.text_conditioned
        self._captions: list[str] | None = None

    def use_captions(self, captions: Sequence[str] | None) -> None:
        """The harness binds the scored images' captions before each ``score``/``calibrate`` call."""
        self._captions = None if captions is None else list(captions)

    @property
    def captions(self) -> list[str]:
        """The scored images' own captions, in image order (text-conditioned targets only)."""
        if not self.text_conditioned or self._captions is None:
            raise BenchmarkError(
                "this attack needs captions, but the target is not text-conditioned or the dataset has none; "
                "use a text_to_image target on a captioned dataset"
            )
        return self._captions

    def predict_noise(
        self, x_t: torch.Tensor, t: int | torch.Tensor, captions: Sequence[str] | None = None
    ) -> torch.Tensor:
        """One counted forward pass per sample; ``t`` is an int or one timestep per sample.

        On a text-conditioned target row i is conditioned on the caption of scored image i (so
        rows must be the scored images, in order), or on ``captions[i]`` when given ("" is the
        null caption)."""
        self._check_timestep(t)
        rows = x_t.shape[0]
        if captions is not None and not self.text_conditioned:
            raise BenchmarkError("captions were passed, but the target is not text-conditioned")
        if self.text_conditioned:
            captions = self.captions if captions is None else list(captions)
            if len(captions) != rows:
                raise BenchmarkError(
                    f"a text-conditioned target needs one caption per row: got {rows} rows and {len(captions)} "
                    "captions; query the scored images in order, or pass captions="
                )
        with torch.inference_mode():
            x_t = x_t.to(self.device, torch.float32)
            return self.counter(x_t, _timesteps(t, rows, self.device), captions).float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Closed-form forward noising x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, through the scheduler (no query)."""
        self._check_timestep(t)
        return self._model.scheduler.add_noise(x0, noise, _timesteps(t, x0.shape[0], x0.device))

    def ddim_step(self, x: torch.Tensor, t_from: int, t_to: int, eps: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM move (σ=0) from t_from to t_to with the prediction made at t_from.

        The scheduler's own ``step`` only walks its inference grid downwards; attacks also invert
        (t_to > t_from) and use arbitrary strides, so the move is written from the DDIM formula.
        """
        self._check_timestep(t_from)
        self._check_timestep(t_to)
        a_from = self.alphas_cumprod[t_from].to(x.dtype)
        a_to = self.alphas_cumprod[t_to].to(x.dtype)
        x0_hat = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
        return a_to.sqrt() * x0_hat + (1 - a_to).sqrt() * eps

    def _check_timestep(self, t: int | torch.Tensor) -> None:
        values = t if isinstance(t, torch.Tensor) else torch.tensor([int(t)])
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= self.num_train_timesteps):
            raise BenchmarkError(
                f"timestep {t} is outside the schedule's 0..{self.num_train_timesteps - 1}; "
                "lower the attack's timestep parameters"
            )


class WhiteBoxAccess(GrayBoxAccess):
    """Gray-box plus gradients of the denoising loss with respect to the parameters.

    The module itself stays hidden so that forward and backward passes are both counted.
    """

    threat_model = ThreatModel.WHITE_BOX

    def loss_gradient_norms(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
        """ℓ2 norm of ∇_θ per parameter tensor of one image's denoising loss averaged over ``timesteps``.

        ``x0`` is one image (C, H, W), ``noise`` one draw per timestep (K, C, H, W). All K noised
        copies go through one batched forward (K counted passes) and one backward (1 counted pass).
        """
        self._check_timestep(torch.tensor(timesteps))
        if self.text_conditioned:
            raise BenchmarkError("gradient attacks do not support text-conditioned targets yet; drop gsa here")
        unet = self._model.unet
        t = torch.tensor(timesteps, device=self.device)
        clean = x0.to(self.device).expand(len(timesteps), *x0.shape)
        noise = noise.to(self.device)
        noisy = self._model.scheduler.add_noise(clean, noise, t)
        unet.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = ((unet(noisy, t).sample - noise) ** 2).mean()
            loss.backward()
        self.counter.forward_passes += len(timesteps)
        self.counter.backward_passes += 1
        norms = torch.stack([p.grad.norm() if p.grad is not None else p.new_zeros(()) for p in unet.parameters()])
        unet.zero_grad(set_to_none=True)
        return norms.detach().cpu()


class BlackBoxAccess(_View):
    """Only an image-variation API: noise an image to t, then DDIM back to 0 in a few steps."""

    threat_model = ThreatModel.BLACK_BOX

    def __init__(self, model: DiffusionModel, batch_size: int = 256) -> None:
        self._gray = GrayBoxAccess(model, batch_size)
        self.counter = self._gray.counter
        self.sample_shape = model.sample_shape
        self.device = model.device
        self.use_captions = self._gray.use_captions

    def vary(self, images: torch.Tensor, t: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """One variation per image; costs ``steps`` counted passes per image."""
        noise = torch.randn(images.shape, generator=generator).to(images.device)
        x = self._gray.add_noise(images, noise, t)
        grid = [round(t * (steps - i) / steps) for i in range(steps + 1)]
        for t_from, t_to in zip(grid[:-1], grid[1:], strict=True):
            eps = self._gray.predict_noise(x, t_from)
            x = self._gray.ddim_step(x.to(eps.device), t_from, t_to, eps)
        return x


ACCESS_FOR = {
    ThreatModel.WHITE_BOX: WhiteBoxAccess,
    ThreatModel.GRAY_BOX: GrayBoxAccess,
    ThreatModel.BLACK_BOX: BlackBoxAccess,
}


def make_access(model: DiffusionModel, threat_model: ThreatModel, batch_size: int = 256) -> Any:
    return ACCESS_FOR[threat_model](model, batch_size)
