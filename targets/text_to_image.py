"""A latent text-to-image model (Stable Diffusion style): VAE + text encoder + conditional UNet.

Loaded from a ``StableDiffusionPipeline`` folder (``vae/``, ``text_encoder/``, ``tokenizer/``,
``unet/``, ``scheduler/``; a hub id when online) and, as in the CLiD / SimA text-to-image setting,
fine-tuned by the harness on the members with their captions (``finetune_steps`` > 0), or attacked as
given (``finetune_steps: 0``: the members must then be what the checkpoint was trained on). Attacks
see VAE latents and query the UNet with each image's caption as condition; the VAE and the text
encoder stay frozen, as in diffusers' text-to-image fine-tuning.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from benchmark.api import (
    TARGETS,
    BenchmarkError,
    DiffusionModel,
    Recipe,
    TrainableTarget,
    TrainingPlan,
    added_later,
    resolve_source,
    runtime,
    sha256_file,
)

FINETUNE_VERSION = 1
ENCODE_BATCH = 64


@dataclass
class TextToImageConfig:
    """``path``: a StableDiffusionPipeline folder or hub id. ``finetune_steps`` 0 attacks it as given.
    ``lora``: a folder holding a LoRA adapter saved by diffusers (``save_lora_weights``), applied to
    the pipeline's UNet and fused before anything is attacked (the model most owners actually ship)."""

    path: str
    finetune_steps: int = 0
    batch_size: int = 8
    learning_rate: float = 1e-4
    grad_clip: float = 1.0
    lora: str = added_later("")

    def validate(self) -> None:
        if not self.path:
            raise ValueError("'path' must name a StableDiffusionPipeline folder or a hub repository id")
        if self.finetune_steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("finetune_steps must be ≥ 0, batch_size ≥ 1 and learning_rate > 0")
        if self.lora and self.finetune_steps:
            raise ValueError("a LoRA adapter is attacked as given; set finetune_steps: 0")


@dataclass
class LatentPipeline:
    """The frozen encoders and the scheduler of a text-to-image pipeline, and where its UNet lives."""

    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDPMScheduler
    unet_folder: Path

    @classmethod
    def load(cls, folder: Path) -> LatentPipeline:
        missing = [p for p in ("vae", "text_encoder", "tokenizer", "unet", "scheduler") if not (folder / p).is_dir()]
        if missing:
            raise BenchmarkError(
                f"{folder} is not a StableDiffusionPipeline folder (missing {', '.join(missing)}/); "
                "save one with pipeline.save_pretrained"
            )
        try:
            vae = AutoencoderKL.from_pretrained(folder / "vae", use_safetensors=True)
            text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder", use_safetensors=True)
            tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
            # the pipeline ships an inference scheduler; training and the attacks need the DDPM
            # forward process with the same betas
            scheduler = DDPMScheduler.from_pretrained(folder / "scheduler")
        except (OSError, ValueError) as error:
            raise BenchmarkError(f"cannot load the pipeline in {folder}: {str(error).splitlines()[0]}") from None
        device = runtime.device()
        return cls(vae.to(device).eval().requires_grad_(False), text_encoder.to(device).eval().requires_grad_(False),
                   tokenizer, scheduler, folder / "unet")  # fmt: skip

    def unet(self) -> UNet2DConditionModel:
        return UNet2DConditionModel.from_pretrained(self.unet_folder, use_safetensors=True)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """The text encoder's last hidden states, the UNet's cross-attention condition."""
        ids = self.tokenizer(list(captions), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids  # fmt: skip
        with torch.inference_mode():
            return self.text_encoder(ids.to(self.text_encoder.device))[0]

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents, the posterior mean (deterministic, so every attack sees the same latent)."""
        latents = []
        with torch.inference_mode():
            for start in range(0, len(images), ENCODE_BATCH):
                chunk = images[start : start + ENCODE_BATCH].to(self.vae.device)
                latents.append(self.vae.encode(chunk).latent_dist.mean.cpu())
        return torch.cat(latents) * self.vae.config.scaling_factor

    def image_shape(self) -> tuple[int, int, int]:
        """The pixel images the pipeline was built for: the UNet's latent size times the VAE's factor."""
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        size = UNet2DConditionModel.load_config(self.unet_folder)["sample_size"]
        return (self.vae.config.in_channels, size * factor, size * factor)

    def latent_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int]:
        channels, height, width = image_shape
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if channels != self.vae.config.in_channels or height % factor or width % factor:
            raise BenchmarkError(
                f"images are {channels}×{height}×{width} but the VAE takes {self.vae.config.in_channels} channels "
                f"and sides divisible by {factor}; set the dataset's channels and image_size"
            )
        return (self.vae.config.latent_channels, height // factor, width // factor)


@TARGETS.register("text_to_image", "latent text-to-image pipeline (VAE + CLIP text encoder + conditional UNet)")
class TextToImage(TrainableTarget[TextToImageConfig]):
    text_conditioned = True
    supports_procedures = False  # it trains on latents and caption embeddings, not on the members
    trainer_version = FINETUNE_VERSION

    def trains(self) -> bool:
        return self.config.finetune_steps > 0

    @classmethod
    def audits(cls, folder: Path) -> bool:
        return (folder / "text_encoder").is_dir() and (folder / "unet").is_dir()

    def image_shape(self) -> tuple[int, int, int]:
        return self.pipeline.image_shape()

    @functools.cached_property
    def folder(self) -> Path:
        return resolve_source(self.config.path)

    @functools.cached_property
    def pipeline(self) -> LatentPipeline:
        return LatentPipeline.load(self.folder)

    def fingerprint(self) -> dict[str, str]:
        files = {str(p.relative_to(self.folder)): sha256_file(p) for p in sorted(self.folder.rglob("*.safetensors"))}
        if self.config.lora:
            files |= {f"lora/{p.name}": sha256_file(p) for p in sorted(Path(self.config.lora).glob("*.safetensors"))}
        return files

    def source(self) -> dict:
        lora = {"lora": str(self.config.lora)} if self.config.lora else {}
        return {"source": str(self.folder), "finetune_steps": self.config.finetune_steps} | lora

    def training_plan(self, members: torch.Tensor, captions: Sequence[str] | None, seed: int) -> TrainingPlan:
        """diffusers' text-to-image fine-tuning: ε-MSE on the latents, conditioned on the captions.
        Latents and caption embeddings are computed once (both encoders are frozen)."""
        if captions is None:
            raise BenchmarkError(
                "text_to_image needs captions: use a dataset with a text or caption column (hf: caption_column)"
            )
        pipeline = self.pipeline
        latents = pipeline.encode_images(members)
        conditioning = torch.cat([pipeline.encode_text(captions[i : i + ENCODE_BATCH]).cpu()
                                  for i in range(0, len(captions), ENCODE_BATCH)])  # fmt: skip
        c = self.config
        recipe = Recipe(c.finetune_steps, c.batch_size, c.learning_rate, c.grad_clip)
        return TrainingPlan(pipeline.unet, pipeline.scheduler, latents, recipe, conditioning)

    def save(self, unet: torch.nn.Module, plan: TrainingPlan, folder: Path) -> None:
        unet.save_pretrained(folder / "unet", safe_serialization=True)

    def load(self, folder: Path | None, sample_shape: tuple[int, ...]) -> DiffusionModel:
        pipeline = self.pipeline
        shape = pipeline.latent_shape(tuple(sample_shape))
        unet_folder = pipeline.unet_folder if folder is None else folder / "unet"
        unet = UNet2DConditionModel.from_pretrained(unet_folder, use_safetensors=True)
        if self.config.lora:
            unet = _with_lora(unet, Path(self.config.lora))
        unet = unet.to(runtime.device()).eval()
        return DiffusionModel(unet, pipeline.scheduler, pipeline.encode_images, pipeline.encode_text, shape,
                              pipeline.tokenizer)  # fmt: skip


def _with_lora(unet: UNet2DConditionModel, folder: Path) -> UNet2DConditionModel:
    """The UNet with the adapter's low-rank updates added to its weights (diffusers' PEFT
    integration), then unloaded: what is attacked is one plain UNet, like any other."""
    if not any(folder.glob("*.safetensors")):
        raise BenchmarkError(f"--lora {folder} holds no .safetensors adapter; save one with save_lora_weights")
    try:
        unet.load_lora_adapter(folder, prefix="unet", use_safetensors=True)
    except (OSError, ValueError, KeyError) as error:
        raise BenchmarkError(f"cannot load the LoRA adapter in {folder}: {str(error).splitlines()[0]}") from None
    unet.fuse_lora()
    unet.unload_lora()
    return unet
