"""Image folders for ``audit``: PNG/JPEG of any size, converted to the model's channels and resolution."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmark.core.errors import BenchmarkError, first_line

SUFFIXES = {".png", ".jpg", ".jpeg"}
# An owner's image is a photo or a render, not a poster: anything larger is refused before it is
# decoded (a few hundred bytes of PNG can claim 20000×20000 pixels and decode to gigabytes)
MAX_SIDE = 16_384
MAX_PIXELS = 40_000_000


def read_image(file: Path, mode: str, size: tuple[int, int]) -> Image.Image:
    """``file`` decoded, converted to ``mode`` and resized to ``size`` (width, height); any way the
    file can fail (not an image, truncated, a decompression bomb, absurd dimensions, a mode Pillow
    cannot convert) is one ``BenchmarkError`` naming the file and, where one applies, the limit."""
    fix = "remove it or replace it"
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its two bomb limits; here a warning is a refusal too
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_PIXELS):
                    raise BenchmarkError(
                        f"image {file} is {width}×{height} pixels, beyond the limit of {MAX_SIDE} per side and "
                        f"{MAX_PIXELS:,} in all (a decompression bomb, or not an image to audit); {fix}"
                    )
                return image.convert(mode).resize(size, Image.BICUBIC)
    except BenchmarkError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BenchmarkError(f"image {file} is a decompression bomb ({error}); audited images are limited to "
                             f"{MAX_SIDE} per side and {MAX_PIXELS:,} pixels in all; {fix}") from None  # fmt: skip
    except Exception as error:  # the decoder's boundary: a crafted file may raise anything
        reason = first_line(error)
        raise BenchmarkError(f"cannot read image {file}: {reason}; {fix}") from None


def load_image_folder(folder: Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise BenchmarkError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if len(files) < 2:
        raise BenchmarkError(f"{folder} holds {len(files)} PNG/JPEG images; an audit needs at least 2 per folder")
    channels, height, width = shape
    if channels not in (1, 3):
        raise BenchmarkError(f"the model takes {channels} channels; audit handles 1 (grey) or 3 (RGB) images")
    tensors = []
    for file in files:
        converted = read_image(file, "L" if channels == 1 else "RGB", (width, height))
        array = np.asarray(converted, dtype=np.float32).reshape(height, width, channels) / 127.5 - 1.0
        tensors.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(tensors).contiguous(), [f.name for f in files]


def load_captions(folder: Path, files: list[str], column: str = "text") -> list[str]:
    """Each image's caption from the folder's ``metadata.jsonl`` (the imagefolder convention: one JSON
    object per line with ``file_name`` and the caption ``column``)."""
    metadata = Path(folder) / "metadata.jsonl"
    if not metadata.is_file():
        example = f'{{"file_name": "0001.png", "{column}": "a photo of ..."}}'
        raise BenchmarkError(f"{folder} has no metadata.jsonl; a text-to-image audit needs each image's caption "
                             f"there (one line per image like {example})")  # fmt: skip
    captions = {}
    for number, line in enumerate(metadata.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            captions[str(entry["file_name"])] = str(entry[column])
        except (ValueError, KeyError, TypeError):
            raise BenchmarkError(f"{metadata}:{number}: needs a JSON object with 'file_name' and '{column}' "
                                 "(set --caption-column for another name)") from None  # fmt: skip
    missing = [name for name in files if name not in captions]
    if missing:
        raise BenchmarkError(f"{metadata} has no caption for {missing[0]} ({len(missing)} images lack one)")
    return [captions[name] for name in files]
