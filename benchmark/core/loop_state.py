"""What every training loop checkpoints, in one place: weights, optimizer, named generators, progress.

The harness's ``fit`` and DP-SGD's own loop both resume through this, so a killed run continues
from its last checkpoint and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.core import runtime
from benchmark.core.checkpoints import load_checkpoint, save_checkpoint


@dataclass
class LoopProgress:
    """Steps done, per-step losses, and seconds spent (including those before a resume)."""

    step: int = 0
    losses: list[float] = field(default_factory=list)
    seconds_before: float = 0.0
    resumed_from_step: int = 0
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def report(self, epochs: float) -> dict[str, Any]:
        """The training report every loop returns (the card's ``training`` field)."""
        tail = self.losses[-max(1, len(self.losses) // 10) :] or [float("nan")]
        return {
            "steps": self.step,
            "resumed_from_step": self.resumed_from_step,
            "train_seconds": round(self.seconds(), 3),
            "final_train_loss": sum(tail) / len(tail),
            "epochs": epochs,
        }


class LoopCheckpoint:
    """One loop's checkpoint folder. ``tensors``/``values`` carry what a loop keeps beyond the
    common state (a pending permutation, EMA weights, a monitor's state, an accountant's history)."""

    def __init__(self, folder: Path, generators: dict[str, torch.Generator]) -> None:
        self.folder = Path(folder)
        self.generators = generators
        self.every = runtime.checkpoint_every()

    def restore(
        self, module: torch.nn.Module, optimizer: torch.optim.Optimizer
    ) -> tuple[LoopProgress, dict[str, torch.Tensor], dict[str, Any]]:
        """Load the last checkpoint into ``module``, ``optimizer`` and the generators, if there is one."""
        resumed = load_checkpoint(self.folder)
        if resumed is None:
            return LoopProgress(), {}, {}
        tensors, optimizer_state, meta = resumed
        module.load_state_dict({k[len("unet.") :]: v for k, v in tensors.items() if k.startswith("unet.")})
        optimizer.load_state_dict(optimizer_state)
        for name, generator in self.generators.items():
            generator.set_state(tensors[f"generator.{name}"])
        progress = LoopProgress(meta["step"], meta["losses"], meta["seconds"], meta["step"])
        return progress, tensors, meta

    def due(self, progress: LoopProgress, total_steps: int) -> bool:
        return bool(self.every) and progress.step % self.every == 0 and progress.step < total_steps

    def save(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        progress: LoopProgress,
        tensors: dict[str, torch.Tensor] | None = None,
        values: dict[str, Any] | None = None,
    ) -> None:
        state = {f"unet.{k}": v for k, v in module.state_dict().items()}
        state |= {f"generator.{name}": g.get_state() for name, g in self.generators.items()}
        meta = {"step": progress.step, "losses": progress.losses, "seconds": progress.seconds()}
        save_checkpoint(self.folder, state | (tensors or {}), optimizer.state_dict(), meta | (values or {}))
