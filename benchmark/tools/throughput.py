"""``python -m benchmark throughput``: training and scoring throughput of the paper's CIFAR-10 UNet.

The GPU check of the paper-scale path: the `paper` suite's target (35.7M UNet, ch 128, 1-2-2-2, attention at
16×16, EMA, warm-up) trained by the harness's own ``fit`` on random 32×32 RGB images of CIFAR-10's
training-set size, then NAIS, loss, PIA and SecMI scored through the counted access view. It prints
images per second for each, and each attack's UNet forwards per second as a share of a bare batched
forward at the same batch size (what the harness costs on that device).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from benchmark.api.model import DiffusionModel
from benchmark.api.plugins import AttackContext
from benchmark.api.registry import ATTACKS, TARGETS
from benchmark.api.training import TrainingJob
from benchmark.core import runtime
from benchmark.core.configs import build_config
from benchmark.run.access import counter_of, make_access
from benchmark.run.suite import load_suite
from benchmark.run.training import fit

TINY_UNET = {"block_out_channels": [16, 32], "batch_size": 8}
ATTACKS_TIMED = ("nais", "loss", "pia", "secmi")


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(action) -> float:
    _synchronize()
    started = time.perf_counter()
    action()
    _synchronize()
    return time.perf_counter() - started


def measure(steps: int, images: int, members: int, changes: dict, batch: int) -> list[str]:
    """The `paper` suite's target (with ``changes``), trained ``steps`` steps twice, then scored."""
    component = load_suite("paper").targets[0]
    config = dataclasses.replace(component.config, **changes, train_steps=steps, warmup_steps=10)
    data = torch.rand(members, 3, 32, 32) * 2 - 1
    plan = TARGETS.get(component.name).cls(config).training_plan(data, None, seed=0)
    new_unet, scheduler, recipe = plan.new_unet, plan.scheduler, plan.recipe
    lines = [f"device {runtime.device()}, {sum(p.numel() for p in new_unet().parameters()) / 1e6:.1f}M parameters"]
    with tempfile.TemporaryDirectory() as scratch:
        for run in ("warm-up", "timed"):  # the first run pays for kernel selection and allocation
            unet = new_unet()
            job = TrainingJob(new_unet, scheduler, data, data[:0], recipe, 0, Path(scratch) / run, trainer=fit)
            seconds = _timed(lambda unet=unet, job=job, run=run: job.fit(unet, title=f"training ({run})"))
    lines.append(f"training: {steps / seconds:.2f} steps/s × batch {config.batch_size} = "
                 f"{steps * config.batch_size / seconds:.0f} images/s")  # fmt: skip
    unet = runtime.accelerator().unwrap_model(unet).eval()
    model = DiffusionModel(unet, scheduler)
    scored = torch.rand(images, 3, 32, 32) * 2 - 1
    x = scored[:batch].to(runtime.device())
    t = torch.full((len(x),), 100, device=runtime.device())
    with torch.inference_mode():
        runtime.sharded_forward(unet, x, t)
        bare = 5 * len(x) / _timed(lambda: [runtime.sharded_forward(unet, x, t) for _ in range(5)])
    lines.append(f"bare forward at batch {len(x)}: {bare:.0f} images/s")
    for name in ATTACKS_TIMED:
        attack_entry = ATTACKS.get(name)
        attack = attack_entry.cls(build_config(attack_entry.cls.Config, name, attack_entry.preset))
        access = make_access(model, attack.threat_model, batch)
        attack.score(access, scored[:batch], AttackContext(torch.Generator().manual_seed(0)))
        counter_of(access).reset()
        seconds = _timed(lambda a=attack, v=access: a.score(v, scored, AttackContext(torch.Generator().manual_seed(0))))
        rate = counter_of(access).forward_passes / seconds
        lines.append(f"{name}: {images / seconds:.0f} images/s, {counter_of(access).forward_passes / images:g} queries "
                     f"each, {rate:.0f} forwards/s = {rate / bare:.2f}× the bare rate")  # fmt: skip
    return lines


def run_throughput(steps: int, images: int, tiny: bool = False) -> None:
    """Print the figures (``python -m benchmark --device cuda throughput``); ``tiny`` only checks that it runs."""
    sizes = (2, 16, 32, TINY_UNET, 8) if tiny else (steps, images, 25000, {}, 1000)
    for line in measure(*sizes):
        print(line, flush=True)
