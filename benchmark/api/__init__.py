"""Everything a plugin (attack, defense, target, dataset) may use; the rest of ``benchmark`` is internal.

Plugins import only from here (``tests/test_plugin_api.py`` walks their imports). Nothing in this
package imports the trainer, the runner or any plugin (``tests/test_layers.py`` checks it on the
source, lazy imports included), so a plugin author reads this folder and nothing else. The
conformance checks a plugin must pass run the harness, so they live one floor up, in
:mod:`benchmark.checks`.
"""

from benchmark.api.calibration import ChoosesSettings, choose_by_auc
from benchmark.api.heads import DifferenceHead, HeadConfig
from benchmark.api.model import DiffusionModel, denoising_mse
from benchmark.api.plugins import (
    Attack,
    AttackContext,
    Dataset,
    Defense,
    LearnedState,
    Target,
    TrainableTarget,
)
from benchmark.api.registry import ATTACKS, DATASETS, DEFENSES, TARGETS
from benchmark.api.sources import resolve_source
from benchmark.api.training import Monitor, Recipe, RegressionTarget, TrainingJob, TrainingPlan, Transform, noised_batch
from benchmark.api.views import AccessView, BlackBoxView, GrayBoxView, WhiteBoxView
from benchmark.core import progress, runtime
from benchmark.core.checkpoints import load_checkpoint, save_checkpoint
from benchmark.core.configs import added_later
from benchmark.core.errors import BenchmarkError, ThreatModelError
from benchmark.core.hashing import sha256_file, sha256_json
from benchmark.core.loop_state import LoopCheckpoint, LoopProgress
from benchmark.core.protocol import Knowledge, ThreatModel

__all__ = [
    "ATTACKS",
    "DATASETS",
    "DEFENSES",
    "TARGETS",
    "AccessView",
    "Attack",
    "AttackContext",
    "BenchmarkError",
    "BlackBoxView",
    "ChoosesSettings",
    "Dataset",
    "Defense",
    "DifferenceHead",
    "DiffusionModel",
    "GrayBoxView",
    "HeadConfig",
    "Knowledge",
    "LearnedState",
    "LoopCheckpoint",
    "LoopProgress",
    "Monitor",
    "Recipe",
    "RegressionTarget",
    "Target",
    "ThreatModel",
    "ThreatModelError",
    "TrainableTarget",
    "TrainingJob",
    "TrainingPlan",
    "Transform",
    "WhiteBoxView",
    "added_later",
    "choose_by_auc",
    "denoising_mse",
    "load_checkpoint",
    "noised_batch",
    "progress",
    "resolve_source",
    "runtime",
    "save_checkpoint",
    "sha256_file",
    "sha256_json",
]
