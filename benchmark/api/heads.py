"""A small CNN head on per-pixel difference images, trained on labelled calibration images.

SecMI-NNs and ReDiffuse both classify |x − reconstruction| with a ResNet-18 trained on 20% of
labelled members and non-members. Our images are 8–32 px and calibration sets hold ~100 images, so
the head is a three-layer CNN; like the official code it regresses the 0/1 label with MSE and
uses the logit as the score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class HeadConfig:
    epochs: int = 100
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 5e-4


class DifferenceCNN(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).squeeze(1)


class DifferenceClassifier:
    """Standardises features with calibration statistics, then fits the CNN deterministically."""

    def __init__(self, config: HeadConfig) -> None:
        self.config = config

    def fit(self, features: torch.Tensor, labels: np.ndarray, generator: torch.Generator) -> DifferenceClassifier:
        self.mean, self.std = features.mean(), features.std().clamp_min(1e-12)
        x = (features - self.mean) / self.std
        y = torch.as_tensor(labels, dtype=torch.float32)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
            self.model = DifferenceCNN(features.shape[1])
        optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        with torch.enable_grad():
            for _ in range(self.config.epochs):
                order = torch.randperm(len(x), generator=generator)
                for start in range(0, len(x), self.config.batch_size):
                    batch = order[start : start + self.config.batch_size]
                    loss = ((self.model(x[batch]) - y[batch]) ** 2).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        self.model.eval()
        return self

    def decision(self, features: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return self.model((features - self.mean) / self.std).double().numpy()


class DifferenceHead:
    """For attacks that score a per-pixel difference image either by its energy (the threshold
    head, the papers' ``-stat``) or by a CNN trained on calibration data (``head: classifier``,
    the papers' ``-NN``); the config carries ``head`` and ``classifier``."""

    config: Any  # Any: the host attack's config dataclass; the mixin reads ``head`` and ``classifier``

    def uses_classifier(self) -> bool:
        return self.config.head == "classifier"

    def needs_calibration(self) -> bool:
        return self.uses_classifier()

    def fit_head(self, difference: torch.Tensor, labels: np.ndarray, generator: torch.Generator) -> dict:
        """Train ``head_`` on |difference| of labelled images; returns what it was trained on, for the card."""
        self.head_ = DifferenceClassifier(self.config.classifier).fit(difference.abs(), labels, generator)
        return {"classifier_trained_on": {"members": int(labels.sum()), "nonmembers": int((labels == 0).sum())}}

    def head_score(self, difference: torch.Tensor) -> np.ndarray:
        """Higher = member: the trained head's logit, or the negated energy of the difference."""
        if self.uses_classifier():
            return self.head_.decision(difference.abs())
        return -(difference**2).flatten(1).sum(1).double().numpy()
