"""Utility of a (defended) target: denoising loss on held-out vs training images, and FID.

The timesteps and noise draws are fixed, so every target is measured on the same footing, and the
gap between the two losses shows how much the target memorised. A defense that wrecks the model
"wins" privacy trivially; these numbers sit beside every privacy number so a reader can tell.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from benchmark.api.model import DiffusionModel, denoising_mse
from benchmark.run.fid import FeatureExtractor, sample_quality

UTILITY_VERSION = 2  # bump when a utility number would change; stale utilities are recomputed

def measure_utility(
    model: DiffusionModel,
    training: torch.Tensor,
    heldout: torch.Tensor,
    reference: torch.Tensor,
    features: FeatureExtractor | None,
    captions: tuple[Sequence[str], Sequence[str]] | None = None,
) -> dict:
    """Denoising MSE on ``heldout`` and ``training`` (``captions``: theirs, for a text-to-image
    target); FID of samples against ``reference`` (the evaluated non-members) when the dataset has
    labels to train FID features on and the model samples unconditionally."""
    training_captions, heldout_captions = captions or (None, None)
    heldout_mse = denoising_mse(model, heldout, heldout_captions)
    training_mse = denoising_mse(model, training, training_captions)
    utility = {
        "version": UTILITY_VERSION,
        "heldout_denoising_mse": heldout_mse,
        "training_denoising_mse": training_mse,
        "generalization_gap": heldout_mse - training_mse,
    }
    if features is None:
        return utility | {"fid": None, "fid_features": "none: no labelled images to train FID features on"}
    if model.text_conditioned:
        return utility | {"fid": None, "fid_features": "none: FID here samples unconditionally (DDIM), a text-to-image "
                          "target needs prompts"}  # fmt: skip
    return utility | sample_quality(model, reference, features)
