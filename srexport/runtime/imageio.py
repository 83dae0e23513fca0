"""Reading images into float arrays and writing PNGs, atomically."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from srexport.errors import ImageError
from srexport.fsutil import atomic_path

READABLE = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


@dataclass
class LoadedImage:
    """RGB (or gray) pixels as float32 HxWxC in [0, 1], plus how to write them back."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    bits: int
    gray: bool


def read_image(path: str | Path) -> LoadedImage:
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image sr-export can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    return from_pil(img)


def from_pil(img: Image.Image) -> LoadedImage:
    mode = img.mode
    if mode in _16BIT_MODES:
        values = np.asarray(img, dtype=np.float32)
        bits = 16 if mode != "I" or values.max(initial=0) > 255 else 8
        pixels = (values / (65535.0 if bits == 16 else 255.0))[..., None]
        return LoadedImage(np.clip(pixels, 0, 1), None, bits, gray=True)
    if mode == "F":
        return LoadedImage(np.clip(np.asarray(img, np.float32), 0, 1)[..., None], None, 16, gray=True)
    alpha = None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA" if mode != "LA" else "LA")
        alpha = np.asarray(img.getchannel("A"), np.float32) / 255.0
        img = img.convert("RGB" if img.mode == "RGBA" else "L")
    elif mode not in ("RGB", "L"):
        img = img.convert("L" if mode in ("1",) else "RGB")
    pixels = np.asarray(img, np.float32) / 255.0
    gray = img.mode == "L"
    if gray:
        pixels = pixels[..., None]
    return LoadedImage(pixels, alpha, 8, gray)


def quantize(pixels: np.ndarray, bits: int) -> np.ndarray:
    """round(clamp(y, 0, 1) * max) as uint8 or uint16."""
    peak = 255.0 if bits == 8 else 65535.0
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.rint(np.clip(pixels, 0.0, 1.0) * peak).astype(dtype)


def to_pil(pixels: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> Image.Image:
    """Float HxWxC [0,1] (C = 1 or 3) plus optional alpha to a PIL image."""
    if bits == 16:
        if pixels.shape[-1] != 1 or alpha is not None:
            raise ImageError("16-bit output is supported for grayscale images without alpha only")
        return Image.fromarray(quantize(pixels[..., 0], 16))
    channels = [quantize(pixels, 8)]
    if alpha is not None:
        channels.append(quantize(alpha, 8)[..., None])
    data = np.concatenate(channels, axis=-1)
    return Image.fromarray(data[..., 0] if data.shape[-1] == 1 else data)


def write_png(path: str | Path, pixels: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> None:
    path = Path(path)
    image = to_pil(pixels, alpha, bits)
    try:
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
