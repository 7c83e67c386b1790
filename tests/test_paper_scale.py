"""The paper-scale paths on data the tests build: `datasets` folders, SecMI split files, hub errors."""

from __future__ import annotations

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from diffusers.training_utils import EMAModel
from PIL import Image

from benchmark.api import resolve_source
from benchmark.api.registry import TARGETS
from benchmark.core.configs import build_config, config_dict
from benchmark.core.errors import BenchmarkError
from benchmark.datasets.hf import HFDataset, HFDatasetConfig
from benchmark.run.cache import Cache
from benchmark.run.splits import SplitSizes, make_split
from benchmark.run.targets import obtain
from conftest import make_suite, plain_tiny_unet, tiny_suite_dict
from defenses.augmentation import Augmentation, AugmentationConfig
from defenses.none import NoDefense, NoDefenseConfig


def _pictures(count: int = 12, size: int = 20) -> tuple[list[Image.Image], list[int]]:
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]
    return pictures, [i % 3 for i in range(count)]


def _load(path, **params) -> HFDataset:
    return HFDataset(build_config(HFDatasetConfig, "test", {"path": str(path), **params}))


def test_imagefolder_with_class_subfolders(tmp_path):
    pictures, labels = _pictures()
    for index, (picture, label) in enumerate(zip(pictures, labels, strict=True)):
        (tmp_path / f"class{label}").mkdir(exist_ok=True)
        picture.save(tmp_path / f"class{label}" / f"{index:03d}.png")
    dataset = _load(tmp_path, image_size=8, channels=1)
    images = dataset.load()
    assert images.shape == (12, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert sorted(np.bincount(dataset.labels()).tolist()) == [4, 4, 4]


@pytest.mark.parametrize("layout", ["save_to_disk", "dataset_dict", "parquet"])
def test_save_to_disk_and_parquet_folders_keep_pixels_and_labels(tmp_path, layout):
    pictures, labels = _pictures()
    data = datasets.Dataset.from_dict({"img": pictures, "label": labels}).cast_column("img", datasets.Image())
    folder = tmp_path / layout
    if layout == "save_to_disk":
        data.save_to_disk(str(folder))
    elif layout == "dataset_dict":
        datasets.DatasetDict({"train": data, "test": data.select(range(3))}).save_to_disk(str(folder))
    else:
        folder.mkdir()
        data.to_parquet(str(folder / "train-00000.parquet"))
    dataset = _load(folder, image_size=20, channels=3)
    images = dataset.load()
    expected = torch.from_numpy(np.array(pictures[5])).permute(2, 0, 1).float() / 127.5 - 1
    assert images.shape == (12, 3, 20, 20)
    assert torch.allclose(images[5], expected)
    assert dataset.labels().tolist() == labels


def test_unknown_split_and_missing_folder_are_one_line_errors(tmp_path):
    pictures, labels = _pictures(4)
    data = datasets.Dataset.from_dict({"img": pictures, "label": labels}).cast_column("img", datasets.Image())
    datasets.DatasetDict({"train": data}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(BenchmarkError, match="has splits train, not 'validation'"):
        _load(tmp_path / "dd", split="validation").load()
    with pytest.raises(BenchmarkError, match="does not exist"):
        _load(tmp_path / "nowhere").load()


def test_hub_names_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchmarkError, match="cannot open dataset 'surely-not-cached/cifar10-copy'.*save_to_disk"):
        _load("surely-not-cached/cifar10-copy").load()


def _secmi_file(path, train, held_out):
    np.savez(path, mia_train_idxs=np.asarray(train), mia_eval_idxs=np.asarray(held_out))
    return str(path)


def test_secmi_split_file_sets_members_training_and_nonmembers(tmp_path):
    images = torch.randn(100, 1, 4, 4)
    train, held_out = np.arange(0, 100, 2), np.arange(1, 60, 2)
    sizes = SplitSizes(members=20, nonmembers=20, calibration_members=5, calibration_nonmembers=5,
                       indices_file=_secmi_file(tmp_path / "split.npz", train, held_out))  # fmt: skip
    split = make_split(images, sizes, seed=0)
    assert set(split.training) == set(train)  # the file's target saw every mia_train_idxs image
    assert set(split.members) | set(split.calibration_members) <= set(train)
    assert set(split.nonmembers) | set(split.calibration_nonmembers) <= set(held_out)
    assert len(split.members) == 20 and len(split.nonmembers) == 20
    assert not set(split.members) & set(split.calibration_members)
    assert split.sha256 != make_split(images, sizes, seed=1).sha256


def test_bad_split_files_are_refused(tmp_path):
    images = torch.randn(50, 1, 4, 4)
    overlapping = _secmi_file(tmp_path / "overlap.npz", [1, 2, 3], [3, 4])
    with pytest.raises(BenchmarkError, match="overlap"):
        make_split(images, SplitSizes(members=2, nonmembers=2, calibration_members=0, calibration_nonmembers=0,
                                      indices_file=overlapping), 0)  # fmt: skip
    too_small = _secmi_file(tmp_path / "small.npz", [1, 2, 3], [4, 5])
    with pytest.raises(BenchmarkError, match="asks for 4 held-out images"):
        make_split(images, SplitSizes(members=2, nonmembers=4, calibration_members=0, calibration_nonmembers=0,
                                      indices_file=too_small), 0)  # fmt: skip
    out_of_range = _secmi_file(tmp_path / "range.npz", [1, 99], [4, 5])
    with pytest.raises(BenchmarkError, match="below 50"):
        make_split(images, SplitSizes(members=2, nonmembers=2, calibration_members=0, calibration_nonmembers=0,
                                      indices_file=out_of_range), 0)  # fmt: skip
    np.savez(tmp_path / "keys.npz", train=np.arange(3))
    with pytest.raises(BenchmarkError, match="mia_train_idxs"):
        make_split(images, SplitSizes(indices_file=str(tmp_path / "keys.npz")), 0)


def test_fields_added_later_keep_published_hashes():
    """A split without an indices file hashes exactly as before the field existed."""
    suite = make_suite(tiny_suite_dict())
    assert "indices_file" not in config_dict(suite.split)
    with_file = make_suite(tiny_suite_dict(split={**tiny_suite_dict()["split"], "indices_file": "x.npz"}))
    assert config_dict(with_file.split)["indices_file"] == "x.npz"


DIGITS_8 = torch.zeros(4, 1, 8, 8)


def _pipeline_folder(root, with_ema: bool):
    """A pipeline written by plain diffusers code, optionally with EMA weights in unet_ema/."""

    unet = plain_tiny_unet(seed=0)
    DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(root)
    if with_ema:
        averaged = plain_tiny_unet(seed=1)
        EMAModel(averaged.parameters(), model_cls=type(averaged), model_config=averaged.config).save_pretrained(
            root / "unet_ema"
        )
        return unet, averaged
    return unet, None


def _obtain(path, **params):

    entry = TARGETS.get("diffusers_folder")
    target = entry.cls(build_config(entry.cls.Config, "test", {"path": str(path), **params}))
    return obtain(target, DIGITS_8[:4], NoDefense(NoDefenseConfig()), 0, Cache(path.parent / "cache"), {})


def test_pretrained_folder_uses_ema_weights_when_present(tmp_path):
    raw, averaged = _pipeline_folder(tmp_path / "model", with_ema=True)
    loaded = _obtain(tmp_path / "model").model.unet
    first = next(iter(averaged.state_dict()))
    assert torch.equal(loaded.state_dict()[first], averaged.state_dict()[first])
    assert not torch.equal(loaded.state_dict()[first], raw.state_dict()[first])
    plain = _obtain(tmp_path / "model", ema="no").model.unet
    assert torch.equal(plain.state_dict()[first], raw.state_dict()[first])


def test_pretrained_folder_without_ema_and_refusals(tmp_path):
    raw, _ = _pipeline_folder(tmp_path / "model", with_ema=False)
    first = next(iter(raw.state_dict()))
    assert torch.equal(_obtain(tmp_path / "model").model.unet.state_dict()[first], raw.state_dict()[first])
    with pytest.raises(BenchmarkError, match="no unet_ema"):
        _obtain(tmp_path / "model", ema="yes")

    entry = TARGETS.get("diffusers_folder")
    target = entry.cls(build_config(entry.cls.Config, "test", {"path": str(tmp_path / "model")}))
    with pytest.raises(BenchmarkError, match="cannot change it"):
        obtain(target, DIGITS_8, Augmentation(AugmentationConfig()), 0, None, {})


def test_hub_model_ids_fail_clearly_offline(monkeypatch):

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BenchmarkError, match="cannot fetch model 'surely-not-cached/ddpm-copy' from the hub"):
        resolve_source("surely-not-cached/ddpm-copy")


def test_the_throughput_check_runs_through_the_harness(capsys):
    """`python -m benchmark throughput` (the GPU check) on a tiny UNet: training and every timed
    attack report a rate, and the counted queries are the attacks' own."""
    from benchmark.cli import main
    from benchmark.core import runtime

    try:
        assert main(["--device", "cpu", "throughput", "--tiny"]) == 0
    finally:
        runtime.configure("cpu")  # the session's settings (checkpoints on), which main replaced
    out = capsys.readouterr().out
    assert "training:" in out and "bare forward" in out
    for name, queries in (("nais", 5), ("loss", 1), ("pia", 2), ("secmi", 11)):
        assert f"{name}: " in out and f"{queries} queries each" in out
