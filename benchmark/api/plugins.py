"""The contracts plugins implement. The harness knows plugins only through these and the registry.

Conventions (scikit-learn's): parameters live in ``config`` and are set only in ``__init__``;
whatever ``calibrate`` (attacks) or ``train`` (defenses) learns ends in ``_``, and reading it
before it exists is a clear error rather than an ``AttributeError`` from deep inside a run.
Compatibility is declared on the class (``requires_captions``, ``text_conditioned``,
``Target.trains``, ``Defense.changes_training``) and checked when a suite is read.
"""

from __future__ import annotations

import abc
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import torch

from benchmark.api.model import DiffusionModel
from benchmark.api.training import TrainingJob, TrainingPlan
from benchmark.api.views import AccessView
from benchmark.core.errors import BenchmarkError
from benchmark.core.protocol import ThreatModel

ConfigT = TypeVar("ConfigT")


class Configured(Generic[ConfigT]):
    """A plugin built from a config dataclass. Declaring it once as the base's parameter
    (``class NAIS(Attack[NAISConfig])``) types ``self.config`` for editors and sets ``NAIS.Config``,
    the class the suite parser builds from YAML."""

    Config: ClassVar[type]

    def __init__(self, config: ConfigT) -> None:
        self.config = config

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin, args = typing.get_origin(base), typing.get_args(base)
            if isinstance(origin, type) and issubclass(origin, Configured) and args and isinstance(args[0], type):
                cls.Config = args[0]


class LearnedState:
    """Guards attributes ending in ``_``: they exist only once the step that learns them ran."""

    _learned_by: ClassVar[str] = "calibrate"

    def __getattr__(self, name: str) -> Any:  # Any: it only ever raises; the type is __getattr__'s own
        if name.endswith("_") and not name.startswith("__"):
            raise BenchmarkError(
                f"{type(self).__name__}.{name} is learned by {self._learned_by}(), which has not run yet; "
                f"call {self._learned_by}() first"
            )
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def has_learned(self, name: str) -> bool:
        """Whether the learned attribute ``name`` exists (for steps that may legitimately be skipped)."""
        return name in vars(self)


@dataclass
class AttackContext:
    """What an attack may use besides its access view: ``generator`` seeds every random draw."""

    generator: torch.Generator


class Attack(LearnedState, Configured[ConfigT], abc.ABC):
    """Scores images; higher score = more member-like.

    Subclasses set ``threat_model`` and a ``Config`` dataclass whose defaults are the paper's.
    ``calibrate`` sees only the attacker's calibration data (what the suite's ``knowledge`` grants:
    a shadow model's members and non-members through a view of the shadow, or labelled target
    members); ``score`` must not learn from what it scores. Whether members score higher or lower
    is learned by the harness on calibration data, so a statistic's sign need not be guessed.
    """

    threat_model: ClassVar[ThreatModel]
    # True for attacks that condition on the images' captions: only a text-conditioned target
    # can serve them, and a suite that pairs them with another target is refused when it is read
    requires_captions: ClassVar[bool] = False

    def needs_calibration(self) -> bool:
        """True when ``calibrate`` learns from labelled images (a setting, a head, a classifier): the
        attack then cannot run without calibration data (knowledge ``none``), and the harness fits
        its threshold and orientation on calibration images ``calibrate`` did not see."""
        return False

    def calibrate(self, access: AccessView, images: torch.Tensor, labels: np.ndarray, ctx: AttackContext) -> dict:
        """Choose settings on labelled calibration images; returns what was chosen, for the card."""
        return {}

    @abc.abstractmethod
    def score(self, access: AccessView, images: torch.Tensor, ctx: AttackContext) -> np.ndarray:
        """One float per image, higher = member."""

    @abc.abstractmethod
    def expected_passes(self) -> tuple[int, int]:
        """(forward, backward) UNet passes per scored image that the paper's algorithm needs.

        Declared from the specification; the results report what the adapter counted, and a test
        holds the two equal, so a wasteful implementation cannot hide.
        """


class Defense(LearnedState, Configured[ConfigT], abc.ABC):
    """Changes how a target is trained. The default hooks change nothing.

    Override ``transform`` to change the batches (augmentation), or ``train`` to change the
    procedure (a privacy engine, a stopping rule, distillation); ``costs`` reports what it took,
    from state ``train`` learned (attributes ending in ``_``).
    """

    _learned_by: ClassVar[str] = "train"
    # True for the undefended reference (training as the recipe says): every other defense's row is
    # compared with it, and the page finds it by this flag, not by its name
    baseline: ClassVar[bool] = False

    def validation_size(self) -> int:
        """How many held-out images (disjoint from every evaluated image) ``train`` needs."""
        return 0

    def uses_public_data(self) -> bool:
        """True when ``train`` pretrains on the split's public block (``job.pretrained``)."""
        return False

    def transform(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Applied to every training batch before noising (augmentation lives here)."""
        return batch

    def train(self, job: TrainingJob, unet: torch.nn.Module) -> dict[str, Any]:  # Any: JSON-able report
        """Train ``unet`` (fresh from ``job.new_unet()``) in place; returns the training report."""
        return job.fit(unet, transform=self.transform)

    def costs(self) -> dict[str, Any]:  # Any: JSON-able values for the card
        """What the defense cost, for the card (ε, steps, ...)."""
        return {}

    def replaces_procedure(self) -> bool:
        """True when ``train`` is not plain ``fit`` (or needs validation images): a target that
        trains with its own data (latents, captions) can only honour batch transforms."""
        return type(self).train is not Defense.train or self.validation_size() > 0 or self.uses_public_data()

    def changes_training(self) -> bool:
        """True when training under this defense differs from plain training: a model loaded as
        given cannot honour it."""
        return type(self).transform is not Defense.transform or self.replaces_procedure()


class Target(Configured[ConfigT], abc.ABC):
    """A model family attacked as given: the harness only ``load``s it (no defense can change it).
    A family the harness trains is a :class:`TrainableTarget`."""

    # a text-conditioned target serves caption-conditioned attacks and needs a captioned dataset
    text_conditioned: ClassVar[bool] = False
    # False: the target trains from its own data (latents, caption embeddings), so a defense that
    # replaces the training procedure cannot run on it; batch transforms still can
    supports_procedures: ClassVar[bool] = True

    def trains(self) -> bool:
        """False when the model is attacked as given (no defense can then change it)."""
        return False

    @classmethod
    def audits(cls, folder: Path) -> bool:
        """Whether ``audit --model folder`` is a model of this family, judged by the folder's layout;
        ``audit`` loads the folder with the one registered target that says so (configured with
        ``path`` and, for a family that takes an adapter, ``lora``)."""
        return False

    def image_shape(self) -> tuple[int, int, int] | None:
        """The pixel shape of the images the model was built for, where the model denoises something
        else (latents); None: the shape the loaded model samples."""
        return None

    def fingerprint(self) -> dict[str, Any]:  # Any: JSON-able values for the cache key
        """What identifies the starting weights beyond the config (file hashes of a loaded model)."""
        return {}

    def source(self) -> dict[str, Any]:  # Any: JSON-able values for the card
        """What the card's ``training`` field says about where the model came from."""
        return {}

    @abc.abstractmethod
    def load(self, folder: Path | None, sample_shape: tuple[int, ...]) -> DiffusionModel:
        """The model saved in ``folder``, or the given model when ``folder`` is None (``trains()``
        False); ``sample_shape`` is the shape of one dataset image."""


class TrainableTarget(Target[ConfigT]):
    """A model family the harness trains: how to build, save and load a model, and its recipe.

    The harness owns everything around that: it hashes the training inputs, looks the model up in
    its cache, builds a ``TrainingJob`` from ``training_plan``, trains it under the defense, records
    the defense's costs, and calls ``save``/``load``. ``trains()`` may still say False for a
    configuration that is attacked as given (a text-to-image pipeline with no fine-tuning steps).
    """

    # bump when the training code changes the weights a target produces (joins the cache key)
    trainer_version: ClassVar[int] = 1

    def trains(self) -> bool:
        return True

    @abc.abstractmethod
    def training_plan(self, members: torch.Tensor, captions: Sequence[str] | None, seed: int) -> TrainingPlan:
        """The recipe and data to train on ``members`` (with their ``captions``, when the target is
        text-conditioned); ``new_unet`` must be seeded by ``seed``."""

    @abc.abstractmethod
    def save(self, unet: torch.nn.Module, plan: TrainingPlan, folder: Path) -> None:
        """Write the trained ``unet`` (and whatever ``load`` needs) to ``folder`` as safetensors."""


class Dataset(Configured[ConfigT], abc.ABC):
    """Images in [-1, 1], NCHW float32, plus a fingerprint of their content."""

    @abc.abstractmethod
    def load(self) -> torch.Tensor:
        """All images the split may draw from."""

    def labels(self) -> np.ndarray | None:
        """Class labels aligned with ``load()``, or None; utility trains its FID features on them."""
        return None

    def captions(self) -> list[str] | None:
        """Captions aligned with ``load()``, or None; text-to-image targets condition on them."""
        return None
