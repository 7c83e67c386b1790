"""Any image dataset the `datasets` library opens: a hub name (CIFAR-10/100, Tiny-ImageNet) when
online, or a local folder: written by ``save_to_disk``, a folder of parquet files, or a folder of
images (``imagefolder``, labels from sub-folder names).

Images are converted to the configured channels and size and scaled to [-1, 1]; the content
fingerprint that goes into every split sha256 is computed from the converted tensor, so a changed
file changes every hash downstream.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import datasets
import numpy as np
import torch
from PIL import Image

from benchmark.api import DATASETS, BenchmarkError, Dataset, added_later

LABEL_COLUMNS = ("label", "labels", "fine_label")
CAPTION_COLUMNS = ("text", "caption", "captions")


@dataclass
class HFDatasetConfig:
    """``path``: a hub name such as ``cifar10`` or ``zh-plus/tiny-imagenet`` (needs the network),
    or a local folder. Empty column names mean: the first image column, the first of
    label / labels / fine_label present, and the first of text / caption / captions present (an
    ``imagefolder`` gives captions from a metadata.jsonl beside the images). ``limit`` 0 keeps
    every image."""

    path: str
    split: str = "train"
    image_column: str = ""
    label_column: str = ""
    image_size: int = 32
    channels: Literal[1, 3] = 3
    limit: int = 0
    caption_column: str = added_later("")

    def validate(self) -> None:
        if not self.path:
            raise ValueError("set params.path to a hub dataset name or a local dataset folder")
        if not 8 <= self.image_size <= 1024:
            raise ValueError(f"image_size {self.image_size} must be between 8 and 1024")
        if self.limit < 0:
            raise ValueError("limit must be ≥ 0 (0 keeps every image)")


def open_dataset(path: str, split: str) -> datasets.Dataset:
    """The one `datasets` call that fits what ``path`` is."""
    folder = Path(path).expanduser()
    try:
        if folder.is_dir():
            if (folder / "dataset_dict.json").exists() or (folder / "state.json").exists():
                loaded = datasets.load_from_disk(str(folder))
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise BenchmarkError(
                            f"{folder} has splits {', '.join(loaded)}, not '{split}'; set params.split"
                        )
                    return loaded[split]
                return loaded
            builder = "parquet" if any(folder.rglob("*.parquet")) else "imagefolder"
            return datasets.load_dataset(builder, data_dir=str(folder), split=split)
        if path.startswith((".", "/", "~")):
            raise BenchmarkError(f"dataset folder {path} does not exist; pass an existing folder or a hub name")
        return datasets.load_dataset(path, split=split)
    except BenchmarkError:
        raise
    except Exception as error:  # the library raises many types (offline, missing split, bad files)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BenchmarkError(
            f"cannot open dataset '{path}' (split '{split}'): {reason}; offline, download it once elsewhere "
            "and pass the folder written by `save_to_disk`"
        ) from None


def _column(data: datasets.Dataset, wanted: str, kind: str) -> str | None:
    """The column named ``wanted``, else the first of its ``kind`` (image, label, caption) present."""
    if wanted:
        if wanted not in data.column_names:
            raise BenchmarkError(f"the dataset has no column '{wanted}'; columns: {', '.join(data.column_names)}")
        return wanted
    if kind == "image":
        found = [name for name, feature in data.features.items() if isinstance(feature, datasets.Image)]
        if not found:
            raise BenchmarkError(f"the dataset has no image column; columns: {', '.join(data.column_names)}")
        return found[0]
    candidates = LABEL_COLUMNS if kind == "label" else CAPTION_COLUMNS
    return next((name for name in candidates if name in data.column_names), None)


def to_tensor(picture: Image.Image, size: int, channels: int) -> np.ndarray:
    """CHW uint8 at ``size``×``size``, grey or RGB."""
    picture = picture.convert("L" if channels == 1 else "RGB")
    if picture.size != (size, size):
        picture = picture.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(picture, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


@DATASETS.register("hf", "any `datasets` image dataset: hub name (online) or a local save_to_disk/imagefolder/parquet")
class HFDataset(Dataset[HFDatasetConfig]):
    @functools.cached_property
    def _data(self) -> datasets.Dataset:
        """Opened once per instance: ``load`` and ``labels`` read the same table."""
        data = open_dataset(self.config.path, self.config.split)
        return data.select(range(min(self.config.limit, len(data)))) if self.config.limit else data

    def load(self) -> torch.Tensor:
        data = self._data
        column = _column(data, self.config.image_column, "image")
        size, channels = self.config.image_size, self.config.channels
        pixels = np.stack([to_tensor(picture, size, channels) for picture in data[column]])
        return torch.from_numpy(pixels).float().div(127.5).sub(1.0).contiguous()

    def labels(self) -> np.ndarray | None:
        data = self._data
        column = _column(data, self.config.label_column, "label")
        return None if column is None else np.asarray(data[column], dtype=np.int64)

    def captions(self) -> list[str] | None:
        column = _column(self._data, self.config.caption_column, "caption")
        return None if column is None else [str(text) for text in self._data[column]]
