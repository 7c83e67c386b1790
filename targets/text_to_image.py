"""A latent text-to-image model (Stable Diffusion style): VAE + text encoder + conditional UNet.

Loaded from a ``StableDiffusionPipeline`` folder (``vae/``, ``text_encoder/``, ``tokenizer/``,
``unet/``, ``scheduler/``; a hub id when online) and, as in the CLiD / SimA text-to-image setting,
fine-tuned by the harness on the members with their captions (``finetune_steps`` > 0), or attacked as
given (``finetune_steps: 0``: the members must then be what the checkpoint was trained on). Attacks
see VAE latents and query the UNet with each image's caption as condition; the VAE and the text
encoder stay frozen, as in diffusers' text-to-image fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from benchmark import runtime
from benchmark.access import DiffusionModel
from benchmark.errors import BenchmarkError
from benchmark.hashing import sha256_file, sha256_json
from benchmark.interfaces import Defense, Target, TrainedTarget
from benchmark.registry import TARGETS
from benchmark.training import Recipe, TrainingJob
from targets.diffusers_folder import resolve_source

FINETUNE_VERSION = 1
ENCODE_BATCH = 64


@dataclass
class TextToImageConfig:
    """``path``: a StableDiffusionPipeline folder or hub id. ``finetune_steps`` 0 attacks it as given."""

    path: str
    finetune_steps: int = 0
    batch_size: int = 8
    learning_rate: float = 1e-4
    grad_clip: float = 1.0

    def validate(self) -> None:
        if not self.path:
            raise ValueError("'path' must name a StableDiffusionPipeline folder or a hub repository id")
        if self.finetune_steps < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError("finetune_steps must be ≥ 0, batch_size ≥ 1 and learning_rate > 0")


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
class TextToImage(Target):
    Config = TextToImageConfig

    def obtain(
        self, members: torch.Tensor, defense: Defense, seed: int, cache, key: dict,
        validation: torch.Tensor | None = None, captions: Sequence[str] | None = None,
    ) -> TrainedTarget:  # fmt: skip
        if captions is None:
            raise BenchmarkError(
                "text_to_image needs captions: use a dataset with a text or caption column (hf: caption_column)"
            )
        if self.config.finetune_steps == 0 and defense.changes_training():
            raise BenchmarkError("with finetune_steps: 0 the pipeline is attacked as given, so a defense cannot change "
                                 "it; use defenses: [none] or set finetune_steps")  # fmt: skip
        if defense.replaces_procedure():
            raise BenchmarkError(
                "this defense changes the training procedure, which the text_to_image target does not support "
                "yet; use none or augmentation"
            )
        folder = resolve_source(self.config.path)
        pipeline = LatentPipeline.load(folder)
        shape = pipeline.latent_shape(tuple(members.shape[1:]))
        weights = {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*.safetensors"))}
        report: dict = {"source": str(folder), "finetune_steps": 0}
        unet_folder = pipeline.unet_folder
        target_hash = sha256_json(weights)
        if self.config.finetune_steps:
            target_hash = sha256_json({"key": key, "seed": seed, "weights": weights, "trainer": FINETUNE_VERSION})
            built, report = cache.get_or_build(
                "targets", target_hash, lambda out, scratch: self._finetune(pipeline, members, captions, defense,
                                                                             seed, out, scratch),
            )  # fmt: skip
            unet_folder = built / "unet"
        unet = UNet2DConditionModel.from_pretrained(unet_folder, use_safetensors=True).to(runtime.device()).eval()
        model = DiffusionModel(unet, pipeline.scheduler, pipeline.encode_images, pipeline.encode_text, shape)
        return TrainedTarget(model, target_hash, report)

    def _finetune(
        self, pipeline: LatentPipeline, members: torch.Tensor, captions: Sequence[str], defense: Defense,
        seed: int, out: Path, scratch: Path,
    ) -> dict:  # fmt: skip
        """diffusers' text-to-image fine-tuning: ε-MSE on the latents, conditioned on the captions.
        Latents and caption embeddings are computed once (both encoders are frozen)."""
        latents = pipeline.encode_images(members)
        conditioning = torch.cat([pipeline.encode_text(captions[i : i + ENCODE_BATCH]).cpu()
                                  for i in range(0, len(captions), ENCODE_BATCH)])  # fmt: skip
        c = self.config
        recipe = Recipe(c.finetune_steps, c.batch_size, c.learning_rate, c.grad_clip)
        job = TrainingJob(pipeline.unet, pipeline.scheduler, latents, latents[:0], recipe, seed, scratch, conditioning)
        unet = job.new_unet()
        report = defense.train(job, unet) | {"source": str(pipeline.unet_folder.parent)}
        report["defense_costs"] = defense.costs()
        runtime.accelerator().unwrap_model(unet).to("cpu").save_pretrained(out / "unet", safe_serialization=True)
        return report
