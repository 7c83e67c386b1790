"""TEMPLATE — copy to defenses/<your_defense>.py, rename, and fill in. Files starting with "_" are not loaded.

Say in this docstring *why* the defense should stop membership inference, and cite its paper.
Import only from ``benchmark.api``. ``python -m benchmark validate`` runs ``check_defense`` on it
(config round-trip, deterministic training, costs readable after ``train`` and refused before);
from Python: ``from benchmark.checks import check_defense; check_defense(MyDefense)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.api import DEFENSES, Defense


@dataclass
class MyDefenseConfig:
    """Every knob, with the paper's defaults; suites override them under `params:`."""

    strength: float = 0.1

    def validate(self) -> None:
        if self.strength < 0:
            raise ValueError("strength must be ≥ 0")


@DEFENSES.register("my_defense", "one line for `python -m benchmark list`")
class MyDefense(Defense[MyDefenseConfig]):
    def transform(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Applied to every training batch before noising; draw randomness only from ``generator``."""
        return batch + self.config.strength * torch.randn(batch.shape, generator=generator)

    # To change the procedure rather than the batches, override instead:
    #     def train(self, job: TrainingJob, unet) -> dict:
    #         report = job.fit(unet, transform=self.transform, regression_target=..., monitor=...)
    #         self.steps_kept_ = report["steps"]  # what training learns ends in "_"
    #         return report
    # (job.fit is the harness's loop; see defenses/distillation.py and defenses/early_stopping.py).

    def costs(self) -> dict:
        """What the defense cost, shown in the card (ε for DP, extra steps, ...)."""
        return {"strength": self.config.strength}
