"""A small CNN head on per-pixel difference images, trained on labelled calibration images.

SecMI-NNs and ReDiffuse both classify |x − reconstruction| with a ResNet-18 trained on 20% of
labelled members and non-members. Our images are 8–32 px and calibration sets hold ~100 images, so
the head is a three-layer CNN; like the official code it regresses the 0/1 label with MSE and
uses the logit as the score.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def fit_difference_head(
    config: HeadConfig, features: torch.Tensor, labels: np.ndarray, generator: torch.Generator
) -> tuple[DifferenceClassifier, dict]:
    """The fitted head and what it was trained on, for the card."""
    head = DifferenceClassifier(config).fit(features, labels, generator)
    return head, {"classifier_trained_on": {"members": int(labels.sum()), "nonmembers": int((labels == 0).sum())}}
