"""A model someone else trained: a diffusers pipeline folder, or a UNet folder with its scheduler,
local or (when online) a hub repository, which is downloaded to the hub cache and then loaded as a folder.

Only safetensors weights are loaded; a folder that holds only pickled checkpoints is refused.
EMA weights saved beside the model (``unet_ema/``, as diffusers' training scripts write them) are
used by default: they are the weights such models are published and evaluated with.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diffusers import DDPMScheduler, DiffusionPipeline, UNet2DModel

from benchmark.api import (
    TARGETS,
    BenchmarkError,
    DiffusionModel,
    Target,
    added_later,
    resolve_source,
    runtime,
    sha256_file,
)


@dataclass
class DiffusersFolderConfig:
    path: str
    ema: Literal["auto", "yes", "no"] = added_later("auto")

    def validate(self) -> None:
        if not self.path:
            raise ValueError("'path' must name a diffusers model folder or a hub repository id")


def _ema_unet(folder: Path, choice: str) -> UNet2DModel | None:
    ema_folder = folder / "unet_ema"
    if choice == "no" or not (ema_folder / "config.json").is_file():
        if choice == "yes":
            raise BenchmarkError(f"{folder} has no unet_ema/ folder; set ema: auto or no")
        return None
    return UNet2DModel.from_pretrained(ema_folder, use_safetensors=True)


def _scheduler_folder(unet_folder: Path) -> Path:
    for candidate in (unet_folder / "scheduler", unet_folder, unet_folder.parent / "scheduler"):
        if (candidate / "scheduler_config.json").is_file():
            return candidate
    raise BenchmarkError(
        f"no scheduler_config.json in {unet_folder}, its scheduler/ subfolder or ../scheduler; "
        "save the scheduler beside the UNet (scheduler.save_pretrained)"
    )


def _require_safetensors(folder: Path) -> None:
    if not any(folder.rglob("*.safetensors")):
        pickles = [p.name for p in folder.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
        found = f" (found {', '.join(sorted(pickles)[:3])})" if pickles else ""
        raise BenchmarkError(
            f"{folder} has no .safetensors weights{found}; pickled checkpoints can run code when loaded, "
            "so they are refused: re-save the model with save_pretrained(..., safe_serialization=True)"
        )


def load_diffusers_folder(folder: Path, ema: str = "auto") -> DiffusionModel:
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"model folder {folder} does not exist; pass a diffusers model folder")
    _require_safetensors(folder)
    try:
        if (folder / "model_index.json").is_file():
            pipeline = DiffusionPipeline.from_pretrained(folder, use_safetensors=True)
            unet, scheduler = pipeline.unet, pipeline.scheduler
        elif (folder / "config.json").is_file() or (folder / "unet" / "config.json").is_file():
            unet_folder = folder if (folder / "config.json").is_file() else folder / "unet"
            unet = UNet2DModel.from_pretrained(unet_folder, use_safetensors=True)
            scheduler_folder = _scheduler_folder(unet_folder)
            config = json.loads((scheduler_folder / "scheduler_config.json").read_text())
            scheduler = DDPMScheduler.from_config(config)
        else:
            raise BenchmarkError(
                f"{folder} holds neither model_index.json (a pipeline) nor config.json (a UNet2DModel)"
            )
        unet = _ema_unet(folder, ema) or unet
    except (OSError, ValueError, json.JSONDecodeError) as error:
        raise BenchmarkError(f"cannot load the model in {folder}: {str(error).splitlines()[0]}") from None
    if not isinstance(unet, UNet2DModel) or not hasattr(scheduler, "alphas_cumprod"):
        raise BenchmarkError(
            f"{folder} is a {type(unet).__name__} with a {type(scheduler).__name__}; "
            "this target needs an unconditional UNet2DModel and a DDPM-style scheduler"
        )
    return DiffusionModel(unet.to(runtime.device()).eval(), scheduler)


@TARGETS.register(
    "diffusers_folder", "a diffusers DDPM/DDIM pipeline or UNet2DModel: local folder or hub id (no training)"
)
class DiffusersFolder(Target[DiffusersFolderConfig]):
    @classmethod
    def audits(cls, folder: Path) -> bool:
        """Anything but a folder with a text encoder (a StableDiffusionPipeline is ``text_to_image``'s): a
        UNet or pipeline folder, or a hub id, which loading then resolves or refuses in one line."""
        return not (Path(folder) / "text_encoder").is_dir()

    @functools.cached_property
    def folder(self) -> Path:
        return resolve_source(self.config.path)

    def fingerprint(self) -> dict[str, str]:
        return {str(p.relative_to(self.folder)): sha256_file(p) for p in sorted(self.folder.rglob("*.safetensors"))}

    def source(self) -> dict[str, str]:
        return {"source": str(self.folder)}

    def load(self, folder: Path | None, sample_shape: tuple[int, ...]) -> DiffusionModel:
        return load_diffusers_folder(self.folder, self.config.ema)
