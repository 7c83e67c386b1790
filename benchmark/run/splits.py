"""Seeded, hashed member / non-member / calibration splits drawn from one pool of images.

Members and non-members come from the same permutation of the same pool, so an attack cannot win
by telling two distributions apart. Calibration members are trained on too (an attacker with the
``target-members`` knowledge holds them labelled), but are never among the evaluated images. The
``public`` block is what a defense may pretrain on (public data, in the DP fine-tuning sense):
disjoint from every other block, and so from every image an attack evaluates or calibrates on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.core.configs import added_later
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_bytes, sha256_json


@dataclass
class SplitSizes:
    members: int = 64
    nonmembers: int = 256
    calibration_members: int = 32
    calibration_nonmembers: int = 64
    null: bool = False
    # A SecMI-style split file (.npz with mia_train_idxs / mia_eval_idxs): the target was trained on
    # every mia_train_idxs image; the blocks above are drawn from the two sets instead of the dataset.
    indices_file: str = added_later("")
    public: int = added_later(0)

    def validate(self) -> None:
        if self.indices_file and self.null:
            raise ValueError("a null split cannot use an indices_file (its members are trained on by definition)")
        if self.members < 2 or self.nonmembers < 2:
            raise ValueError("members and nonmembers need at least 2 images each (both classes for a ROC)")
        if self.calibration_members < 0 or self.calibration_nonmembers < 0 or self.public < 0:
            raise ValueError("calibration and public sizes cannot be negative")
        if self.public and self.indices_file:
            raise ValueError("a public block cannot be drawn from a split file; set public: 0")


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
    public: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def indices(self) -> dict[str, list[int]]:
        blocks = {
            "members": self.members.tolist(),
            "nonmembers": self.nonmembers.tolist(),
            "calibration_members": self.calibration_members.tolist(),
            "calibration_nonmembers": self.calibration_nonmembers.tolist(),
            "training": self.training.tolist(),
        }
        return blocks | ({"public": self.public.tolist()} if len(self.public) else {})


def dataset_fingerprint(images: torch.Tensor) -> str:
    return sha256_bytes(images.contiguous().numpy().tobytes())


def make_split(images: torch.Tensor, sizes: SplitSizes, seed: int) -> Split:
    """Draw the split from a seeded permutation.

    With ``null`` the target trains on fresh decoy images instead of the evaluated members, so the
    "members" are images it never saw: every attack should then score about AUC 0.5.
    """
    if sizes.indices_file:
        return _split_from_file(images, sizes, seed)
    blocks = [sizes.members, sizes.nonmembers, sizes.calibration_members, sizes.calibration_nonmembers,
              sizes.public, sizes.members if sizes.null else 0]  # fmt: skip
    if sum(blocks) > len(images):
        raise BenchmarkError(
            f"the split asks for {sum(blocks)} images but the dataset has {len(images)}; "
            "lower the split sizes in the suite"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    cuts = np.cumsum([0, *blocks])
    parts = [np.sort(order[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    members, nonmembers, cal_members, cal_nonmembers, public = parts[:5]
    trained_members = parts[5] if sizes.null else members
    training = np.sort(np.concatenate([trained_members, cal_members]))
    return _finish(images, members, nonmembers, cal_members, cal_nonmembers, training, sizes.null, public)


def _finish(images, members, nonmembers, cal_members, cal_nonmembers, training, null: bool, public=None) -> Split:
    blocks = {
        "dataset": dataset_fingerprint(images),
        "members": members,
        "nonmembers": nonmembers,
        "calibration_members": cal_members,
        "calibration_nonmembers": cal_nonmembers,
        "training": training,
    }
    if public is not None and len(public):  # only a split with a public block hashes one (older hashes hold)
        blocks["public"] = public
    public = np.empty(0, dtype=np.int64) if public is None else public
    return Split(members, nonmembers, cal_members, cal_nonmembers, training, sha256_json(blocks), null, public)


def read_indices_file(path: str, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """(trained-on, held-out) indices from a SecMI split file, checked against the dataset."""
    try:
        with np.load(Path(path).expanduser(), allow_pickle=False) as data:
            trained, held_out = data["mia_train_idxs"].astype(np.int64), data["mia_eval_idxs"].astype(np.int64)
    except (OSError, ValueError) as error:
        raise BenchmarkError(f"cannot read split file {path} ({error}); pass a SecMI-style .npz") from None
    except KeyError as error:
        raise BenchmarkError(
            f"split file {path} has no {error} array; it needs mia_train_idxs and mia_eval_idxs"
        ) from None
    for name, block in (("mia_train_idxs", trained), ("mia_eval_idxs", held_out)):
        if block.ndim != 1 or len(block) == 0 or block.min() < 0 or block.max() >= n_images:
            raise BenchmarkError(
                f"{path}: {name} must be a non-empty list of indices below {n_images} (the dataset size)"
            )
    if np.intersect1d(trained, held_out).size:
        raise BenchmarkError(f"{path}: mia_train_idxs and mia_eval_idxs overlap; a split needs disjoint sets")
    return np.unique(trained), np.unique(held_out)


def _split_from_file(images: torch.Tensor, sizes: SplitSizes, seed: int) -> Split:
    """Members and calibration members drawn (seeded) from the file's trained-on set, non-members
    from its held-out set; ``training`` is the whole trained-on set, as the file's target saw it."""
    trained, held_out = read_indices_file(sizes.indices_file, len(images))
    wanted = {"trained-on": sizes.members + sizes.calibration_members,
              "held-out": sizes.nonmembers + sizes.calibration_nonmembers}  # fmt: skip
    for (name, need), have in zip(wanted.items(), (len(trained), len(held_out)), strict=True):
        if need > have:
            raise BenchmarkError(
                f"the split asks for {need} {name} images but {sizes.indices_file} has {have}; lower the split sizes"
            )
    rng = np.random.default_rng(seed)
    a, b = rng.permutation(trained), rng.permutation(held_out)
    cal_members, members = (
        np.sort(a[: sizes.calibration_members]),
        np.sort(a[sizes.calibration_members : wanted["trained-on"]]),
    )
    cal_nonmembers = np.sort(b[: sizes.calibration_nonmembers])
    nonmembers = np.sort(b[sizes.calibration_nonmembers : wanted["held-out"]])
    return _finish(images, members, nonmembers, cal_members, cal_nonmembers, trained, False)
