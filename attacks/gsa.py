"""GSA (Pang et al., PoPETs 2025): white-box gradient features classified by a shadow-trained model.

For each image, the denoising loss at 10 equidistant timesteps is back-propagated (GSA1: once,
through the averaged loss; GSA2: once per timestep, norms averaged) and the ℓ2 norm of the gradient
of every parameter tensor becomes a feature. A gradient-boosting classifier (scikit-learn's, in
place of XGBoost) learns members from non-members on the attacker's calibration data, as the
paper does on shadow models: under the default knowledge ``shadow`` those are the members and
non-members of a shadow target the harness trains with the target's recipe on disjoint data
(under ``target-members``, labelled target members); it is then applied to the target's features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingClassifier

from benchmark.api import ATTACKS, Attack, AttackContext, ThreatModel, WhiteBoxView


@dataclass
class GSAConfig:
    """``variant: gsa2`` back-propagates each timestep's loss separately (10 forward + 10 backward)."""

    variant: Literal["gsa1", "gsa2"] = "gsa1"
    timesteps: int = 10
    n_estimators: int = 200
    max_depth: int = 3

    def validate(self) -> None:
        if self.timesteps < 1:
            raise ValueError("timesteps must be at least 1")


@ATTACKS.register("gsa", "GSA1: per-layer gradient norms at 10 timesteps, boosted trees trained on calibration data")
class GSA(Attack[GSAConfig]):
    threat_model = ThreatModel.WHITE_BOX

    def expected_passes(self) -> tuple[int, int]:
        backward = 1 if self.config.variant == "gsa1" else self.config.timesteps
        return (self.config.timesteps, backward)

    def features(self, access: WhiteBoxView, images: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        count = self.config.timesteps
        timesteps = [(i + 1) * access.num_train_timesteps // count - 1 for i in range(count)]
        # one draw per image, in image order: the stream the per-image loop drew
        noise = torch.stack([torch.randn((count, *image.shape), generator=generator) for image in images])
        if self.config.variant == "gsa1":
            norms = access.loss_gradient_norms(images, noise, timesteps)
        else:
            per_t = [access.loss_gradient_norms(images, noise[:, i : i + 1], [t]) for i, t in enumerate(timesteps)]
            norms = torch.stack(per_t).mean(0)
        return norms.double().numpy()

    def needs_calibration(self) -> bool:
        return True

    def calibrate(self, access: WhiteBoxView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        features = self.features(access, images, ctx.generator)
        seed = int(torch.randint(0, 2**31, (1,), generator=ctx.generator))
        self.classifier_ = GradientBoostingClassifier(
            n_estimators=self.config.n_estimators, max_depth=self.config.max_depth, random_state=seed
        ).fit(features, labels)
        return {"classifier_trained_on": {"members": int(labels.sum()), "nonmembers": int((labels == 0).sum())}}

    def score(self, access: WhiteBoxView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        return self.classifier_.predict_proba(self.features(access, images, ctx.generator))[:, 1]
