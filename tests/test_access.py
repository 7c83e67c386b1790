import pytest
import torch
from diffusers import DDPMScheduler

from benchmark.core.errors import BenchmarkError
from benchmark.run.access import (
    BlackBoxAccess,
    DiffusionModel,
    GrayBoxAccess,
    ThreatModelError,
    WhiteBoxAccess,
    counter_of,
)
from conftest import plain_tiny_unet


@pytest.fixture(scope="module")
def model() -> DiffusionModel:
    return DiffusionModel(plain_tiny_unet().eval(), DDPMScheduler(num_train_timesteps=1000))


def test_counter_counts_each_sample_once_per_forward_across_chunks(model):
    access = GrayBoxAccess(model, batch_size=3)
    x = torch.randn(7, 1, 8, 8)
    out = access.predict_noise(x, 10)
    assert out.shape == x.shape
    assert counter_of(access).forward_passes == 7
    access.predict_noise(x, torch.arange(7))
    assert counter_of(access).forward_passes == 14


def test_gray_box_hides_the_module(model):
    access = GrayBoxAccess(model)
    with pytest.raises(ThreatModelError, match="gray-box attack tried to use 'module'"):
        access.module  # noqa: B018
    assert not hasattr(access, "parameters")
    assert not access.predict_noise(torch.randn(2, 1, 8, 8), 5).requires_grad


def test_black_box_offers_only_variations(model):
    access = BlackBoxAccess(model)
    with pytest.raises(ThreatModelError, match="black-box"):
        access.predict_noise(torch.randn(2, 1, 8, 8), 5)
    varied = access.vary(torch.randn(4, 1, 8, 8), t=200, steps=2)
    assert varied.shape == (4, 1, 8, 8)
    assert counter_of(access).forward_passes == 8


def test_white_box_gradients_are_counted_forward_and_backward(model):
    access = WhiteBoxAccess(model)
    norms = access.loss_gradient_norms(torch.randn(2, 1, 8, 8), torch.randn(2, 3, 1, 8, 8), [10, 100, 500])
    assert norms.shape == (2, len(list(model.unet.parameters())))
    assert (norms > 0).any() and torch.isfinite(norms).all()
    assert (counter_of(access).forward_passes, counter_of(access).backward_passes) == (6, 2)
    assert all(p.grad is None for p in model.unet.parameters())


def test_batched_gradient_norms_equal_the_per_image_loop():
    """GSA's features through torch.func (vmap over grad) against one backward per image, on the
    harness's UNet with attention, in chunks of two images (batch size 6, 3 timesteps)."""
    from benchmark.api.registry import TARGETS
    from benchmark.core.configs import build_config
    from benchmark.tools.perf import looped_gradient_norms

    entry = TARGETS.get("ddpm_unet")
    config = build_config(entry.cls.Config, "t", {"attention": True})
    plan = entry.cls(config).training_plan(torch.empty(0, 1, 8, 8), None, seed=0)
    unet = plan.new_unet().eval()
    assert any("Attn" in type(block).__name__ for block in unet.down_blocks)
    model = DiffusionModel(unet, plan.scheduler)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(5, 1, 8, 8, generator=generator), torch.randn(5, 3, 1, 8, 8, generator=generator)
    access = WhiteBoxAccess(model, batch_size=6)
    batched = access.loss_gradient_norms(x0, noise, [10, 300, 900])
    looped = looped_gradient_norms(model, x0, noise, [10, 300, 900])
    assert batched.shape == looped.shape == (5, len(list(unet.parameters())))
    assert torch.allclose(batched, looped, rtol=1e-4, atol=1e-7)
    assert not torch.equal(batched[0], batched[1])  # images differ, so their gradients do


def test_gradient_norms_refuse_unbatched_input(model):
    with pytest.raises(BenchmarkError, match=r"\(N, 3, C, H, W\)"):
        WhiteBoxAccess(model).loss_gradient_norms(torch.randn(1, 8, 8), torch.randn(3, 1, 8, 8), [10, 100, 500])


def test_ddim_step_inverts_itself_with_a_shared_prediction(model):
    access = GrayBoxAccess(model)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    eps = torch.randn_like(x)
    there = access.ddim_step(x, 40, 90, eps)
    assert torch.allclose(access.ddim_step(there, 90, 40, eps), x, atol=1e-10)


def test_closed_form_noising_uses_the_schedule(model):
    access = GrayBoxAccess(model)
    x0, noise = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    a = access.alphas_cumprod[80].float()
    assert torch.allclose(access.add_noise(x0, noise, 80), a.sqrt() * x0 + (1 - a).sqrt() * noise, atol=1e-6)


def test_timesteps_outside_the_schedule_are_refused(model):
    with pytest.raises(BenchmarkError, match="outside the schedule"):
        GrayBoxAccess(model).predict_noise(torch.randn(1, 1, 8, 8), 1000)
