"""The latent text-to-image path: a tiny Stable-Diffusion-style pipeline built here (VAE, CLIP text
encoder from a `transformers` config, conditional UNet), fine-tuned by the harness on captioned
digits, attacked in latent space with each image's caption as condition."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from PIL import Image
from sklearn.datasets import load_digits
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from attacks.clid import idf_importance, inverse_document_frequency, pad_important_words
from benchmark.cli import main
from benchmark.core.errors import BenchmarkError
from benchmark.records.store import ResultStore
from benchmark.run.access import DiffusionModel, GrayBoxAccess, bind_captions, counter_of
from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from benchmark.run.suite import parse_suite
from conftest import plain_tiny_unet

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
STROKES = ["thin", "bold", "slanted", "upright", "small", "wide"]


def tiny_tokenizer(folder) -> CLIPTokenizer:
    """A character-level CLIP BPE vocabulary (no merges): every lowercase word tokenizes."""
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789',.")
    vocab = ["<|startoftext|>", "<|endoftext|>"] + letters + [c + "</w>" for c in letters]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=48)


def tiny_pipeline(folder) -> None:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer(folder / "vocab")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=48,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )  # fmt: skip
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(16, 32), latent_channels=4,
        layers_per_block=1, norm_num_groups=8, sample_size=16,
    )  # fmt: skip
    # an untrained VAE's latents are small; scale them to unit variance, as SD's 0.18215 does for its VAE
    digits = torch.from_numpy(load_digits().images[:64]).float().div(8).sub(1)[:, None].expand(-1, 3, -1, -1)
    with torch.no_grad():
        std = vae.encode(torch.nn.functional.interpolate(digits, size=16)).latent_dist.mean.std()
    vae.register_to_config(scaling_factor=float(1 / std))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
    )  # fmt: skip
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=DDPMScheduler(steps_offset=1, clip_sample=False),  # a complete config: no deprecation warnings
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(folder, safe_serialization=True)  # fmt: skip


def captioned_digits(folder, count: int = 96) -> None:
    """An imagefolder with a metadata.jsonl: the `text` column becomes the captions."""
    digits = load_digits()
    folder.mkdir(parents=True)
    lines = []
    for i in range(count):
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).convert("RGB").resize((16, 16)).save(folder / f"{i:04d}.png")
        caption = f"a {STROKES[i % len(STROKES)]} handwritten {NAMES[digits.target[i]]} number {i}"
        lines.append(json.dumps({"file_name": f"{i:04d}.png", "text": caption}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def text_to_image_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("t2i")
    tiny_pipeline(root / "pipeline")
    captioned_digits(root / "images")
    raw = {
        "name": "t2i",
        "version": 1,
        "datasets": [{"name": "hf", "params": {"path": str(root / "images"), "image_size": 16, "channels": 3}}],
        "split": {"members": 16, "nonmembers": 32, "calibration_members": 16, "calibration_nonmembers": 16},
        "targets": [
            {
                "name": "text_to_image",
                "params": {
                    "path": str(root / "pipeline"),
                    "finetune_steps": 400,
                    "batch_size": 16,
                    "learning_rate": 0.002,
                },
            }
        ],  # fmt: skip
        "defenses": ["none"],
        "attacks": ["nais", "loss", "pia", "secmi", "clid"],
        "knowledge": ["target-members"],  # 96 captioned images leave no room for a shadow's
        "seeds": [0],
        "scoring": {"batch_size": 64, "bootstrap": 50},
    }
    cards = run_suite(parse_suite(raw, "t2i", "test"), root / "run", Cache(root / "cache"))
    return {card.attack: card for card in cards}


def test_a_pipeline_is_attacked_as_given_without_finetuning(text_to_image_run):
    """``finetune_steps: 0``: the folder's own UNet is attacked, nothing is trained or cached."""
    source = Path(text_to_image_run["nais"].training["source"])
    root = source.parent
    raw = {
        "name": "t2i-given",
        "version": 1,
        "datasets": [{"name": "hf", "params": {"path": str(root / "images"), "image_size": 16, "channels": 3}}],
        "split": {"members": 16, "nonmembers": 32, "calibration_members": 16, "calibration_nonmembers": 16},
        "targets": [{"name": "text_to_image", "params": {"path": str(source)}}],
        "defenses": ["none"],
        "attacks": ["loss"],
        "knowledge": ["target-members"],  # a model attacked as given has no recipe to train shadows with
        "seeds": [0],
        "scoring": {"batch_size": 64, "bootstrap": 50},
    }
    cache = Cache(root / "cache-given")
    (card,) = run_suite(parse_suite(raw, "t2i-given", "test"), root / "run-given", cache)
    assert card.training["finetune_steps"] == 0
    assert card.target_hash != text_to_image_run["nais"].target_hash
    assert not (root / "cache-given" / "targets").exists()
    assert 0.2 < card.auc < 0.8  # the untrained pipeline never saw these images


def test_nais_and_clid_score_a_fine_tuned_text_to_image_model(text_to_image_run):
    cards = text_to_image_run
    assert set(cards) == {"nais", "loss", "pia", "secmi", "clid"}
    for card in cards.values():
        assert card.queries_per_sample == card.expected_passes_per_sample[0]
    assert cards["clid"].queries_per_sample == 15  # 3 timesteps × (own caption + 4 weakened)
    assert cards["nais"].queries_per_sample == 5
    utility = cards["nais"].utility
    # fine-tuning on 32 captioned images memorises them: their latent loss is lower than held-out
    assert utility["training_denoising_mse"] < utility["heldout_denoising_mse"]
    assert utility["fid"] is None  # no labels here, and DDIM FID samples unconditionally
    assert max(card.auc for card in cards.values()) > 0.75


def test_captions_condition_the_queries(text_to_image_run):
    """Own captions and the null caption give different predictions; a row count that does not
    match the bound captions is refused."""
    from targets.text_to_image import LatentPipeline

    root = next(iter(text_to_image_run.values())).training["source"]
    pipeline = LatentPipeline.load(Path(root))

    model = DiffusionModel(pipeline.unet().eval(), pipeline.scheduler, pipeline.encode_images, pipeline.encode_text,
                           (4, 8, 8))  # fmt: skip
    access = GrayBoxAccess(model, batch_size=3)
    latents = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    bind_captions(access, ["a bold handwritten seven number 1"] * 2 + ["a thin handwritten two number 2"] * 2)
    own = access.predict_noise(latents, 100)
    null = access.predict_noise(latents, 100, captions=[""] * 4)
    assert not torch.allclose(own, null)
    assert torch.allclose(own[0], access.predict_noise(latents[:1], 100, captions=access.captions[:1])[0], atol=1e-5)
    assert counter_of(access).forward_passes == 9
    with pytest.raises(BenchmarkError, match="one caption per row"):
        access.predict_noise(latents[:3], 100)


def test_clid_refuses_a_target_without_captions():
    access = GrayBoxAccess(DiffusionModel(plain_tiny_unet(), DDPMScheduler()))
    with pytest.raises(BenchmarkError, match="text-conditioned"):
        access.captions  # noqa: B018


def test_clid_pads_out_the_top_30_50_70_percent_of_words_as_appendix_d2_says():
    """The most important words become the pad token, in place; the rest stay verbatim (casing,
    punctuation); counts round half up, at least one word."""
    caption = "A Bold handwritten Seven, number 1"
    importance = [0.1, 0.3, 0.2, 0.25, 0.1, 0.05]
    padded = [pad_important_words(caption, importance, f, "<|endoftext|>") for f in (0.3, 0.5, 0.7)]
    assert padded == [
        "A <|endoftext|> handwritten <|endoftext|> number 1",  # round(1.8) = 2 words
        "A <|endoftext|> <|endoftext|> <|endoftext|> number 1",  # 3 words
        "<|endoftext|> <|endoftext|> <|endoftext|> <|endoftext|> number 1",  # round(4.2) = 4; the earlier tie
    ]
    assert pad_important_words("seven", [1.0], 0.3, "<pad>") == "<pad>"
    idf = inverse_document_frequency(["a bold handwritten seven", "a thin handwritten two", "a bold handwritten two"])
    assert list(idf_importance("a Bold seven.", idf)) == [idf["a"], idf["bold"], idf["seven"]]


def test_word_attention_shares_cover_each_caption_at_one_query_per_row(text_to_image_run):
    from targets.text_to_image import LatentPipeline

    root = next(iter(text_to_image_run.values())).training["source"]
    pipeline = LatentPipeline.load(Path(root))
    model = DiffusionModel(pipeline.unet().eval(), pipeline.scheduler, pipeline.encode_images, pipeline.encode_text,
                           (4, 8, 8), pipeline.tokenizer)  # fmt: skip
    access = GrayBoxAccess(model)
    captions = ["a bold handwritten seven number 1", "a thin two"]
    bind_captions(access, captions)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    eps, shares = access.predict_noise_with_attention(latents, 450)
    assert torch.allclose(eps, access.predict_noise(latents, 450), atol=1e-5)  # attention recording changes nothing
    assert [len(s) for s in shares] == [6, 3] and all(abs(s.sum() - 1) < 1e-6 for s in shares)
    assert counter_of(access).forward_passes == 4
    assert access.pad_token == pipeline.tokenizer.pad_token


@pytest.mark.parametrize(
    "finetune_steps, defense, refused",
    [(0, "augmentation", "attacked as given"), (10, "early_stopping", "replaces the training procedure")],
)
def test_defenses_the_target_cannot_honour_are_refused(finetune_steps, defense, refused):
    from benchmark.api.registry import DEFENSES
    from benchmark.run.targets import obtain
    from targets.text_to_image import TextToImage, TextToImageConfig

    entry = DEFENSES.get(defense)
    target = TextToImage(TextToImageConfig(path="./never-read", finetune_steps=finetune_steps))
    with pytest.raises(BenchmarkError, match=refused):
        obtain(target, torch.zeros(2, 3, 16, 16), entry.cls(entry.cls.Config()), 0, None, {}, captions=["a", "b"])


def _captioned_split(root: Path) -> tuple[Path, Path]:
    """The captioned digits as two audit folders, 24 members and 24 non-members, each with its own
    metadata.jsonl."""
    captioned_digits(root / "all", count=48)
    lines = [json.loads(line) for line in (root / "all" / "metadata.jsonl").read_text().splitlines()]
    folders = (root / "members", root / "nonmembers")
    for folder, part in zip(folders, (lines[:24], lines[24:]), strict=True):
        folder.mkdir()
        for entry in part:
            (root / "all" / entry["file_name"]).rename(folder / entry["file_name"])
        (folder / "metadata.jsonl").write_text("".join(json.dumps(entry) + "\n" for entry in part))
    return folders


def test_a_lora_fine_tune_is_audited_end_to_end_clid_included(tmp_path):
    """A LoRA adapter trained here with peft on the members of a tiny SD-style pipeline, saved by
    diffusers' save_lora_weights, audited through --model BASE --lora DIR."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    from targets.text_to_image import LatentPipeline

    tiny_pipeline(tmp_path / "base")
    members_dir, nonmembers_dir = _captioned_split(tmp_path)
    pipeline = LatentPipeline.load(tmp_path / "base")
    files = sorted(p.name for p in members_dir.glob("*.png"))
    captions = {json.loads(line)["file_name"]: json.loads(line)["text"]
                for line in (members_dir / "metadata.jsonl").read_text().splitlines()}  # fmt: skip
    pixels = torch.stack([torch.from_numpy(np.asarray(Image.open(members_dir / f), dtype=np.float32))
                          .permute(2, 0, 1) / 127.5 - 1 for f in files])  # fmt: skip
    latents = pipeline.encode_images(pixels).clone()  # out of inference mode: they feed a backward pass
    condition = pipeline.encode_text([captions[f] for f in files]).clone()
    unet = pipeline.unet().requires_grad_(False)
    unet.add_adapter(LoraConfig(r=8, lora_alpha=8, init_lora_weights="gaussian",
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))  # fmt: skip
    optimizer = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        noise = torch.randn(latents.shape, generator=generator)
        t = torch.randint(0, 1000, (len(latents),), generator=generator)
        predicted = unet(pipeline.scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=condition).sample
        loss = torch.nn.functional.mse_loss(predicted, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    StableDiffusionPipeline.save_lora_weights(
        tmp_path / "lora", unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(unet)),
        safe_serialization=True,
    )  # fmt: skip
    out = tmp_path / "audit"
    args = ["audit", "--model", str(tmp_path / "base"), "--lora", str(tmp_path / "lora"), "--members",
            str(members_dir), "--nonmembers", str(nonmembers_dir), "--attack", "clid", "--attack", "loss",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    cards = {c.attack: c for c in ResultStore(out).cards}
    assert set(cards) == {"clid", "loss"} and cards["clid"].queries_per_sample == 15
    assert cards["loss"].training["lora"] == str(tmp_path / "lora")
    assert cards["clid"].knowledge == "target-members"
    assert (out / "report.html").is_file() and len((out / "exposure.csv").read_text().splitlines()) == 1 + 18
    base = ["audit", "--model", str(tmp_path / "base"), "--members", str(members_dir), "--nonmembers",
            str(nonmembers_dir), "--attack", "loss", "--out", str(tmp_path / "base-audit"), "--quiet"]  # fmt: skip
    assert main(base) == 0
    assert ResultStore(tmp_path / "base-audit").cards[0].target_hash != cards["loss"].target_hash
