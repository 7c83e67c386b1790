"""The public-only reference: the target's recipe trained on public images alone, never on a member.

Practitioners who train a diffusion model with differential privacy pretrain it on public data and
fine-tune it privately (Ghalebikesabi et al. 2023; Dockhorn et al. 2022). The honest utility
baseline for such a model is the pretrained one: if DP fine-tuning does not beat it, private
training added nothing. Its members are never trained on (ε = 0 for them), so every attack on it
should sit near AUC 0.5: a null check built into the board. It shares the pretraining (one per
public pool and seed, cached by the harness) with every DP fine-tune of the same ``pretrain_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from benchmark.api import DEFENSES, Defense, TrainingJob


@dataclass
class PublicOnlyConfig:
    pretrain_steps: int = 1000

    def validate(self) -> None:
        if self.pretrain_steps < 1:
            raise ValueError("pretrain_steps must be at least 1")


@DEFENSES.register("public_only", "the recipe trained on public images only (no member): DP fine-tuning's baseline")
class PublicOnly(Defense[PublicOnlyConfig]):
    def uses_public_data(self) -> bool:
        return True

    def train(self, job: TrainingJob, unet: torch.nn.Module) -> dict[str, Any]:
        unet.load_state_dict(job.pretrained(self.config.pretrain_steps).state_dict())
        self.public_images_ = len(job.public)
        # the steps that ran were on public images; none on a member
        return {"steps": self.config.pretrain_steps, "member_steps": 0}

    def costs(self) -> dict[str, Any]:
        return {"epsilon": 0.0, "public_images": self.public_images_, "pretrain_steps": self.config.pretrain_steps,
                "member_steps": 0}  # fmt: skip
