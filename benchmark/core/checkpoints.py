"""Training checkpoints that survive SIGKILL: tensors in safetensors, no pickle on load, atomic swap.

A checkpoint is a folder; a new one is written beside the old and swapped in by renames, so a kill
at any instant leaves either the previous checkpoint or the new one, never half of each.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

TENSORS, OPTIMIZER, META = "tensors.safetensors", "optimizer.pt", "meta.json"


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], optimizer_state: dict, meta: dict) -> None:
    folder = Path(folder)
    fresh, stale = folder.with_name(folder.name + ".new"), folder.with_name(folder.name + ".old")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, fresh / TENSORS)
    torch.save(optimizer_state, fresh / OPTIMIZER)
    (fresh / META).write_text(json.dumps(meta))
    for file in fresh.iterdir():
        with open(file, "rb") as handle:
            os.fsync(handle.fileno())
    shutil.rmtree(stale, ignore_errors=True)
    if folder.exists():
        os.replace(folder, stale)
    os.replace(fresh, folder)
    shutil.rmtree(stale, ignore_errors=True)


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict, dict[str, Any]] | None:
    """The last complete checkpoint, or None. A kill between the two renames leaves only ``.old``."""
    folder = Path(folder)
    for candidate in (folder, folder.with_name(folder.name + ".old")):
        try:
            tensors = load_file(candidate / TENSORS)
            optimizer_state = torch.load(candidate / OPTIMIZER, weights_only=True)
            meta = json.loads((candidate / META).read_text())
        except (OSError, ValueError, RuntimeError):
            continue
        return tensors, optimizer_state, meta
    return None
