"""``python -m benchmark perf``: the harness measured against its physical limit, as ratios from one run.

On a CPU the limit of an attack is the UNet forward passes it needs; of training, the bare
diffusers loop. Every figure here is a ratio of two timings taken in the same process, so it
travels between machines better than a wall time.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import Attack, AttackContext
from benchmark.api.registry import ATTACKS, DEFENSES, TARGETS
from benchmark.api.training import TrainingJob, TrainingPlan
from benchmark.core.configs import build_config
from benchmark.core.errors import BenchmarkError
from benchmark.core.protocol import ThreatModel
from benchmark.core.storage import atomic_write_text
from benchmark.run.access import counter_of, make_access
from benchmark.run.scoring import Labelled
from benchmark.run.training import fit

T = TypeVar("T")


@dataclass
class PerfSizes:
    images: int = 512
    batch_size: int = 256
    train_steps: int = 30
    members: int = 96
    image_size: int = 8  # the quick and full suites' digits resolution
    repeats: int = 3
    train_batch: int = 64  # the suites' recipe; below ``members``, so DP-SGD's sample rate stays under 1

    @classmethod
    def tiny(cls) -> PerfSizes:
        return cls(images=32, batch_size=16, train_steps=4, members=16, image_size=8, repeats=1, train_batch=8)


def _timed(action: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def _seconds(action: Callable[[], object]) -> float:
    return _timed(action)[0]


def _best_of(repeats: int, action: Callable[[], object]) -> float:
    """The fastest of several timings: the least disturbed by the rest of the machine."""
    return min(_seconds(action) for _ in range(repeats))


def _model(sizes: PerfSizes) -> tuple[DiffusionModel, TrainingPlan]:
    """The suites' target, built through the registry and its own training plan (seed 0)."""
    entry = TARGETS.get("ddpm_unet")
    recipe = {"train_steps": sizes.train_steps, "batch_size": sizes.train_batch}
    config = build_config(entry.cls.Config, "perf target", recipe)
    shape = torch.empty(0, 1, sizes.image_size, sizes.image_size)
    plan = entry.cls(config).training_plan(shape, None, seed=0)
    return DiffusionModel(plan.new_unet().eval(), plan.scheduler), plan


def scoring_overhead(sizes: PerfSizes) -> list[dict]:
    """Each attack's scoring time ÷ (its counted queries × one bare batched forward over the same
    images). The two are timed alternately, repeat by repeat, so a machine that speeds up or slows
    down during the run moves both sides of the ratio alike."""
    model, _ = _model(sizes)
    images = torch.rand(sizes.images, 1, sizes.image_size, sizes.image_size) * 2 - 1
    t = torch.full((sizes.batch_size,), 100)

    def bare() -> None:
        with torch.inference_mode():
            for batch in images.split(sizes.batch_size):
                model.unet(batch, t[: len(batch)])

    bare()
    rows = []
    for entry in ATTACKS.entries():
        if entry.cls.threat_model is not ThreatModel.GRAY_BOX or entry.preset or entry.cls.requires_captions:
            continue  # registered variants share their class's hot path; CLiD needs a text-to-image model
        attack = entry.cls(build_config(entry.cls.Config, entry.name, entry.preset))
        access = make_access(model, entry.cls.threat_model, sizes.batch_size)
        labels = np.arange(len(images)) % 2  # calibration is not timed; it only gives what score needs
        attack.calibrate(access, images, labels, AttackContext(torch.Generator()))
        counter_of(access).reset()
        walls, bares = [], []
        for _ in range(sizes.repeats):
            walls.append(_seconds(lambda a=attack, x=access: a.score(x, images, AttackContext(torch.Generator()))))
            bares.append(_seconds(bare))
        queries = counter_of(access).forward_passes / (sizes.repeats * len(images))
        rows.append(
            {
                "attack": entry.name,
                "queries_per_sample": queries,
                "seconds_per_sample": min(walls) / len(images),
                "overhead": min(walls) / (queries * min(bares)),
            }
        )
    return rows


def _bare_training(model: DiffusionModel, members: torch.Tensor, steps: int, lr: float) -> None:
    """The reference: the diffusers training loop with nothing of the harness around it."""
    optimizer = torch.optim.AdamW(model.unet.parameters(), lr=lr)
    model.unet.train()
    for _ in range(steps):
        batch = members[torch.randint(0, len(members), (64,))]
        noise = torch.randn_like(batch)
        t = torch.randint(0, 1000, (len(batch),))
        loss = F.mse_loss(model.unet(model.scheduler.add_noise(batch, noise, t), t).sample, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.unet.parameters(), 1.0)
        optimizer.step()


def looped_gradient_norms(
    model: DiffusionModel, x0: torch.Tensor, noise: torch.Tensor, timesteps: list[int]
) -> torch.Tensor:
    """The reference for GSA's batched per-example gradients: one forward and backward per image
    through plain autograd, as GSA computed its features before ``torch.func``."""
    t = torch.tensor(timesteps)
    rows = []
    for image, draws in zip(x0, noise, strict=True):
        noisy = model.scheduler.add_noise(image.expand(len(timesteps), *image.shape), draws, t)
        model.unet.zero_grad(set_to_none=True)
        ((model.unet(noisy, t).sample - draws) ** 2).mean().backward()
        rows.append(torch.stack([p.grad.norm() for p in model.unet.parameters()]))
    model.unet.zero_grad(set_to_none=True)
    return torch.stack(rows)


def _harness_training(sizes: PerfSizes, members: torch.Tensor, defense_name: str = "none") -> tuple[float, float]:
    """(wall seconds of the defense's ``train``, seconds of its step loop as it reports them); the
    model is built before the clock starts, as in the bare loop."""
    model, plan = _model(sizes)
    defense_entry = DEFENSES.get(defense_name)
    defense = defense_entry.cls(build_config(defense_entry.cls.Config, defense_name, defense_entry.preset))
    with tempfile.TemporaryDirectory() as scratch:
        job = TrainingJob(plan.new_unet, model.scheduler, members, members[:0], plan.recipe, 0, Path(scratch),
                          trainer=fit)  # fmt: skip
        started = time.perf_counter()
        report = defense.train(job, model.unet)
        return time.perf_counter() - started, report["train_seconds"]


def _bare_seconds(sizes: PerfSizes, members: torch.Tensor) -> float:
    model, plan = _model(sizes)
    started = time.perf_counter()
    _bare_training(model, members, sizes.train_steps, plan.recipe.learning_rate)
    return time.perf_counter() - started


def training_ratio(sizes: PerfSizes) -> dict:
    """Harness step ÷ bare step, interleaved so both see the same machine state."""
    members = torch.rand(sizes.members, 1, sizes.image_size, sizes.image_size) * 2 - 1
    doubled = torch.cat([members, members.flip(0)])
    _bare_seconds(PerfSizes.tiny(), members[:, :, :8, :8])  # warm-up of kernels and allocator
    bare, harness, harness_doubled = [], [], []
    dp = []
    for _ in range(sizes.repeats):
        bare.append(_bare_seconds(sizes, members))
        harness.append(_harness_training(sizes, members))
        harness_doubled.append(_harness_training(sizes, doubled))
        if "dpsgd" in DEFENSES:
            dp.append(_harness_training(sizes, members, "dpsgd"))
    bare_s, (harness_s, harness_loop) = min(bare), min(harness)
    dp_wall, dp_loop = min(dp) if dp else (None, None)
    return {
        "bare_step_seconds": bare_s / sizes.train_steps,
        "harness_step_seconds": harness_s / sizes.train_steps,
        "harness_over_bare": harness_s / bare_s,
        "members_doubled_time_ratio": min(harness_doubled)[0] / harness_s,
        # step time against step time; choosing σ and reporting ε is a one-off cost per training
        "dpsgd_over_plain": None if dp_loop is None else dp_loop / harness_loop,
        "dpsgd_accounting_seconds": None if dp_wall is None else dp_wall - dp_loop,
    }


def scoring_scaling(sizes: PerfSizes) -> dict:
    """Scoring time as the image count doubles twice: 2.0 and 2.0 mean linear."""
    model, _ = _model(sizes)
    entry = ATTACKS.get("nais")
    attack = entry.cls(build_config(entry.cls.Config, "nais", entry.preset))
    access = make_access(model, ThreatModel.GRAY_BOX, sizes.batch_size)
    times = []
    for factor in (1, 2, 4):
        images = torch.rand(sizes.images * factor, 1, sizes.image_size, sizes.image_size) * 2 - 1
        times.append(
            _best_of(sizes.repeats, lambda x=images: attack.score(access, x, AttackContext(torch.Generator())))
        )
    return {
        "images": [sizes.images * f for f in (1, 2, 4)],
        "seconds": times,
        "ratios": list(np.array(times[1:]) / times[:-1]),
    }


def gradient_batching(sizes: PerfSizes) -> dict:
    """GSA's per-example gradient norms batched with ``torch.func`` against the per-image loop, on
    the same images and noise, alternately timed; the largest relative difference says they agree."""
    model, _ = _model(sizes)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(sizes.members, 1, sizes.image_size, sizes.image_size, generator=generator) * 2 - 1
    timesteps = [(i + 1) * 100 - 1 for i in range(10)]  # GSA's default: 10 equidistant timesteps
    noise = torch.randn(len(images), len(timesteps), *images.shape[1:], generator=generator)
    access = make_access(model, ThreatModel.WHITE_BOX, sizes.batch_size)
    looped, batched = [], []
    for _ in range(sizes.repeats):
        seconds, reference = _timed(lambda: looped_gradient_norms(model, images, noise, timesteps))
        looped.append(seconds)
        seconds, norms = _timed(lambda: access.loss_gradient_norms(images, noise, timesteps))
        batched.append(seconds)
    difference = (norms - reference).abs().max() / reference.abs().max()
    return {
        "images": len(images),
        "loop_seconds_per_image": min(looped) / len(images),
        "batched_seconds_per_image": min(batched) / len(images),
        "loop_over_batched": min(looped) / min(batched),
        "max_relative_difference": float(difference),
    }


def calibration_passes(sizes: PerfSizes) -> list[dict]:
    """UNet passes (forward + backward) per calibration image for every attack that learns from
    calibration data, counted, not timed, three ways: as the harness calibrates (``calibrate`` on
    one half, the threshold scored on the other, so no image is queried twice); calibrating on
    every image and scoring them all again for the threshold (two passes); and calibrating on every
    image with the threshold fitted on ``calibrate``'s own scores (one pass, but the threshold then
    sits on the images that chose the setting, which the harness refuses)."""
    model, _ = _model(sizes)
    images = torch.rand(sizes.members, 1, sizes.image_size, sizes.image_size) * 2 - 1
    labelled = Labelled(images, np.arange(len(images)) % 2)
    fit, held_out = labelled.halves(0)
    rows = []
    for entry in ATTACKS.entries():
        attack = entry.cls(build_config(entry.cls.Config, entry.name, entry.preset))
        if not attack.needs_calibration() or entry.cls.requires_captions:
            continue

        def passes(calibrated_on: Labelled, thresholded_on: Labelled, attack: Attack = attack) -> tuple[float, float]:
            """(passes per calibration image once ``calibrate`` is done, and once the threshold is scored)."""
            access = make_access(model, attack.threat_model, sizes.batch_size)
            counter = counter_of(access)
            attack.calibrate(access, calibrated_on.images, calibrated_on.labels, AttackContext(torch.Generator()))
            calibrated = counter.forward_passes + counter.backward_passes
            attack.score(access, thresholded_on.images, AttackContext(torch.Generator()))
            return calibrated / len(labelled), (counter.forward_passes + counter.backward_passes) / len(labelled)

        halves = passes(fit, held_out)[1]
        reused, twice = passes(labelled, labelled)  # calibrate on all: its own passes, then all scored again
        rows.append({"attack": entry.name, "passes_per_image": halves, "two_pass_per_image": twice,
                     "reused_per_image": reused, "saved": 1 - halves / twice})  # fmt: skip
    return rows


def suite_wall_times(suites: list[str], jobs: list[int]) -> dict:
    """Per suite, cold (an empty cache of its own) once for each ``--jobs`` value, then warm (the
    first cold run's cache, a fresh output folder), each in a subprocess. The cold runs of one suite
    follow each other in this one invocation, so their ratio compares like with like."""
    results = {}
    with tempfile.TemporaryDirectory() as root:
        for name in suites:
            for phase, count in [*((f"cold_jobs{j}", j) for j in jobs), ("warm", jobs[0])]:
                command = [sys.executable, "-m", "benchmark", "run", "--suite", name, "--jobs", str(count),
                           "--out", f"{root}/{name}-{phase}", "--cache", f"{root}/{name}-cache-{count}"]  # fmt: skip
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode:
                    raise BenchmarkError(f"suite {name} failed during perf: {done.stderr.strip().splitlines()[-1]}")
                results[f"{name}_{phase}_seconds"] = time.perf_counter() - started
            for count in jobs[1:]:
                results[f"{name}_cold_jobs{count}_over_jobs{jobs[0]}"] = (
                    results[f"{name}_cold_jobs{count}_seconds"] / results[f"{name}_cold_jobs{jobs[0]}_seconds"]
                )
    return results


def run_perf(out: Path, sizes: PerfSizes, suites: list[str], jobs: list[int]) -> dict:
    report = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
        },
        "sizes": sizes.__dict__,
        "scoring": scoring_overhead(sizes),
        "training": training_ratio(sizes),
        "scaling": scoring_scaling(sizes),
        "gradients": gradient_batching(sizes),
        "calibration": calibration_passes(sizes),
        "suites": suite_wall_times(suites, jobs),
    }
    atomic_write_text(out, json.dumps(report, indent=2))
    print_report(report)
    return report


def print_report(report: dict) -> None:
    console = Console()
    table = Table(title="scoring: wall time ÷ (counted queries × bare batched forward)")
    for column in ("attack", "queries/sample", "ms/sample", "overhead"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    for row in report["scoring"]:
        table.add_row(row["attack"], f"{row['queries_per_sample']:g}", f"{row['seconds_per_sample'] * 1e3:.3f}",
                      f"{row['overhead']:.2f}×")  # fmt: skip
    console.print(table)
    training, scaling = report["training"], report["scaling"]
    dp = training["dpsgd_over_plain"]
    console.print(
        f"training: harness {training['harness_step_seconds'] * 1e3:.1f} ms/step = "
        f"{training['harness_over_bare']:.3f}× the bare diffusers loop; members doubled: "
        f"{training['members_doubled_time_ratio']:.3f}× (flat is 1.0); "
        f"DP-SGD steps: {'not registered' if dp is None else f'{dp:.2f}× plain'}"
        + ("" if dp is None else f" (+{training['dpsgd_accounting_seconds']:.1f} s of accounting per training)")
    )
    console.print(
        f"scoring scaling (×2 images each): {', '.join(f'{r:.2f}×' for r in scaling['ratios'])} (linear is 2.0)"
    )
    gradients = report["gradients"]
    console.print(
        f"GSA gradients: per-image loop {gradients['loop_seconds_per_image'] * 1e3:.1f} ms/image, batched "
        f"{gradients['batched_seconds_per_image'] * 1e3:.1f} ms/image ({gradients['loop_over_batched']:.2f}× faster; "
        f"largest relative difference {gradients['max_relative_difference']:.1e})"
    )
    table = Table(title="calibration: UNet passes per calibration image (forward + backward)")
    for column in ("attack", "halves (as run)", "all, then all again", "saved", "all, scores reused (biased)"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    for row in report["calibration"]:
        table.add_row(row["attack"], f"{row['passes_per_image']:g}", f"{row['two_pass_per_image']:g}",
                      f"{row['saved']:.0%}", f"{row['reused_per_image']:g}")  # fmt: skip
    console.print(table)
    for name, value in report["suites"].items():
        console.print(f"{name}: {value:.3f}" if "_over_" in name else f"{name}: {value:.1f} s")
