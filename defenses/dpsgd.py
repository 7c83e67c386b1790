"""DP-SGD through opacus (DPDM, Dockhorn et al. 2023): a formal (ε, δ) bound on membership advantage.

Poisson-sampled batches, per-example gradients clipped to ``max_grad_norm``, Gaussian noise of
σ·clip added to their sum; σ is chosen by opacus for the target ε at δ over the steps to run, and
the accountant reports the ε actually spent by the steps actually run. By the definition of DP no
attack's TPR can exceed e^ε·FPR + δ, so the leaderboard can check attacks against the bound.

The clipped sum of per-example gradients comes from ``_per_example_clipping``: opacus's
ghost-clipping hooks measure each example's gradient norm in one backward pass and the clipped sum is
built from what those hooks saw, so no per-example gradient is stored: 2.4-2.8x a plain step at the
suites' 8x8 in ``benchmark perf``, where opacus's ``hooks`` mode measured 3.3-4.2x and ``functorch``
5.2x. Tests compare the norms and the clipped sum against per-example autograd. opacus still adds
the noise (its fast-gradient-clipping ``DPOptimizer``) and keeps the books (its accountants).

Noise multiplicity (DPDM): each example's loss is averaged over K (timestep, noise) draws before
its gradient is clipped; the privacy cost is unchanged (still one clipped gradient per example)
while the gradient's variance drops.

Fine-tuning (``pretrain_steps`` > 0), as practitioners deploy DP diffusion models (Ghalebikesabi
et al. 2023, "Differentially Private Diffusion Models Generate Useful Synthetic Images"): the
recipe is first trained on the split's public images (the harness's cached ``job.pretrained``,
shared with ``public_only``), then fine-tuned on the members with DP-SGD for ``steps`` steps at
expected batch ``batch_size`` and ``learning_rate`` (each 0 = the recipe's). ε accounts for the
private fine-tuning only: the public images are not private, and no member is among them.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from opacus.accountants import create_accountant
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.uniform_sampler import UniformWithReplacementSampler

from benchmark.api import (
    DEFENSES,
    BenchmarkError,
    Defense,
    LoopCheckpoint,
    LoopProgress,
    Recipe,
    TrainingJob,
    added_later,
    noised_batch,
    progress,
    runtime,
)
from defenses._per_example_clipping import ClippedGradients


@dataclass
class DPSGDConfig:
    """``delta`` 0 means 1/(10·n) for n training images; the batch size of the target's recipe
    becomes the expected Poisson batch size (sample rate q = batch / n)."""

    target_epsilon: float = 10.0
    delta: float = 0.0
    max_grad_norm: float = 1.0
    accountant: Literal["prv", "rdp"] = "prv"
    noise_multiplicity: int = 1
    pretrain_steps: int = added_later(0)
    steps: int = added_later(0)
    batch_size: int = added_later(0)
    learning_rate: float = added_later(0.0)

    def validate(self) -> None:
        if self.target_epsilon <= 0 or self.max_grad_norm <= 0:
            raise ValueError("target_epsilon and max_grad_norm must be positive")
        if not 0 <= self.delta < 1:
            raise ValueError("delta must be in [0, 1); 0 means 1/(10·n)")
        if self.noise_multiplicity < 1:
            raise ValueError("noise_multiplicity must be at least 1")
        if min(self.pretrain_steps, self.steps, self.batch_size, self.learning_rate) < 0:
            raise ValueError("pretrain_steps, steps, batch_size and learning_rate must be ≥ 0 (0 = the recipe's)")


@DEFENSES.register("dpsgd", "DP-SGD via opacus (per-example clipping by ghost norms, Poisson sampling, PRV accountant)")
class DPSGD(Defense[DPSGDConfig]):
    def uses_public_data(self) -> bool:
        return self.config.pretrain_steps > 0

    def _private_recipe(self, recipe: Recipe) -> Recipe:
        return dataclasses.replace(
            recipe,
            train_steps=self.config.steps or recipe.train_steps,
            batch_size=self.config.batch_size or recipe.batch_size,
            learning_rate=self.config.learning_rate or recipe.learning_rate,
        )

    def train(self, job: TrainingJob, unet: UNet2DModel) -> dict[str, Any]:
        if runtime.accelerator().num_processes > 1:
            raise BenchmarkError("dpsgd trains in one process (its Poisson sampling is not sharded); run it without "
                                 "`accelerate launch` or with --num_processes 1")  # fmt: skip
        if job.recipe.warmup_steps or job.recipe.ema_decay:
            raise BenchmarkError("dpsgd's loop has no learning-rate warm-up or EMA; set the target's warmup_steps and "
                                 "ema_decay to 0")  # fmt: skip
        n, recipe, k = len(job.members), self._private_recipe(job.recipe), self.config.noise_multiplicity
        if self.uses_public_data():
            unet.load_state_dict(job.pretrained(self.config.pretrain_steps).state_dict())
        self._choose_noise(n, recipe)
        device = runtime.device()
        unet.to(device)
        clipped = ClippedGradients(unet, self.config.max_grad_norm, k)
        parameters = [p for p in unet.parameters() if p.requires_grad]
        generators = {
            "data": torch.Generator().manual_seed(job.seed),
            "poisson": torch.Generator().manual_seed(job.seed + 1),
            "dp_noise": torch.Generator(device=device).manual_seed(job.seed + 2),  # opacus draws noise on the device
        }
        optimizer = DPOptimizerFastGradientClipping(  # adds noise to the clipped sum already in p.grad
            torch.optim.AdamW(parameters, lr=recipe.learning_rate),
            noise_multiplier=self.sigma_,
            max_grad_norm=self.config.max_grad_norm,
            expected_batch_size=max(1, round(self.sample_rate_ * n)),
            generator=generators["dp_noise"],
        )
        accountant = create_accountant(mechanism=self.config.accountant)
        optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate_))
        checkpoints = LoopCheckpoint(job.scratch / "dp-checkpoint", generators)
        done, _, meta = checkpoints.restore(unet, optimizer)
        accountant.history = [tuple(entry) for entry in meta.get("accountant_history", [])]
        sampler = UniformWithReplacementSampler(
            num_samples=n, sample_rate=self.sample_rate_, generator=generators["poisson"],
            steps=recipe.train_steps - done.step,
        )  # fmt: skip
        unet.train()
        with progress.steps("training target (DP-SGD)", recipe.train_steps) as advance:
            advance(done.step)
            for ids in sampler:
                clean = self.transform(job.members[torch.as_tensor(ids, dtype=torch.long)], generators["data"])
                self._step(job, clipped, optimizer, parameters, clean, generators["data"], done)
                advance()
                if checkpoints.due(done, recipe.train_steps):
                    checkpoints.save(unet, optimizer, done, values={"accountant_history": accountant.history})
        clipped.close()
        self.steps_ = done.step
        with self._domain_sizing_quiet():
            self.epsilon_ = accountant.get_epsilon(self.delta_)
        return done.report(epochs=done.step * self.sample_rate_) | {"pretrain_steps": self.config.pretrain_steps}

    def _choose_noise(self, n: int, recipe: Recipe) -> None:
        """q = expected batch ÷ n, δ = 1/(10·n) unless set, and σ for the target ε over the recipe's steps."""
        self.sample_rate_ = min(1.0, recipe.batch_size / n)
        self.delta_ = self.config.delta or 1.0 / (10 * n)
        with self._domain_sizing_quiet():
            self.sigma_ = get_noise_multiplier(
                target_epsilon=self.config.target_epsilon,
                target_delta=self.delta_,
                sample_rate=self.sample_rate_,
                steps=recipe.train_steps,
                accountant=self.config.accountant,
            )

    def _step(
        self, job: TrainingJob, clipped: ClippedGradients, optimizer: DPOptimizerFastGradientClipping,
        parameters: list[torch.nn.Parameter], clean: torch.Tensor, generator: torch.Generator, done: LoopProgress,
    ) -> None:  # fmt: skip
        """One private step: K draws per example, per-example loss, clipped sum, then opacus's noise."""
        k, device = self.config.noise_multiplicity, runtime.device()
        optimizer.zero_grad(set_to_none=True)
        if len(clean):
            noisy, t, noise = noised_batch(job.scheduler, clean.repeat_interleave(k, dim=0), generator)
            predicted = clipped.module(noisy.to(device), t.to(device)).sample
            per_draw = F.mse_loss(predicted, noise.to(device), reduction="none").flatten(1).mean(dim=1)
            per_example = per_draw.view(-1, k).mean(dim=1)
            clipped.backward(per_example)
            done.losses.append(per_example.mean().item())
        else:  # an empty Poisson batch still costs a (pure-noise) step, as the accountant assumes
            for p in parameters:
                p.grad = torch.zeros_like(p)
        optimizer.step()
        done.step += 1

    @contextmanager
    def _domain_sizing_quiet(self) -> Iterator[None]:
        """opacus's PRV accountant sizes its discretisation domain with an RDP bound, which warns when
        that bound's best order is its largest alpha; the ε reported is PRV's, so under ``prv`` that
        one warning says nothing about it (under ``rdp`` it does, and stays)."""
        with warnings.catch_warnings():
            if self.config.accountant == "prv":
                warnings.filterwarnings("ignore", message="Optimal order is the largest alpha", category=UserWarning)
            yield

    def costs(self) -> dict:
        return {
            "epsilon": self.epsilon_,
            "target_epsilon": self.config.target_epsilon,
            "delta": self.delta_,
            "accountant": self.config.accountant,
            "noise_multiplier": self.sigma_,
            "sample_rate": self.sample_rate_,
            "steps": self.steps_,
            "max_grad_norm": self.config.max_grad_norm,
            "noise_multiplicity": self.config.noise_multiplicity,
            "per_sample_gradients": "ghost norms + book-keeping",
            "mode": "fine-tuned from public pretraining" if self.uses_public_data() else "from scratch",
            "pretrain_steps": self.config.pretrain_steps,
            "epsilon_covers": "the private fine-tuning steps only" if self.uses_public_data() else "all training",
        }
