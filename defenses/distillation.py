"""DistillMD (Dual-Model Defense, 2024): a student that learns each image only from a teacher that never saw it.

The members are split into disjoint halves and a teacher is trained on each. The student is then
trained on all members, but its regression target for an image is the (stop-gradient) noise
prediction of the teacher trained on the *other* half. The student never fits the noise actually
drawn for a member, only a model's generalising guess about it, so the member-specific signal
attacks read (a lower loss on members) should shrink. Cost: three trainings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import UNet2DModel
from safetensors.torch import load_file, save_file

from benchmark.api import DEFENSES, Defense, TrainingJob, runtime


def cross_teacher_targets(
    teachers: list, half_of: torch.Tensor, noisy: torch.Tensor, t: torch.Tensor, ids: torch.Tensor
) -> torch.Tensor:
    """Each image's regression target: the prediction of the teacher trained on the other half
    (``half_of[i]`` is the half image i belongs to, and teacher h was trained on half h)."""
    device = runtime.device()
    with torch.inference_mode():
        noisy, t = noisy.to(device), t.to(device)
        predictions = [teacher(noisy, t).sample for teacher in teachers]
    in_first_half = (half_of[ids] == 0).to(device)[:, None, None, None]
    return torch.where(in_first_half, predictions[1], predictions[0]).clone()


@dataclass
class DistillationConfig:
    split_seed: int = 0


@DEFENSES.register(
    "distillation", "DistillMD: teachers on disjoint halves; the student learns each image from the other"
)
class Distillation(Defense[DistillationConfig]):
    def _teacher(self, job: TrainingJob, index: int, members: torch.Tensor) -> tuple[UNet2DModel, dict]:
        """Trained once; its weights wait in the job's scratch so a resumed run does not retrain it."""
        unet = job.new_unet()
        saved = job.scratch / f"teacher-{index}.safetensors"
        if saved.exists():
            unet.load_state_dict(load_file(saved))
            report = {"resumed": True}
        else:
            report = job.fit(unet, members=members, transform=self.transform, seed=job.seed * 2 + index + 1,
                         checkpoint_name=f"teacher-{index}", title=f"training teacher {index + 1} of 2")  # fmt: skip
            unet = runtime.accelerator().unwrap_model(unet)
            if runtime.is_main_process():
                save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, saved)
        return unet.to(runtime.device()).eval(), report

    def train(self, job: TrainingJob, unet: UNet2DModel) -> dict[str, Any]:
        order = np.random.default_rng([job.seed, self.config.split_seed]).permutation(len(job.members))
        halves = [np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])]
        half_of = torch.zeros(len(job.members), dtype=torch.long)
        half_of[halves[1]] = 1
        trained = [self._teacher(job, i, job.members[half]) for i, half in enumerate(halves)]
        teachers, reports = [model for model, _ in trained], [report for _, report in trained]

        def other_teacher(noisy: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, ids: torch.Tensor):
            return cross_teacher_targets(teachers, half_of, noisy, t, ids)

        report = job.fit(unet, transform=self.transform, regression_target=other_teacher, title="training student")
        report["teachers"] = reports
        self.halves_ = [len(h) for h in halves]
        self.teacher_steps_ = 2 * job.recipe.train_steps
        return report

    def costs(self) -> dict:
        return {"teacher_members": self.halves_, "teacher_steps": self.teacher_steps_, "trainings": 3}
