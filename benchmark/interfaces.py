"""The contracts plugins implement. The harness knows plugins only through these and the registry."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from benchmark.access import DiffusionModel, ThreatModel
from benchmark.training import TrainingJob, fit


@dataclass
class Shadow:
    """A model trained by the harness with the target's recipe on data disjoint from the target's split."""

    access: Any
    members: torch.Tensor
    nonmembers: torch.Tensor


@dataclass
class AttackContext:
    """What an attack may use besides its access view.

    ``generator`` seeds every random draw. ``shadows(n)`` trains (or loads from the cache) n shadow
    targets with access of the attack's own threat model; it is None where no shadow data exists
    (``audit`` on a stranger's model).
    """

    generator: torch.Generator
    shadows: Callable[[int], list[Shadow]] | None = None


class Attack(abc.ABC):
    """Scores images; higher score = more member-like.

    Subclasses set ``threat_model`` and a ``Config`` dataclass whose defaults are the paper's.
    ``calibrate`` sees only the calibration split; ``score`` must not learn from what it scores.
    """

    threat_model: ClassVar[ThreatModel]
    Config: ClassVar[type]
    # True for attacks that condition on the images' captions (text-to-image targets only): the
    # digits board, which has no captions, cannot run them
    requires_captions: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config

    def calibrate(self, access: Any, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        """Choose settings on labelled calibration images; returns what was chosen, for the card."""
        return {}

    @abc.abstractmethod
    def score(self, access: Any, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        """One float per image, higher = member."""

    @abc.abstractmethod
    def expected_passes(self) -> tuple[int, int]:
        """(forward, backward) UNet passes per scored image that the paper's algorithm needs.

        Declared from the specification; the results report what the adapter counted, and a test
        holds the two equal, so a wasteful implementation cannot hide.
        """


class Defense(abc.ABC):
    """Changes how a target is trained. The default hooks change nothing.

    Override ``transform`` to change the batches (augmentation), or ``train`` to change the
    procedure (a privacy engine, a stopping rule, distillation); ``costs`` reports what it took.
    """

    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    def validation_size(self) -> int:
        """How many held-out images (disjoint from every evaluated image) ``train`` needs."""
        return 0

    def transform(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Applied to every training batch before noising (augmentation lives here)."""
        return batch

    def train(self, job: TrainingJob, unet: Any) -> dict[str, Any]:
        """Train ``unet`` (fresh from ``job.new_unet()``) in place; returns the training report."""
        return fit(job, unet, transform=self.transform)

    def costs(self) -> dict[str, Any]:
        """What the defense cost, for the card (ε, steps, ...)."""
        return {}

    def replaces_procedure(self) -> bool:
        """True when ``train`` is not plain ``fit`` (or needs validation images): a target that
        trains with its own data (latents, captions) can only honour batch transforms."""
        return type(self).train is not Defense.train or self.validation_size() > 0

    def changes_training(self) -> bool:
        """True when training under this defense differs from plain training: a model loaded as
        given cannot honour it."""
        return type(self).transform is not Defense.transform or self.replaces_procedure()


@dataclass
class TrainedTarget:
    """A model ready to attack, with what training it cost."""

    model: DiffusionModel
    target_hash: str
    training: dict[str, Any] = field(default_factory=dict)


class Target(abc.ABC):
    """A model family: how to obtain (train or load) a model for a member set."""

    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def obtain(
        self, members: torch.Tensor, defense: Defense, seed: int, cache: Any, key: dict,
        validation: torch.Tensor | None = None, captions: Sequence[str] | None = None,
    ) -> TrainedTarget:  # fmt: skip
        """Train on ``members`` under ``defense`` (or load); ``key`` identifies the data, the
        defense and ``validation`` (the held-out images the defense asked for, if any).
        ``captions`` are the members' captions when the dataset has them (text-to-image targets
        condition on them; unconditional targets ignore them)."""


class Dataset(abc.ABC):
    """Images in [-1, 1], NCHW float32, plus a fingerprint of their content."""

    Config: ClassVar[type]

    def __init__(self, config: Any) -> None:
        self.config = config

    @abc.abstractmethod
    def load(self) -> torch.Tensor:
        """All images the split may draw from."""

    def labels(self) -> np.ndarray | None:
        """Class labels aligned with ``load()``, or None; utility trains its FID features on them."""
        return None

    def captions(self) -> list[str] | None:
        """Captions aligned with ``load()``, or None; text-to-image targets condition on them."""
        return None
