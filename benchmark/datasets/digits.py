"""scikit-learn's handwritten digits: 1,797 real 8×8 images that ship inside the package (no download)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from benchmark.api import DATASETS, Dataset


@dataclass
class DigitsConfig:
    image_size: int = 16

    def validate(self) -> None:
        if not 8 <= self.image_size <= 256:
            raise ValueError(f"image_size {self.image_size} must be between 8 and 256")


@DATASETS.register("digits", "1,797 handwritten digits from scikit-learn (offline), 1 channel, upsampled")
class Digits(Dataset[DigitsConfig]):
    def load(self) -> torch.Tensor:
        pixels = torch.from_numpy(load_digits().images).float().unsqueeze(1) / 16.0
        if self.config.image_size != 8:
            size = (self.config.image_size, self.config.image_size)
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
        return (pixels.clamp(0, 1) * 2 - 1).contiguous()

    def labels(self) -> np.ndarray:
        return load_digits().target
