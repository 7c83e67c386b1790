"""What a defense trains from: the target's recipe and data (``TrainingJob``), and the hooks of the
harness's standard loop.

Defenses change training in four ways (the batch, the regression target, the stopping rule, the
whole procedure). ``job.fit`` runs the harness's ε-prediction loop with the first three as hooks;
a defense that replaces the procedure (DP-SGD, distillation) gets the same job and may call
``job.fit`` for its parts. The loop itself lives in the harness (``benchmark.run.training``) and is
bound to the job when the harness builds it, so this module needs no trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
# (noisy images, timesteps, drawn noise, indices of the batch into job.members) -> regression target
RegressionTarget = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Recipe:
    """The target's optimisation settings that a defense trains under. ``warmup_steps`` ramps the
    learning rate linearly from 0; ``ema_decay`` > 0 keeps an exponential moving average of the
    weights (diffusers' ``EMAModel``) and the trained model ends with the averaged weights, as the
    reference DDPM recipe publishes and evaluates them."""

    train_steps: int
    batch_size: int
    learning_rate: float
    grad_clip: float
    warmup_steps: int = 0
    ema_decay: float = 0.0


@dataclass
class TrainingPlan:
    """What a target describes about its own training: a fresh network, its scheduler, the tensors
    the network learns from (images, or latents for a latent model), the recipe, and per-member
    conditioning (caption embeddings) where the network takes one."""

    new_unet: Callable[[], torch.nn.Module]
    scheduler: SchedulerMixin
    members: torch.Tensor
    recipe: Recipe
    conditioning: torch.Tensor | None = None


class Monitor(Protocol):
    """Watches training and may stop it; its state is checkpointed with the weights."""

    def after_step(self, step: int, unet: torch.nn.Module) -> bool:
        """Called after every optimiser step; True stops training."""

    # Any below: JSON-able values, whose shape each monitor chooses
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors, JSON-able values) to checkpoint."""

    def restore(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        """Load what ``state`` returned."""

    def finish(self, unet: torch.nn.Module) -> dict[str, Any]:
        """Called once training ends (e.g. to restore the best weights); returns what to report."""


class Trainer(Protocol):
    """The harness's standard loop, as bound to a job (see ``TrainingJob.fit``)."""

    def __call__(
        self,
        job: TrainingJob,
        unet: torch.nn.Module,
        *,
        members: torch.Tensor | None,
        transform: Transform | None,
        regression_target: RegressionTarget | None,
        monitor: Monitor | None,
        seed: int | None,
        checkpoint_name: str,
        title: str,
    ) -> dict[str, Any]: ...  # Any: the training report, JSON-able


@dataclass
class TrainingJob:
    """Everything a defense may use to train a target.

    ``validation`` holds images disjoint from every image any attack evaluates (empty unless the
    defense asked for them); ``scratch`` is where checkpoints of this job live. ``conditioning``
    (text-to-image targets) holds each member's caption embedding, passed to the UNet as
    ``encoder_hidden_states``. ``public`` holds the split's public images (empty unless the defense
    uses public data): ``pretrained(steps)`` is the target's recipe trained on them alone, built
    once by the harness and cached, so every defense pretraining on one pool shares one model.
    """

    new_unet: Callable[[], torch.nn.Module]
    scheduler: SchedulerMixin
    members: torch.Tensor
    validation: torch.Tensor
    recipe: Recipe
    seed: int
    scratch: Path
    conditioning: torch.Tensor | None = None
    trainer: Trainer | None = field(default=None, repr=False)
    public: torch.Tensor | None = None
    pretrainer: Callable[[int], torch.nn.Module] | None = field(default=None, repr=False)

    def pretrained(self, steps: int) -> torch.nn.Module:
        """A fresh network trained ``steps`` steps on ``public`` only (never on a member)."""
        if self.pretrainer is None or self.public is None or not len(self.public):
            raise RuntimeError("this TrainingJob has no public images; the defense must declare uses_public_data()")
        return self.pretrainer(steps)

    def fit(
        self,
        unet: torch.nn.Module,
        *,
        members: torch.Tensor | None = None,
        transform: Transform | None = None,
        regression_target: RegressionTarget | None = None,
        monitor: Monitor | None = None,
        seed: int | None = None,
        checkpoint_name: str = "checkpoint",
        title: str = "training target",
    ) -> dict[str, Any]:  # Any: the training report, JSON-able
        """Train ``unet`` in place with the harness's loop: MSE to the noise (or to
        ``regression_target``) on ``members`` (default: the job's), batches cycling through seeded
        permutations, checkpointed under ``scratch / checkpoint_name`` so a killed run resumes with
        the same weights. Returns the training report."""
        if self.trainer is None:
            raise RuntimeError("this TrainingJob was not built by the harness, so it has no training loop bound")
        return self.trainer(self, unet, members=members, transform=transform, regression_target=regression_target,
                            monitor=monitor, seed=seed, checkpoint_name=checkpoint_name, title=title)  # fmt: skip


def noised_batch(
    scheduler: SchedulerMixin, clean: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(noisy, timesteps, noise): the DDPM forward process at uniformly drawn timesteps."""
    noise = torch.randn(clean.shape, generator=generator)
    t = torch.randint(0, int(scheduler.config.num_train_timesteps), (len(clean),), generator=generator)
    return scheduler.add_noise(clean, noise, t), t, noise
