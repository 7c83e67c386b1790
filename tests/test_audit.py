"""``audit`` on model folders written by plain diffusers code, with image folders of another size."""

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
from PIL import Image
from sklearn.datasets import load_digits

from benchmark.cli import main
from benchmark.core.errors import GATE_EXIT_CODE
from benchmark.records.store import ResultStore
from conftest import plain_tiny_unet


def _digits(n_members: int, n_nonmembers: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(load_digits().images[: n_members + n_nonmembers]).float().unsqueeze(1) / 8 - 1
    return images[:n_members], images[n_members:]


def _trained_plainly(images: torch.Tensor, steps: int, seed: int = 0) -> tuple[UNet2DModel, DDPMScheduler]:
    """A tiny UNet fit to ``images`` by a bare diffusers loop (not the harness)."""
    unet, scheduler = plain_tiny_unet(seed), DDPMScheduler(num_train_timesteps=1000)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    for _ in range(steps):
        noise = torch.randn_like(images)
        t = torch.randint(0, 1000, (len(images),))
        loss = F.mse_loss(unet(scheduler.add_noise(images, noise, t), t).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return unet, scheduler


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory):
    """A UNet trained by a bare diffusers loop (not the harness) on 24 digits, saved two ways."""
    root = tmp_path_factory.mktemp("plain")
    members, nonmembers = _digits(24, 24)
    unet, scheduler = _trained_plainly(members, steps=300)
    DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(root / "pipeline")
    unet.save_pretrained(root / "bare" / "unet")
    scheduler.save_pretrained(root / "bare" / "scheduler")
    for name, images in (("members", members), ("nonmembers", nonmembers)):
        (root / name).mkdir()
        for i, image in enumerate(images):
            pixels = ((image[0].numpy() + 1) * 127.5).round().astype(np.uint8)
            # saved larger and in RGB: the audit converts to the model's 1 channel and 8×8
            Image.fromarray(pixels).resize((20, 20), Image.NEAREST).convert("RGB").save(root / name / f"{i:03}.png")
    return root


@pytest.mark.parametrize("layout", ["pipeline", "bare/unet"])
def test_audit_on_a_plain_diffusers_folder(plain_model, tmp_path, layout):
    out = tmp_path / "audit"
    code = main(
        [
            "audit",
            "--model",
            str(plain_model / layout),
            "--members",
            str(plain_model / "members"),
            "--nonmembers",
            str(plain_model / "nonmembers"),
            "--attack",
            "loss",
            "--attack",
            "pia",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    cards = ResultStore(out).cards
    assert [c.attack for c in cards] == ["loss", "pia"]
    assert all(c.n_members == 18 and c.n_nonmembers == 18 and c.n_calibration == 12 for c in cards)
    assert cards[1].queries_per_sample == 2
    assert max(c.auc for c in cards) > 0.6
    assert (out / "LEADERBOARD.md").exists()


def test_audit_defaults_to_every_gray_box_attack(plain_model, tmp_path):
    out = tmp_path / "audit"
    assert (
        main(
            [
                "audit",
                "--model",
                str(plain_model / "pipeline"),
                "--members",
                str(plain_model / "members"),
                "--nonmembers",
                str(plain_model / "nonmembers"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    attacks = {json.loads(line)["attack"] for line in (out / "results.jsonl").read_text().splitlines()}
    assert {"nais", "nais_cal", "loss", "pia"} <= attacks


def _audit_folder(plain_model, folder, out):
    return main(
        ["audit", "--model", str(folder), "--members", str(plain_model / "members"),
         "--nonmembers", str(plain_model / "nonmembers"), "--out", str(out)]
    )  # fmt: skip


def test_audit_refuses_pickle_only_checkpoints(plain_model, tmp_path, capsys):
    folder = tmp_path / "pickled"
    UNet2DModel.from_pretrained(plain_model / "bare" / "unet").save_pretrained(folder, safe_serialization=False)
    DDPMScheduler.from_pretrained(plain_model / "bare" / "scheduler").save_pretrained(folder)
    assert _audit_folder(plain_model, folder, tmp_path / "o") == 2
    assert "pickled checkpoints" in capsys.readouterr().err


def test_audit_needs_a_scheduler(plain_model, tmp_path, capsys):
    folder = tmp_path / "lonely"
    UNet2DModel.from_pretrained(plain_model / "bare" / "unet").save_pretrained(folder)
    assert _audit_folder(plain_model, folder, tmp_path / "o") == 2
    assert "no scheduler_config.json" in capsys.readouterr().err


def test_release_gate_trips_on_the_overfit_model_and_holds_on_a_null_split(plain_model, tmp_path, capsys):
    base = ["audit", "--model", str(plain_model / "pipeline"), "--attack", "sima", "--fail-if", "auc>0.8"]
    leaking = base + ["--members", str(plain_model / "members"), "--nonmembers", str(plain_model / "nonmembers"),
                      "--out", str(tmp_path / "leaking")]  # fmt: skip
    assert main(leaking) == GATE_EXIT_CODE
    assert "release gate tripped: auc = " in capsys.readouterr().err
    unseen = _digits(128, 0)[0][48:]  # 80 images the model never saw, as both "members" and non-members
    for name, images in (("a", unseen[:40]), ("b", unseen[40:])):
        (tmp_path / name).mkdir()
        for i, image in enumerate(images):
            pixels = ((image[0].numpy() + 1) * 127.5).round().astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{i:03}.png")
    null = base + ["--members", str(tmp_path / "a"), "--nonmembers", str(tmp_path / "b"), "--out", str(tmp_path / "n")]
    assert main(null) == 0
    assert main(base[:-2] + ["--fail-if", "auc=0.5", "--members", "x", "--nonmembers", "y"]) == 2


class _Report(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images, self.text = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("link", "iframe") or (tag == "script" and "src" in attrs):
            raise AssertionError(f"external asset <{tag}>")
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_audit_report_embeds_everything_states_the_verdict_and_scores_every_member(plain_model, tmp_path):
    out = tmp_path / "audit"
    args = ["audit", "--model", str(plain_model / "pipeline"), "--members", str(plain_model / "members"),
            "--nonmembers", str(plain_model / "nonmembers"), "--attack", "sima", "--attack", "loss",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    parser = _Report()
    parser.feed((out / "report.html").read_text())
    assert len(parser.images) == 2 and all(src.startswith("data:image/png;base64,") for src in parser.images)
    text = " ".join(parser.text)
    assert "An attacker holding labelled images of this model's training set with" in text
    assert "of the training images at 1% false alarms" in text and "strongest attack" in text
    exposure = pd.read_csv(out / "exposure.csv")
    assert len(exposure) == ResultStore(out).cards[0].n_members == 18
    for column in ("p_value", "sima_p", "loss_p"):
        assert ((exposure[column] > 0) & (exposure[column] <= 1)).all()
    assert (out / "report.md").read_text().startswith("# Membership audit")


def test_duplicates_across_the_folders_are_flagged_among_the_most_exposed(tmp_path):
    """Two non-member images copied into the member folder (so the model trains on them too) are
    exposed like every member, and the report says why: their twin sits among the non-members."""
    members, nonmembers = _digits(24, 24)
    planted = torch.cat([members, nonmembers[:2]])
    unet, scheduler = _trained_plainly(planted, steps=400, seed=1)
    DDPMPipeline(unet=unet.eval(), scheduler=scheduler).save_pretrained(tmp_path / "model")
    for name, images, prefix in (("members", planted, "m"), ("nonmembers", nonmembers, "n")):
        (tmp_path / name).mkdir()
        for i, image in enumerate(images):
            stem = f"planted{i - 24}" if name == "members" and i >= 24 else f"{prefix}{i:03}"
            pixels = ((image[0].numpy() + 1) * 127.5).round().astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / name / f"{stem}.png")
    args = ["audit", "--model", str(tmp_path / "model"), "--members", str(tmp_path / "members"), "--nonmembers",
            str(tmp_path / "nonmembers"), "--attack", "sima", "--calibration-fraction", "0.2", "--quiet",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert main(args) == 0
    exposure = pd.read_csv(tmp_path / "out" / "exposure.csv")
    flagged = set(exposure.loc[exposure["near_duplicate"], "file"])
    evaluated_planted = {f for f in exposure["file"] if f.startswith("planted")}
    assert flagged == evaluated_planted and evaluated_planted  # exactly the planted copies, nothing else
    # as exposed as a member can be: p is the smallest any row has (their twins left the reference set)
    assert (exposure.loc[exposure["file"].isin(evaluated_planted), "p_value"] == exposure["p_value"].min()).all()
