"""Sample quality: FID (torchmetrics) in the feature space of a classifier the harness trains.

No Inception weights can be downloaded here, and Inception features of 16-px digits would mean
little anyway; so, like the MNIST FIDs of the DP diffusion papers, the features are the penultimate
layer of a small CNN trained on the dataset's own labels. The extractor, its held-out accuracy and
its sha256 go in the card, so two FIDs are only compared when their extractors match.
Samples come from a DDIM sampler with a fixed step count and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DDIMPipeline, DDIMScheduler
from safetensors.torch import load_file, save_file
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from benchmark.api.model import DiffusionModel
from benchmark.core import runtime
from benchmark.core.hashing import sha256_file, sha256_json

FEATURE_VERSION = 1
DDIM_STEPS = 50
SAMPLE_SEED = 20261128
SAMPLE_BATCH = 250


class DigitFeatures(nn.Module):
    """Conv features → 64-d penultimate layer (FID space) → class logits."""

    num_features = 64

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, self.num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.num_features, classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)


@dataclass
class FeatureExtractor:
    network: DigitFeatures
    description: dict


def _train(images: torch.Tensor, labels: np.ndarray, folder: Path) -> dict:
    """Seeded Adam on 80% of the dataset; accuracy on the other 20% says the features mean something."""
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(0.8 * len(images))
    train_ids, test_ids = order[:cut], order[cut:]
    y = torch.as_tensor(labels, dtype=torch.long)
    device = runtime.device()  # on a GPU at paper scale (40k images × 15 epochs) this is minutes on a CPU
    with torch.random.fork_rng():
        torch.manual_seed(0)
        network = DigitFeatures(images.shape[1], int(y.max()) + 1).to(device)
        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(network.parameters(), lr=2e-3)
        for _ in range(15):
            for batch in torch.randperm(len(train_ids), generator=generator).split(64):
                ids = train_ids[batch.numpy()]
                logits = network.head(network(images[ids].to(device)))
                loss = nn.functional.cross_entropy(logits, y[ids].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    network = network.cpu()
    with torch.inference_mode():
        accuracy = float((network.head(network(images[test_ids])).argmax(1) == y[test_ids]).float().mean())
    save_file(network.state_dict(), folder / "features.safetensors")
    return {"heldout_accuracy": accuracy, "classes": int(y.max()) + 1}


def feature_extractor(dataset_description: dict, images: torch.Tensor, labels: np.ndarray, cache) -> FeatureExtractor:
    """The dataset's FID feature network, trained once and cached like a target."""
    key = sha256_json({"dataset": dataset_description, "version": FEATURE_VERSION})
    folder, report = cache.get_or_build("features", key, lambda out, _scratch: _train(images, labels, out))
    network = DigitFeatures(images.shape[1], report["classes"])
    network.load_state_dict(load_file(folder / "features.safetensors"))
    description = {
        "name": f"DigitFeatures-v{FEATURE_VERSION} (penultimate layer, {DigitFeatures.num_features}-d)",
        "trained_on": "the dataset's labels (80% of all images)",
        "heldout_accuracy": round(report["heldout_accuracy"], 4),
        "sha256": sha256_file(folder / "features.safetensors"),
    }
    return FeatureExtractor(network.eval(), description)


def generate(model: DiffusionModel, count: int) -> torch.Tensor:
    """``count`` DDIM samples (η = 0, fixed steps and seed) in [-1, 1], NCHW."""
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    pipeline = DDIMPipeline(unet=model.unet, scheduler=scheduler)
    pipeline.set_progress_bar_config(disable=True)  # the harness shows its own progress
    generator = torch.Generator(device="cpu").manual_seed(SAMPLE_SEED)
    chunks = []
    for start in range(0, count, SAMPLE_BATCH):
        size = min(SAMPLE_BATCH, count - start)
        output = pipeline(batch_size=size, generator=generator, num_inference_steps=DDIM_STEPS, output_type="np")
        chunks.append(torch.from_numpy(output.images).permute(0, 3, 1, 2) * 2 - 1)
    return torch.cat(chunks).float()


def frechet_distance(features: FeatureExtractor, real: torch.Tensor, fake: torch.Tensor) -> float:
    metric = FrechetInceptionDistance(feature=features.network, normalize=True, input_img_size=tuple(real.shape[1:]))
    with torch.inference_mode():
        metric.update(real, real=True)
        metric.update(fake, real=False)
        return float(metric.compute())


def sample_quality(model: DiffusionModel, reference: torch.Tensor, features: FeatureExtractor) -> dict:
    """FID of as many DDIM samples as there are reference images, against those images."""
    samples = generate(model, len(reference))
    return {
        "fid": frechet_distance(features, reference, samples),
        "fid_samples": len(samples),
        "fid_sampler": f"DDIM, {DDIM_STEPS} steps, eta 0, seed {SAMPLE_SEED}",
        "fid_features": features.description,
    }
