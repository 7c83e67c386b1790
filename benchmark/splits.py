"""Seeded, hashed member / non-member / calibration splits drawn from one pool of images.

Members and non-members come from the same permutation of the same pool, so an attack cannot win
by telling two distributions apart. Calibration members are trained on too (thresholds and
timesteps need labelled members), but are never among the evaluated images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import BenchmarkError
from benchmark.hashing import sha256_bytes, sha256_json


@dataclass
class SplitSizes:
    members: int = 64
    nonmembers: int = 256
    calibration_members: int = 32
    calibration_nonmembers: int = 64
    null: bool = False

    def validate(self) -> None:
        if self.members < 2 or self.nonmembers < 2:
            raise ValueError("members and nonmembers need at least 2 images each (both classes for a ROC)")
        if self.calibration_members < 0 or self.calibration_nonmembers < 0:
            raise ValueError("calibration sizes cannot be negative")


@dataclass
class Split:
    """Indices into the dataset; ``training`` is what the target is trained on."""

    members: np.ndarray
    nonmembers: np.ndarray
    calibration_members: np.ndarray
    calibration_nonmembers: np.ndarray
    training: np.ndarray
    sha256: str
    null: bool

    def indices(self) -> dict[str, list[int]]:
        return {
            "members": self.members.tolist(),
            "nonmembers": self.nonmembers.tolist(),
            "calibration_members": self.calibration_members.tolist(),
            "calibration_nonmembers": self.calibration_nonmembers.tolist(),
            "training": self.training.tolist(),
        }


def dataset_fingerprint(images: torch.Tensor) -> str:
    return sha256_bytes(images.contiguous().numpy().tobytes())


def make_split(images: torch.Tensor, sizes: SplitSizes, seed: int) -> Split:
    """Draw the split from a seeded permutation.

    With ``null`` the target trains on fresh decoy images instead of the evaluated members, so the
    "members" are images it never saw: every attack should then score about AUC 0.5.
    """
    blocks = [sizes.members, sizes.nonmembers, sizes.calibration_members, sizes.calibration_nonmembers]
    if sizes.null:
        blocks.append(sizes.members)
    if sum(blocks) > len(images):
        raise BenchmarkError(
            f"the split asks for {sum(blocks)} images but the dataset has {len(images)}; "
            "lower the split sizes in the suite"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    cuts = np.cumsum([0, *blocks])
    parts = [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    members, nonmembers, cal_members, cal_nonmembers = parts[:4]
    trained_members = parts[4] if sizes.null else members
    training = np.sort(np.concatenate([trained_members, cal_members]))
    sha = sha256_json(
        {
            "dataset": dataset_fingerprint(images),
            "members": members,
            "nonmembers": nonmembers,
            "calibration_members": cal_members,
            "calibration_nonmembers": cal_nonmembers,
            "training": training,
        }
    )
    return Split(members, nonmembers, cal_members, cal_nonmembers, training, sha, sizes.null)
