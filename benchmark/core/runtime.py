"""Process-wide settings made once at start-up: threads and the device (through accelerate).

Threads are set once because switching torch's thread count inside one process made training
an order of magnitude slower on this kind of machine.
"""

from __future__ import annotations

import os
from functools import lru_cache

import torch
from accelerate import Accelerator
from diffusers.utils import logging as diffusers_logging

from benchmark.core import progress
from benchmark.core.errors import BenchmarkError

_device_choice = "auto"
_mixed_precision = "no"
_checkpoint_every = 100


def default_threads() -> int:
    """``OMP_NUM_THREADS`` where the environment sets it (``accelerate launch``, a Slurm job, a
    parallel test worker), else every core: a process that shares the cores with others must not
    take them all, or the thread pools spin against each other."""
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "")))
    except ValueError:
        return os.cpu_count() or 1


def configure(
    device: str = "auto", threads: int | None = None, checkpoint_every: int = 100, mixed_precision: str = "no"
) -> None:
    global _device_choice, _checkpoint_every, _mixed_precision
    _checkpoint_every = checkpoint_every
    diffusers_logging.disable_progress_bar()  # the harness shows its own progress
    _device_choice, _mixed_precision = device, mixed_precision
    accelerator.cache_clear()
    progress.console.quiet = not accelerator().is_main_process
    wanted = threads or default_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def settings() -> dict:
    """What ``configure`` was given, so a job in another process can be configured the same way."""
    return {"device": _device_choice, "threads": torch.get_num_threads(), "checkpoint_every": _checkpoint_every,
            "mixed_precision": _mixed_precision}  # fmt: skip


@lru_cache(maxsize=1)
def accelerator() -> Accelerator:
    """One per process. Under ``accelerate launch`` with several processes, training is data
    parallel and every UNet query batch is split across the processes (see ``sharded_forward``)."""
    available = {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if _device_choice in available and not available[_device_choice]():
        raise BenchmarkError(f"--device {_device_choice} was asked for but is not available here; use auto or cpu")
    return Accelerator(cpu=_device_choice == "cpu", mixed_precision=_mixed_precision)


def precision_key() -> dict[str, str]:
    """Joins cache keys and cell hashes when autocast is on: half-precision numbers are not the
    float32 ones (empty by default, so float32 hashes never change)."""
    return {} if _mixed_precision == "no" else {"mixed_precision": _mixed_precision}


def is_main_process() -> bool:
    """Only the main process writes results, caches and progress; the others compute alongside."""
    return accelerator().is_main_process


def sharded_forward(
    unet: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None
) -> torch.Tensor:
    """``unet(x, t).sample`` in float32 (with ``encoder_hidden_states=condition`` for a
    text-conditioned UNet), with the batch split across processes and gathered back.

    Every process runs the same attack code with the same random draws; only the forwards are
    divided, so one process or several give the same scores up to float tolerance (the UNet has
    no batch statistics: GroupNorm and attention are per sample).
    """
    acc = accelerator()

    def forward(x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None) -> torch.Tensor:
        with acc.autocast():
            if condition is None:
                return unet(x, t).sample.float()
            return unet(x, t, encoder_hidden_states=condition).sample.float()

    if acc.num_processes == 1:
        return forward(x, t, condition)
    share = -(-len(x) // acc.num_processes)
    start = min(acc.process_index * share, len(x))
    mine = [None if v is None else v[start : start + share] for v in (x, t, condition)]
    padding = share - len(mine[0])
    if padding:  # gather needs equal shapes; padded rows are dropped below
        mine = [None if v is None else torch.cat([m, v[:1].expand(padding, *v.shape[1:])])
                for m, v in zip(mine, (x, t, condition), strict=True)]  # fmt: skip
    return acc.gather(forward(*mine))[: len(x)]


def device() -> torch.device:
    return accelerator().device


def checkpoint_every() -> int:
    """Training steps between checkpoints (0 turns them off); not part of any cache key."""
    return _checkpoint_every
