"""The only door attacks have to a model: counted queries behind a sealed threat-model view.

Attacks never hold the UNet. They get a view whose public methods match their threat model; every
UNet forward pass goes through :class:`QueryCounter`, and that count is what the results report.
A view is a shell: the model, the counter, the captions and (black-box) the variation noise live
in a harness-side engine that no attribute of the view names, and every other name, private ones
included, is refused in one line. (Python cannot hide an object from deliberate introspection of
frames or the garbage collector, and nothing here scans an attack's source for that: the
conformance check ``view_refuses_other_routes`` tries every sealed name on the view, and review
does the rest.) The harness reaches the engine through the functions at the bottom of this file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils.memory import clear_device_cache, should_reduce_batch_size
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmark.api.model import DiffusionModel
from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError, ThreatModelError
from benchmark.core.protocol import ThreatModel
from benchmark.run.attribution import recorded_cross_attention, word_importance


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
        """Batched forwards, ``batch_size`` rows at a time. Captions, one per row, are encoded chunk
        by chunk, so no condition for the whole set sits in memory."""

        def forward(start: int, end: int) -> torch.Tensor:
            condition = None if captions is None else self._encode_text(captions[start:end])
            return runtime.sharded_forward(self._unet, x[start:end], t[start:end], condition)

        outputs = self.in_chunks(x.shape[0], 1, forward)
        self.forward_passes += x.shape[0]
        return torch.cat(outputs)

    def in_chunks(
        self, items: int, rows_per_item: int, compute: Callable[[int, int], torch.Tensor]
    ) -> list[torch.Tensor]:
        """``compute(start, end)`` over consecutive slices of ``items`` that each put at most
        ``batch_size`` rows through the UNet (an item may be several rows, at least one item a
        slice). On an out-of-memory error the batch size halves and the slice reruns, so a suite's
        batch size is a ceiling and a GPU of any size finishes."""
        outputs, start = [], 0
        while start < items:
            end = start + max(1, self.batch_size // rows_per_item)
            try:
                outputs.append(compute(start, end))
            except Exception as error:
                if not should_reduce_batch_size(error) or self.batch_size == 1:
                    raise
                self.batch_size //= 2
                clear_device_cache(garbage_collection=True)
                continue
            start = end
        return outputs


def _timesteps(t: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(t, torch.Tensor) and t.ndim == 1:
        return t.to(device=device, dtype=torch.long)
    return torch.full((n,), int(t), device=device, dtype=torch.long)


def per_example_gradient_norms(
    model: DiffusionModel, timesteps: list[int]
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """(images (n, C, H, W), noise (n, K, C, H, W)) -> (n, P): per image, the ℓ2 norm of the gradient
    of every parameter tensor of its denoising loss averaged over the K timesteps.

    ``torch.func`` maps the gradient over the images (``vmap`` over ``grad``), so n images cost one
    batched forward and backward instead of n. Attention runs on PyTorch's math kernel here: it is
    the one scaled-dot-product kernel with a batching rule (the fused CPU kernel falls back to a
    per-example loop, with a warning)."""
    unet = model.unet
    parameters = {name: p.detach() for name, p in unet.named_parameters()}
    buffers = dict(unet.named_buffers())
    t = torch.tensor(timesteps, device=model.device)

    def loss(weights: dict[str, torch.Tensor], image: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        noisy = model.scheduler.add_noise(image.expand(len(timesteps), *image.shape), draws, t)
        return ((functional_call(unet, (weights, buffers), (noisy, t)).sample - draws) ** 2).mean()

    gradients = vmap(grad(loss), in_dims=(None, 0, 0))

    def norms(images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            per_parameter = gradients(parameters, images, noise)
        return torch.stack([g.flatten(1).norm(dim=1) for g in per_parameter.values()], dim=1).detach()

    return norms


class Engine:
    """What stands behind every view: the model, its counter, the bound captions and the
    harness-owned noise generator of the black-box variation API."""

    def __init__(self, model: DiffusionModel, batch_size: int) -> None:
        self.model = model
        self.counter = QueryCounter(model.unet, batch_size, model.encode_text)
        self.alphas_cumprod = model.scheduler.alphas_cumprod.to(torch.float64).clone()
        self.num_train_timesteps = int(model.scheduler.config.num_train_timesteps)
        self.captions: list[str] | None = None
        self.noise = torch.Generator().manual_seed(0)

    def scored_captions(self) -> list[str]:
        if not self.model.text_conditioned or self.captions is None:
            raise BenchmarkError(
                "this attack needs captions, but the target is not text-conditioned or the dataset has none; "
                "use a text_to_image target on a captioned dataset"
            )
        return self.captions

    def check_timestep(self, t: int | torch.Tensor) -> None:
        values = t if isinstance(t, torch.Tensor) else torch.tensor([int(t)])
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= self.num_train_timesteps):
            raise BenchmarkError(
                f"timestep {t} is outside the schedule's 0..{self.num_train_timesteps - 1}; "
                "lower the attack's timestep parameters"
            )

    def predict_noise(self, x_t: torch.Tensor, t: int | torch.Tensor, captions: Sequence[str] | None) -> torch.Tensor:
        self.check_timestep(t)
        rows = x_t.shape[0]
        text_conditioned = self.model.text_conditioned
        if captions is not None and not text_conditioned:
            raise BenchmarkError("captions were passed, but the target is not text-conditioned")
        if text_conditioned:
            captions = self.scored_captions() if captions is None else list(captions)
            if len(captions) != rows:
                raise BenchmarkError(
                    f"a text-conditioned target needs one caption per row: got {rows} rows and {len(captions)} "
                    "captions; query the scored images in order, or pass captions="
                )
        with torch.inference_mode():
            x_t = x_t.to(self.model.device, torch.float32)
            return self.counter(x_t, _timesteps(t, rows, self.model.device), captions).float()

    def predict_noise_with_attention(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, list[np.ndarray]]:
        """ε_θ with the scored images' own captions, and each caption's word importance."""
        captions = self.scored_captions()
        with recorded_cross_attention(self.model.unet) as records:
            eps = self.predict_noise(x_t, t, None)
        return eps, word_importance(records, self.model.tokenizer, captions)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        self.check_timestep(t)
        return self.model.scheduler.add_noise(x0, noise, _timesteps(t, x0.shape[0], x0.device))

    def ddim_step(self, x: torch.Tensor, t_from: int, t_to: int, eps: torch.Tensor) -> torch.Tensor:
        """The scheduler's own ``step`` only walks its inference grid downwards; attacks also invert
        (t_to > t_from) and use arbitrary strides, so the move is written from the DDIM formula."""
        self.check_timestep(t_from)
        self.check_timestep(t_to)
        a_from = self.alphas_cumprod[t_from].to(x.dtype)
        a_to = self.alphas_cumprod[t_to].to(x.dtype)
        x0_hat = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
        return a_to.sqrt() * x0_hat + (1 - a_to).sqrt() * eps

    def loss_gradient_norms(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
        self.check_timestep(torch.tensor(timesteps))
        if self.model.text_conditioned:
            raise BenchmarkError("gradient attacks do not support text-conditioned targets yet; drop gsa here")
        if x0.ndim != 4 or noise.shape != (x0.shape[0], len(timesteps), *x0.shape[1:]):
            raise BenchmarkError(
                f"loss_gradient_norms takes images (N, C, H, W) and one noise draw per image and timestep "
                f"(N, {len(timesteps)}, C, H, W); got {tuple(x0.shape)} and {tuple(noise.shape)}"
            )
        per_example = per_example_gradient_norms(self.model, timesteps)
        device = self.model.device

        def chunk(start: int, end: int) -> torch.Tensor:
            return per_example(x0[start:end].to(device), noise[start:end].to(device))

        rows = self.counter.in_chunks(len(x0), len(timesteps), chunk)
        self.counter.forward_passes += len(x0) * len(timesteps)
        self.counter.backward_passes += len(x0)
        return torch.cat(rows).cpu()

    def vary(self, images: torch.Tensor, t: int, steps: int) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=self.noise).to(images.device)
        x = self.add_noise(images, noise, t)
        grid = [round(t * (steps - i) / steps) for i in range(steps + 1)]
        for t_from, t_to in zip(grid[:-1], grid[1:], strict=True):
            eps = self.predict_noise(x, t_from, None)
            x = self.ddim_step(x.to(eps.device), t_from, t_to, eps)
        return x


class _View:
    """A sealed shell over an :class:`Engine`: only the public names of its class resolve."""

    __slots__ = ("_engine",)
    threat_model: ThreatModel

    def __init__(self, model: DiffusionModel, batch_size: int = 256) -> None:
        object.__setattr__(self, "_engine", Engine(model, batch_size))

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_") and name != "__class__":
            _refuse(self, name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        _refuse(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise ThreatModelError(f"an attack tried to set '{name}' on its {type(self).__name__}; views are read-only")

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return _engine(self).model.sample_shape

    @property
    def device(self) -> torch.device:
        return _engine(self).model.device


def _refuse(view: _View, name: str) -> None:
    kind = type(view)
    raise ThreatModelError(
        f"a {kind.threat_model.value} attack tried to use '{name}', which its threat model does not "
        f"allow; declare a stronger threat model or use only the {kind.__name__} methods"
    )


def _engine(view: _View) -> Engine:
    return object.__getattribute__(view, "_engine")


class GrayBoxAccess(_View):
    """ε_θ(x, t) on any input, and the noise schedule; no parameters, no gradients."""

    __slots__ = ()
    threat_model = ThreatModel.GRAY_BOX

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return _engine(self).alphas_cumprod.clone()

    @property
    def num_train_timesteps(self) -> int:
        return _engine(self).num_train_timesteps

    @property
    def text_conditioned(self) -> bool:
        return _engine(self).model.text_conditioned

    @property
    def captions(self) -> list[str]:
        """The scored images' own captions, in image order (text-conditioned targets only)."""
        return list(_engine(self).scored_captions())

    @property
    def pad_token(self) -> str:
        """The text encoder's padding token, as text (text-conditioned targets only)."""
        engine = _engine(self)
        engine.scored_captions()  # the same clear refusal on a target without captions
        return str(engine.model.tokenizer.pad_token)

    def predict_noise(
        self, x_t: torch.Tensor, t: int | torch.Tensor, captions: Sequence[str] | None = None
    ) -> torch.Tensor:
        """One counted forward pass per sample; ``t`` is an int or one timestep per sample.

        On a text-conditioned target row i is conditioned on the caption of scored image i (so
        rows must be the scored images, in order), or on ``captions[i]`` when given ("" is the
        null caption)."""
        return _engine(self).predict_noise(x_t, t, captions)

    def predict_noise_with_attention(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, list[np.ndarray]]:
        """``predict_noise`` with the scored images' own captions (one counted pass per row), and per
        image how much of the UNet's cross-attention each word of its caption received (summed over
        layers, heads and pixels; shares summing to 1): the DAAM-style attribution CLiD ranks words
        by. Text-conditioned targets only; an internal of the UNet no other view offers."""
        return _engine(self).predict_noise_with_attention(x_t, t)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        """Closed-form forward noising x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, through the scheduler (no query)."""
        return _engine(self).add_noise(x0, noise, t)

    def ddim_step(self, x: torch.Tensor, t_from: int, t_to: int, eps: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM move (σ=0) from t_from to t_to with the prediction made at t_from."""
        return _engine(self).ddim_step(x, t_from, t_to, eps)


class WhiteBoxAccess(GrayBoxAccess):
    """Gray-box plus gradients of the denoising loss with respect to the parameters.

    The module itself stays hidden so that forward and backward passes are both counted.
    """

    __slots__ = ()
    threat_model = ThreatModel.WHITE_BOX

    def loss_gradient_norms(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
        """Per image, the ℓ2 norm of ∇_θ per parameter tensor of its denoising loss averaged over
        ``timesteps``: a (N, P) tensor.

        ``x0`` is N images (N, C, H, W), ``noise`` one draw per image and timestep (N, K, C, H, W).
        Each image counts K forward passes (its K noised copies) and one backward pass; the images
        are batched, not looped over.
        """
        return _engine(self).loss_gradient_norms(x0, noise, timesteps)


class BlackBoxAccess(_View):
    """Only an image-variation API: noise an image to t, then DDIM back to 0 in a few steps.

    The service draws the noise itself, from a generator the harness seeds: an attacker who chose
    the noise could solve a one-step variation for ε_θ(x_t, t), a gray-box query."""

    __slots__ = ()
    threat_model = ThreatModel.BLACK_BOX

    def vary(self, images: torch.Tensor, t: int, steps: int) -> torch.Tensor:
        """One variation per image; costs ``steps`` counted passes per image."""
        return _engine(self).vary(images, t, steps)


ACCESS_FOR = {
    ThreatModel.WHITE_BOX: WhiteBoxAccess,
    ThreatModel.GRAY_BOX: GrayBoxAccess,
    ThreatModel.BLACK_BOX: BlackBoxAccess,
}


def make_access(model: DiffusionModel, threat_model: ThreatModel, batch_size: int = 256) -> Any:
    return ACCESS_FOR[threat_model](model, batch_size)


# The harness's side of a view: none of these is reachable from an attack's view object.


def counter_of(view: _View) -> QueryCounter:
    """The view's query counter (what the card reports)."""
    return _engine(view).counter


def bind_captions(view: _View, captions: Sequence[str] | None) -> None:
    """The scored images' captions, bound before each ``score``/``calibrate`` call."""
    _engine(view).captions = None if captions is None else list(captions)


def seed_variations(view: _View, generator: torch.Generator) -> None:
    """The generator the variation API draws its noise from (the service's, not the attacker's)."""
    _engine(view).noise = generator
