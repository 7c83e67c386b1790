"""One card builder for the runner and ``audit``: the same cell, run by the harness and audited as a
model folder, gives cards that agree on everything that describes how it was measured."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from diffusers import DDPMPipeline
from PIL import Image

from benchmark.cli import main
from benchmark.records.store import ResultStore
from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from conftest import make_suite, tiny_suite_dict

ROOT = Path(__file__).resolve().parents[1] / "benchmark"
# what the harness and the audit share about one cell: protocol, software, device, counts, sign
SHARED = ("schema_version", "versions", "device", "processes", "threat_model", "knowledge", "attack",
          "attack_config", "queries_per_sample", "backward_passes_per_sample", "n_members", "n_nonmembers",
          "n_calibration", "orientation", "seed")  # fmt: skip


def _save_folder(images, folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        pixels = ((image[0].numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03}.png")


def test_run_and_audit_build_the_same_card_for_the_same_cell(tiny_world, cache_dir, tmp_path):
    """The tiny target's ``loss`` cell under knowledge ``none``, from the runner and from ``audit``
    of the same weights on the same images (saved as PNG)."""
    suite = make_suite(tiny_suite_dict(attacks=["loss"], knowledge=["none"]))
    (run_card,) = run_suite(suite, tmp_path / "run", Cache(cache_dir, log=lambda _: None))
    DDPMPipeline(unet=tiny_world.model.unet, scheduler=tiny_world.model.scheduler).save_pretrained(tmp_path / "model")
    _save_folder(tiny_world.images[tiny_world.labels == 1], tmp_path / "members")
    _save_folder(tiny_world.images[tiny_world.labels == 0], tmp_path / "nonmembers")
    code = main(["audit", "--model", str(tmp_path / "model"), "--members", str(tmp_path / "members"),
                 "--nonmembers", str(tmp_path / "nonmembers"), "--attack", "loss", "--calibration-fraction", "0",
                 "--out", str(tmp_path / "audit"), "--quiet"])  # fmt: skip
    assert code == 0
    (audit_card,) = ResultStore(tmp_path / "audit").cards
    audited, ran = audit_card.to_dict(), run_card.to_dict()
    assert {f: audited[f] for f in SHARED} == {f: ran[f] for f in SHARED}
    # the noise each draws differs (the audit's images come in folder order), the target is the same
    assert audit_card.auc > 0.75 and run_card.auc > 0.75
    assert (run_card.provenance, audit_card.provenance) == ("reproduced", "audit")


def test_cards_are_built_in_one_place():
    """``Card(...)`` is constructed by the builder only; the rest of the harness parses stored ones."""
    constructed = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Card":
                constructed.append(str(path.relative_to(ROOT)))
    assert constructed == ["records/builder.py"]
