"""Obtaining a target: the harness's side of the target contract.

A target plugin only builds, saves and loads a model and describes its recipe; here the harness
hashes what changes the weights, looks the model up in the content-addressed cache, and on a miss
builds the ``TrainingJob`` (binding its own training loop), trains under the defense, records the
defense's costs and saves. Shadows and the FID-free audit path go through the same function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import Defense, Target, TrainableTarget
from benchmark.api.training import TrainingJob
from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.run.cache import Cache
from benchmark.run.training import fit


@dataclass
class TrainedTarget:
    """A model ready to attack, with what training it cost."""

    model: DiffusionModel
    target_hash: str
    training: dict[str, Any] = field(default_factory=dict)


def incompatibility(target: Target, defense: Defense, target_name: str = "", defense_name: str = "") -> str | None:
    """Why ``defense`` cannot run on ``target``, from what both declare on their classes (None: it can).
    The suite parser asks this for every pair, so an impossible cell is refused before training."""
    target_name = target_name or type(target).__name__
    defense_name = defense_name or type(defense).__name__
    if not target.trains() and defense.changes_training():
        return (f"target '{target_name}' is attacked as given (it does not train), so defense '{defense_name}' "
                "cannot change it; use defenses: [none] with this target")  # fmt: skip
    if not target.supports_procedures and defense.replaces_procedure():
        return (f"defense '{defense_name}' replaces the training procedure, which target '{target_name}' does not "
                "support (it trains on its own latents and captions); use none or augmentation")  # fmt: skip
    return None


def obtain(
    target: Target, members: torch.Tensor, defense: Defense, seed: int, cache: Cache | None, key: dict,
    validation: torch.Tensor | None = None, captions: Sequence[str] | None = None, public: torch.Tensor | None = None,
) -> TrainedTarget:  # fmt: skip
    """Train ``target`` on ``members`` under ``defense`` (or load it from ``cache``); ``key``
    identifies the data, the defense, ``validation`` (the held-out images the defense asked
    for) and ``public`` (the images it may pretrain on). A target loaded as given is only loaded
    (no cache)."""
    problem = incompatibility(target, defense)
    if problem:
        raise BenchmarkError(problem)
    sample_shape = tuple(members.shape[1:])
    if not isinstance(target, TrainableTarget) or not target.trains():
        return TrainedTarget(target.load(None, sample_shape), sha256_json(target.fingerprint()), target.source())
    weights = target.fingerprint()
    identity = {"key": key, "seed": seed, "trainer": target.trainer_version} | ({"weights": weights} if weights else {})
    target_hash = sha256_json(identity)

    def build(folder: Path, scratch: Path) -> dict:
        plan = target.training_plan(members, captions, seed)
        empty = plan.members[:0]
        job = TrainingJob(plan.new_unet, plan.scheduler, plan.members, empty if validation is None else validation,
                          plan.recipe, seed, scratch, plan.conditioning, trainer=fit, public=public,
                          pretrainer=_pretrainer(target, public, key, seed, cache))  # fmt: skip
        unet = job.new_unet()
        report = defense.train(job, unet) | target.source()
        report["defense_costs"] = defense.costs()
        target.save(runtime.accelerator().unwrap_model(unet).to("cpu").eval(), plan, folder)
        return report

    folder, report = cache.get_or_build("targets", target_hash, build)
    return TrainedTarget(target.load(folder, sample_shape), target_hash, report)


def _pretrainer(
    target: TrainableTarget, public: torch.Tensor | None, key: dict, seed: int, cache: Cache
) -> Callable[[int], torch.nn.Module] | None:
    """``job.pretrained``: the target's recipe, undefended, on the public images only, cached under
    what it depends on (not the defense, not the members), so ``public_only`` and every DP fine-tune
    on one pool and seed share one pretraining."""
    if public is None or not len(public):
        return None
    pretrain_key = {k: v for k, v in key.items() if k not in ("defense", "validation_sha256", "split_sha256")}

    def pretrained(steps: int) -> torch.nn.Module:
        plan = target.training_plan(public, None, seed)
        recipe = dataclasses.replace(plan.recipe, train_steps=steps)
        identity = {"pretrain": pretrain_key, "steps": steps, "seed": seed, "trainer": target.trainer_version}

        def build(folder: Path, scratch: Path) -> dict:
            job = TrainingJob(plan.new_unet, plan.scheduler, plan.members, plan.members[:0], recipe, seed, scratch,
                              trainer=fit)  # fmt: skip
            unet = job.new_unet()
            report = job.fit(unet, title="pretraining on public images")
            unet = runtime.accelerator().unwrap_model(unet).to("cpu")
            save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, folder / "unet.safetensors")
            return report

        folder, _ = cache.get_or_build("pretrained", sha256_json(identity), build)
        unet = plan.new_unet()
        unet.load_state_dict(load_file(folder / "unet.safetensors"))
        return unet

    return pretrained
