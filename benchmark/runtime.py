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

_device_choice = "auto"
_checkpoint_every = 100


def configure(device: str = "auto", threads: int | None = None, checkpoint_every: int = 100) -> None:
    global _device_choice, _checkpoint_every
    _checkpoint_every = checkpoint_every
    diffusers_logging.disable_progress_bar()  # the harness shows its own progress
    _device_choice = device
    accelerator.cache_clear()
    wanted = threads or os.cpu_count() or 1
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


@lru_cache(maxsize=1)
def accelerator() -> Accelerator:
    return Accelerator(cpu=_device_choice == "cpu")


def device() -> torch.device:
    return accelerator().device


def checkpoint_every() -> int:
    """Training steps between checkpoints (0 turns them off); not part of any cache key."""
    return _checkpoint_every
