"""Early stopping: the realistic-budget defense (CLiD, Pang & Wang: leakage grows with training steps).

Memorisation of individual members keeps growing after the model stops getting better on unseen
images, so stopping where the held-out denoising loss stops improving trades little utility for
privacy. ``patience`` mode watches that loss on validation images the harness draws disjoint from
every image an attack evaluates, and keeps the best weights; ``fraction`` mode simply stops at a
fixed fraction of the step budget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from diffusers import UNet2DModel

from benchmark.api import DEFENSES, Defense, DiffusionModel, TrainingJob, denoising_mse


@dataclass
class EarlyStoppingConfig:
    mode: Literal["patience", "fraction"] = "patience"
    validation_images: int = 64
    evaluate_every: int = 50
    patience: int = 3
    fraction: float = 0.3

    def validate(self) -> None:
        if self.validation_images < 2 or self.evaluate_every < 1 or self.patience < 1:
            raise ValueError("validation_images ≥ 2, evaluate_every ≥ 1 and patience ≥ 1 are required")
        if not 0 < self.fraction <= 1:
            raise ValueError("fraction must be in (0, 1]")


class ValidationMonitor:
    """Held-out denoising MSE every ``evaluate_every`` steps; stops after ``patience`` evaluations
    without a new best, and puts the best weights back at the end."""

    def __init__(self, config: EarlyStoppingConfig, job: TrainingJob) -> None:
        self.config, self.job = config, job
        self.history: list[tuple[int, float]] = []
        self.best: dict[str, torch.Tensor] = {}

    def _best_step(self) -> int:
        return min(self.history, key=lambda entry: entry[1])[0]

    def after_step(self, step: int, unet: UNet2DModel) -> bool:
        if step % self.config.evaluate_every:
            return False
        unet.eval()
        loss = denoising_mse(DiffusionModel(unet, self.job.scheduler), self.job.validation)
        unet.train()
        self.history.append((step, loss))
        if self._best_step() == step:
            self.best = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        since_best = sum(1 for s, _ in self.history if s > self._best_step())
        return since_best >= self.config.patience

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return dict(self.best), {"history": self.history}

    def restore(self, tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        self.best, self.history = dict(tensors), [tuple(entry) for entry in values["history"]]

    def finish(self, unet: UNet2DModel) -> dict[str, Any]:
        if not self.history:
            return {"validation_history": []}
        unet.load_state_dict(self.best)
        return {"best_step": self._best_step(), "validation_history": self.history}


@DEFENSES.register("early_stopping", "stop where held-out denoising loss stops improving (or at a budget fraction)")
class EarlyStopping(Defense[EarlyStoppingConfig]):
    def validation_size(self) -> int:
        return self.config.validation_images if self.config.mode == "patience" else 0

    def train(self, job: TrainingJob, unet: UNet2DModel) -> dict[str, Any]:
        if self.config.mode == "fraction":
            steps = max(1, round(self.config.fraction * job.recipe.train_steps))
            report = replace(job, recipe=replace(job.recipe, train_steps=steps)).fit(unet, transform=self.transform)
        else:
            report = job.fit(unet, transform=self.transform, monitor=ValidationMonitor(self.config, job))
        self.steps_run_ = report.get("best_step", report["steps"])
        return report

    def costs(self) -> dict:
        return {"mode": self.config.mode, "steps_kept": self.steps_run_}
