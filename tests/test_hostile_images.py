"""Images an audit is handed may be crafted: every way one can fail is one readable line naming the
file (a ``BenchmarkError``, exit 2 from the CLI), never a traceback, and nothing is written."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from diffusers import DDPMPipeline, DDPMScheduler
from PIL import Image

from benchmark.cli import main
from benchmark.core.errors import BenchmarkError
from benchmark.core.images import MAX_PIXELS, load_image_folder
from conftest import plain_tiny_unet

SHAPE = (1, 8, 8)


def _png(width: int, height: int, mode: str = "L", seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8).squeeze()
    Image.fromarray(pixels, mode).save(buffer, "PNG")
    return buffer.getvalue()


def _claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width``×``height`` pixels (a decompression bomb's shape)."""
    data = bytearray(_png(4, 4))
    ihdr = 8 + 8  # signature, then the IHDR chunk's length and type
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13])))
    return bytes(data)


def _in_mode(mode: str, seed: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(seed)
    size = (int(rng.integers(1, 40)), int(rng.integers(1, 40)))
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 256, 3))).convert(mode)
    buffer = io.BytesIO()
    suffix = ".jpg" if mode == "CMYK" else ".png"
    # CMYK only as JPEG, 32-bit modes only as TIFF (named .png: Pillow reads the content, not the name)
    image.save(buffer, "JPEG" if mode == "CMYK" else ("TIFF" if mode in ("F", "I") else "PNG"))
    return buffer.getvalue(), suffix


def malformed_images(count: int) -> list[tuple[str, bytes, str]]:
    """(kind, bytes, suffix): random bytes, truncations, bit flips, huge claimed sizes, odd modes."""
    rng = np.random.default_rng(0)
    good = _png(16, 16, "RGB", seed=1)
    cases = []
    for i in range(count):
        kind = ["random", "truncated", "flipped", "huge", "mode", "empty", "jpeg-truncated"][i % 7]
        if kind == "random":
            cases.append((kind, rng.bytes(int(rng.integers(1, 400))), ".png"))
        elif kind == "truncated":
            cases.append((kind, good[: int(rng.integers(1, len(good)))], ".png"))
        elif kind == "flipped":
            data = bytearray(good)
            for position in rng.integers(0, len(data), int(rng.integers(1, 12))):
                data[position] ^= int(rng.integers(1, 256))
            cases.append((kind, bytes(data), ".png"))
        elif kind == "huge":
            side = int(rng.choice([20_000, 65_535, 2**31 - 1, 0, 1]))
            cases.append((kind, _claiming(side, int(rng.choice([side, 20_000, 1, 0]))), ".png"))
        elif kind == "mode":
            mode = ["1", "L", "P", "RGB", "RGBA", "LA", "I", "I;16", "CMYK", "F"][int(rng.integers(0, 10))]
            data, suffix = _in_mode(mode, i)
            cases.append((f"mode {mode}", data, suffix))
        elif kind == "empty":
            cases.append((kind, b"", ".png"))
        else:
            buffer = io.BytesIO()
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buffer, "JPEG")
            cases.append((kind, buffer.getvalue()[: int(rng.integers(1, 400))], ".jpg"))
    return cases


def test_no_malformed_image_escapes_as_anything_but_a_named_error(tmp_path):
    outcomes = {"loaded": 0, "refused": 0}
    for number, (kind, data, suffix) in enumerate(malformed_images(210)):
        folder = tmp_path / f"case{number}"
        folder.mkdir()
        for i in range(2):
            (folder / f"good{i}.png").write_bytes(_png(8, 8, seed=i))
        (folder / f"crafted{suffix}").write_bytes(data)
        try:
            images, files = load_image_folder(folder, SHAPE)
        except BenchmarkError as error:
            assert f"crafted{suffix}" in str(error) and "\n" not in str(error), (kind, str(error))
            outcomes["refused"] += 1
            continue
        assert images.shape == (3, *SHAPE) and np.isfinite(images.numpy()).all(), kind
        assert images.min() >= -1 and images.max() <= 1, kind
        outcomes["loaded"] += 1
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 20, outcomes


def test_a_decompression_bomb_ends_the_audit_with_one_line_and_exit_2(tmp_path, capsys):
    DDPMPipeline(unet=plain_tiny_unet(), scheduler=DDPMScheduler(num_train_timesteps=1000)).save_pretrained(
        tmp_path / "model"
    )
    for name in ("members", "nonmembers"):
        (tmp_path / name).mkdir()
        for i in range(3):
            (tmp_path / name / f"{i}.png").write_bytes(_png(8, 8, seed=i))
    bomb = tmp_path / "members" / "bomb.png"
    bomb.write_bytes(_claiming(20_000, 20_000))
    out = tmp_path / "audit"
    code = main(["audit", "--model", str(tmp_path / "model"), "--members", str(tmp_path / "members"),
                 "--nonmembers", str(tmp_path / "nonmembers"), "--attack", "loss", "--out", str(out)])  # fmt: skip
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert str(bomb) in error and f"{MAX_PIXELS:,}" in error
    assert not out.exists() or not any(Path(out).iterdir())  # nothing partially written


@pytest.mark.parametrize("size", [(20_000, 20_000), (16_385, 1), (0, 5)])
def test_absurd_dimensions_are_refused_before_decoding(tmp_path, size):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.png").write_bytes(_png(8, 8, seed=i))
    (folder / "absurd.png").write_bytes(_claiming(*size))
    with pytest.raises(BenchmarkError, match="absurd.png"):
        load_image_folder(folder, SHAPE)
