"""Defenses do what their papers say, on tiny real models: per-sample gradients, ε, stopping, views."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.api.model import DiffusionModel, denoising_mse
from benchmark.api.training import Recipe, TrainingJob
from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError
from benchmark.datasets.digits import Digits, DigitsConfig
from benchmark.run.training import fit
from defenses._per_example_clipping import ClippedGradients, conv_weight_norms_direct, conv_weight_norms_ghost
from defenses.augmentation import Augmentation, AugmentationConfig
from defenses.distillation import Distillation, DistillationConfig, cross_teacher_targets
from defenses.dpsgd import DPSGD, DPSGDConfig
from defenses.early_stopping import EarlyStopping, EarlyStoppingConfig
from defenses.none import NoDefense, NoDefenseConfig
from targets.ddpm_unet import DDPMUNetConfig, build_scheduler, build_unet

DIGITS = Digits(DigitsConfig(image_size=8)).load()


def _tiny_unet(attention: bool = False, seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(DDPMUNetConfig(block_out_channels=(8, 16), attention=attention), (1, 8, 8))


def _job(tmp_path: Path, steps: int = 12, validation: int = 0, **recipe) -> TrainingJob:
    config = DDPMUNetConfig(block_out_channels=(8, 16))
    return TrainingJob(
        lambda: _tiny_unet(), build_scheduler(config), DIGITS[:24], DIGITS[100 : 100 + validation],
        Recipe(steps, 16, 2e-3, 1.0, **recipe), 0, tmp_path, trainer=fit,
    )  # fmt: skip


def _per_example_gradients(unet, noisy, t, noise, draws: int = 1) -> list[dict[str, torch.Tensor]]:
    rows = []
    for i in range(0, len(noisy), draws):
        unet.zero_grad(set_to_none=True)
        F.mse_loss(unet(noisy[i : i + draws], t[i : i + draws]).sample, noise[i : i + draws]).backward()
        rows.append({name: p.grad.clone() for name, p in unet.named_parameters()})
    return rows


def _batch(size: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(size, 1, 8, 8, generator=generator)
    t = torch.randint(0, 1000, (size,), generator=generator)
    scheduler = build_scheduler(DDPMUNetConfig())
    return scheduler.add_noise(DIGITS[:size], noise, t), t, noise


def _clipped_sum_by_autograd(unet, noisy, t, noise, draws: int, max_grad_norm: float):
    """(each example's gradient norm, Σ clip·gradient), one example (its draws) at a time."""
    gradients = _per_example_gradients(unet, noisy, t, noise, draws)
    norms = torch.stack([torch.cat([g.flatten() for g in row.values()]).norm() for row in gradients])
    factors = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    return norms, {name: sum(f * row[name] for f, row in zip(factors, gradients, strict=True)) for name in gradients[0]}


@pytest.mark.parametrize("draws", [1, 2])
def test_dpsgd_clips_each_example_exactly_as_autograd_on_a_unet_with_attention(draws):
    """Norms and the clipped sum, through attention's strided views, for one draw per example and
    for DPDM's noise multiplicity (an example's draws averaged before clipping)."""
    unet = _tiny_unet(attention=True)
    noisy, t, noise = _batch(4 * draws)  # example-major rows, as repeat_interleave lays them out
    expected_norms, expected_sum = _clipped_sum_by_autograd(unet, noisy, t, noise, draws, max_grad_norm=1.0)
    assert expected_norms.min() > 1.0  # clipping is active for every example
    clipped = ClippedGradients(unet, max_grad_norm=1.0, draws=draws)
    unet.zero_grad(set_to_none=True)
    per_draw = F.mse_loss(clipped.module(noisy, t).sample, noise, reduction="none").flatten(1).mean(dim=1)
    clipped.backward(per_draw.view(-1, draws).mean(dim=1))
    assert torch.allclose(clipped.module.per_sample_gradient_norms, expected_norms, rtol=1e-4)
    for name, p in unet.named_parameters():
        assert (p.grad - expected_sum[name]).norm() <= 1e-4 * expected_sum[name].norm() + 1e-7, name
    clipped.close()


@pytest.mark.parametrize("measure", [conv_weight_norms_ghost, conv_weight_norms_direct])
@pytest.mark.parametrize("draws", [1, 3])
def test_conv_weight_norms_match_autograd_for_strided_padded_convolutions(measure, draws):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, kernel_size=3, stride=2, padding=1)
    x = torch.randn(2 * draws, 7, 7, 3).permute(0, 3, 1, 2)  # a non-contiguous view, as attention hands on
    backprops = torch.randn(2 * draws, 5, 4, 4)
    expected = []
    for example in range(2):
        rows = slice(example * draws, (example + 1) * draws)
        (weight_grad,) = torch.autograd.grad((conv(x[rows]) * backprops[rows]).sum() / draws, conv.weight)
        expected.append(weight_grad.norm())
    assert torch.allclose(measure(conv, x, backprops, draws), torch.stack(expected), rtol=1e-4)


def test_dpsgd_refuses_a_layer_its_norms_do_not_cover():
    unet = _tiny_unet()
    unet.conv_norm_out = torch.nn.LayerNorm([8, 8, 8])
    with pytest.raises(BenchmarkError, match="LayerNorm"):
        ClippedGradients(unet, max_grad_norm=1.0, draws=1)


def test_dpsgd_spends_the_target_epsilon_and_reports_its_costs(tmp_path):
    defense = DPSGD(DPSGDConfig(target_epsilon=2.0, noise_multiplicity=2))
    job = _job(tmp_path, steps=8)
    unet = _tiny_unet()
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    report = defense.train(job, unet)
    costs = defense.costs()
    assert report["steps"] == costs["steps"] == 8
    assert 1.8 < costs["epsilon"] <= 2.0 + 1e-6
    assert costs["delta"] == pytest.approx(1 / (10 * 24))
    assert costs["noise_multiplier"] > 0 and costs["sample_rate"] == pytest.approx(16 / 24)
    assert any(not torch.equal(before[k], v) for k, v in unet.state_dict().items())
    assert not any(hasattr(p, "grad_sample") and p.grad_sample is not None for p in unet.parameters())


def test_dpsgd_steps_through_empty_poisson_batches(tmp_path, monkeypatch):
    """q = 1/24: about a third of the steps draw no example, and each must still take a noise-only step."""
    job = _job(tmp_path, steps=10)
    job.recipe.batch_size = 1
    sizes = []
    original = DPSGD.transform

    def counting(self, batch, generator):
        sizes.append(len(batch))
        return original(self, batch, generator)

    monkeypatch.setattr(DPSGD, "transform", counting)
    unet = _tiny_unet()
    before = {k: v.clone() for k, v in unet.named_parameters()}
    defense = DPSGD(DPSGDConfig())
    assert defense.train(job, unet)["steps"] == 10
    assert 0 in sizes and len(sizes) == 10
    assert all(not torch.equal(before[k], v) for k, v in unet.named_parameters())  # noise moved every weight


def test_smaller_epsilon_means_more_noise(tmp_path):
    sigmas = []
    for epsilon in (1.0, 10.0):
        defense = DPSGD(DPSGDConfig(target_epsilon=epsilon))
        defense.train(_job(tmp_path / str(epsilon), steps=3), _tiny_unet())
        sigmas.append(defense.costs()["noise_multiplier"])
    assert sigmas[0] > 2 * sigmas[1]


class _Interrupt(Exception):
    pass


def _interrupt_after(calls: int, transform):
    count = {"n": 0}

    def wrapped(batch, generator):
        count["n"] += 1
        if count["n"] > calls:
            raise _Interrupt
        return transform(batch, generator)

    return wrapped


@pytest.mark.parametrize("name", ["dpsgd", "early_stopping", "augmentation", "warmup_and_ema"])
def test_interrupted_defended_training_resumes_to_the_same_weights(tmp_path, monkeypatch, name):
    monkeypatch.setattr(runtime, "_checkpoint_every", 4)
    make = {
        "dpsgd": lambda: DPSGD(DPSGDConfig()),
        "early_stopping": lambda: EarlyStopping(
            EarlyStoppingConfig(evaluate_every=3, patience=50, validation_images=8)
        ),
        "augmentation": lambda: Augmentation(AugmentationConfig()),
        "warmup_and_ema": lambda: NoDefense(NoDefenseConfig()),
    }[name]
    recipe = {"warmup_steps": 6, "ema_decay": 0.9} if name == "warmup_and_ema" else {}
    straight = _tiny_unet()
    make().train(_job(tmp_path / "straight", validation=8, **recipe), straight)
    interrupted = make()
    interrupted.transform = _interrupt_after(10, interrupted.transform)
    with pytest.raises(_Interrupt):
        interrupted.train(_job(tmp_path / "resumed", validation=8, **recipe), _tiny_unet())
    resumed = _tiny_unet()
    report = make().train(_job(tmp_path / "resumed", validation=8, **recipe), resumed)
    assert report["resumed_from_step"] == 8
    for key, value in straight.state_dict().items():
        assert torch.allclose(value, resumed.state_dict()[key]), key


def test_early_stopping_stops_and_keeps_the_best_weights(tmp_path):
    defense = EarlyStopping(EarlyStoppingConfig(evaluate_every=5, patience=2, validation_images=16))
    job = _job(tmp_path, steps=400, validation=16)
    job.recipe.learning_rate = 0.05  # a rate this high stops improving quickly
    unet = _tiny_unet()
    report = defense.train(job, unet)
    assert report["steps"] < 400
    history = dict(report["validation_history"])
    assert report["best_step"] == min(history, key=history.get)
    unet.eval()
    restored = denoising_mse(DiffusionModel(unet, job.scheduler), job.validation)
    assert restored == pytest.approx(history[report["best_step"]], rel=1e-5)
    assert defense.costs()["steps_kept"] == report["best_step"]


def test_early_stopping_by_fraction_runs_that_share_of_the_budget(tmp_path):
    defense = EarlyStopping(EarlyStoppingConfig(mode="fraction", fraction=0.25))
    assert defense.validation_size() == 0
    report = defense.train(_job(tmp_path, steps=12), _tiny_unet())
    assert report["steps"] == 3


def test_augmentation_views_are_flips_and_shifted_crops_of_the_same_image():
    batch = DIGITS[:32]
    flips = Augmentation(AugmentationConfig(flip=True, crop_padding=0)).transform(batch, torch.Generator())
    same, flipped = (flips == batch).flatten(1).all(1), (flips == batch.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all()) and 0 < int(flipped.sum()) < 32
    crops = Augmentation(AugmentationConfig(flip=False, crop_padding=1)).transform(batch, torch.Generator())
    padded = F.pad(batch, (1, 1, 1, 1), mode="reflect")
    for image, crop in zip(padded, crops, strict=True):
        windows = [image[:, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(crop, window) for window in windows)


def test_each_student_target_comes_from_the_teacher_that_did_not_see_the_image():
    teachers = [lambda x, t: type("Out", (), {"sample": torch.zeros_like(x)})(),
                lambda x, t: type("Out", (), {"sample": torch.ones_like(x)})()]  # fmt: skip
    half_of = torch.tensor([0, 1, 0, 1, 1])
    ids = torch.tensor([4, 0, 2, 3])
    targets = cross_teacher_targets(teachers, half_of, torch.zeros(4, 1, 2, 2), torch.zeros(4), ids)
    # half 0 was seen by teacher 0, so its images learn from teacher 1 (ones), and the other way round
    assert targets.flatten(1).mean(1).tolist() == [0.0, 1.0, 1.0, 0.0]


def test_distillation_trains_two_teachers_on_disjoint_halves_then_a_student(tmp_path):
    defense = Distillation(DistillationConfig())
    unet = _tiny_unet()
    report = defense.train(_job(tmp_path, steps=6), unet)
    assert len(report["teachers"]) == 2 and all(r["steps"] == 6 for r in report["teachers"])
    assert defense.costs()["teacher_members"] == [12, 12]
    assert (tmp_path / "teacher-0.safetensors").exists() and (tmp_path / "teacher-1.safetensors").exists()
    again = Distillation(DistillationConfig()).train(_job(tmp_path, steps=6), _tiny_unet())
    assert all(r.get("resumed") for r in again["teachers"])


def test_ema_weights_are_what_the_recipe_ends_with(tmp_path):
    raw, averaged = _tiny_unet(), _tiny_unet()
    fit(_job(tmp_path / "raw", steps=6), raw)
    report = fit(_job(tmp_path / "ema", steps=6, ema_decay=0.5), averaged)
    assert report["weights"] == "EMA, decay 0.5"
    assert any(not torch.equal(v, averaged.state_dict()[k]) for k, v in raw.state_dict().items())


def test_dp_fine_tuning_pretrains_on_public_images_only_and_accounts_for_the_private_steps(tmp_path, monkeypatch):
    """One pretraining (cached) serves public_only and the DP fine-tune; it sees only the split's
    public block; ε is the accountant's for the private fine-tuning steps alone."""
    from opacus.accountants import create_accountant

    import benchmark.run.targets as targets_module
    from benchmark.run.cache import Cache
    from benchmark.run.runner import run_suite
    from conftest import make_suite, tiny_suite_dict

    pretrained_on = []

    def spying_fit(job, unet, **hooks):
        if hooks.get("title") == "pretraining on public images":
            pretrained_on.append(job.members.clone())
        return fit(job, unet, **hooks)

    monkeypatch.setattr(targets_module, "fit", spying_fit)
    raw = tiny_suite_dict(attacks=["loss"], knowledge=["target-members"])
    raw["split"] = raw["split"] | {"public": 64}
    raw["targets"][0]["params"]["train_steps"] = 30
    fine_tune = {"pretrain_steps": 25, "steps": 12, "batch_size": 16, "target_epsilon": 10}
    public_only = {"name": "public_only", "params": {"pretrain_steps": 25}}
    raw["defenses"] = [public_only, {"name": "dpsgd", "params": fine_tune}]
    cards = {c.defense: c for c in run_suite(make_suite(raw), tmp_path / "out", Cache(tmp_path / "cache"))}  # fmt: skip
    indices = cards["dpsgd"].split_indices
    assert len(indices["public"]) == 64
    for block in ("training", "members", "nonmembers", "calibration_members", "calibration_nonmembers"):
        assert not set(indices["public"]) & set(indices[block])
    (seen,) = pretrained_on  # one pretraining for both defenses, on exactly the public images
    images = make_suite(raw).datasets[0].instantiate().load()
    assert torch.equal(seen, images[indices["public"]])
    costs = cards["dpsgd"].defense_costs
    assert costs["steps"] == 12 and costs["epsilon_covers"] == "the private fine-tuning steps only"
    accountant = create_accountant(mechanism="prv")
    accountant.history = [(costs["noise_multiplier"], costs["sample_rate"], 12)]
    assert accountant.get_epsilon(costs["delta"]) == pytest.approx(costs["epsilon"], rel=1e-6)
    assert cards["public_only"].defense_costs["epsilon"] == 0.0
