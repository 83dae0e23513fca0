"""Reading images into float arrays and writing PNGs, atomically.

Pillow reads PNG, JPEG, TIFF, BMP and WebP; 16-bit PNGs go through pypng because
Pillow truncates 16-bit RGB to 8 bits.

Pixel limit: an image of more than `max_pixels()` pixels (width x height; 100 million by
default) is refused in one line before it is decoded, which also stops decompression
bombs. Raise or lower it with the environment variable SREXPORT_MAX_PIXELS or
`set_max_pixels(n)`.
"""

from __future__ import annotations

import os
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from srexport.errors import ImageError
from srexport.fsutil import atomic_path

READABLE = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I")
_EXIF_ORIENTATION = 0x0112
DEFAULT_MAX_PIXELS = 100_000_000
# zlib level and strategy of the PNGs written (lossless whatever they are). Level 1 with
# run-length matching encodes the 14 CSet14 outputs of PCARN-M x4 in 0.165 s, 3987 kB;
# level 1 with the default strategy 0.181 s, 4404 kB; Pillow's default level 6 0.738 s,
# 3884 kB (Intel Xeon, AMX; one thread). pypng (16-bit) takes the level only.
PNG_COMPRESS_LEVEL = 1
PNG_ZLIB_STRATEGY = zlib.Z_RLE
PIXEL_LIMIT_ENV = "SREXPORT_MAX_PIXELS"
_max_pixels: int | None = None


def set_max_pixels(limit: int | None) -> None:
    """Largest width x height read_image accepts (None: the environment or the default)."""
    global _max_pixels
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ImageError(f"the pixel limit must be a positive integer, got {limit!r}")
    _max_pixels = limit


def max_pixels() -> int:
    if _max_pixels is not None:
        return _max_pixels
    text = os.environ.get(PIXEL_LIMIT_ENV)
    if text is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ImageError(f"{PIXEL_LIMIT_ENV} must be a positive integer, got '{text}'")
    return value


def _check_pixels(path: Path, width: int, height: int) -> None:
    limit = max_pixels()
    if width * height > limit:
        raise ImageError(f"{path}: {width}x{height} is {width * height:,} pixels, more than the limit of "
                         f"{limit:,} (set {PIXEL_LIMIT_ENV} to allow larger images)")


@dataclass
class LoadedImage:
    """Colour (or gray) pixels as float32 HxWxC in [0, 1] with C = 3 (or 1), an
    optional alpha plane, and the bit depth to write back."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    bits: int
    gray: bool


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as handle:
        head = handle.read(33)
    if len(head) < 33 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    _check_pixels(path, int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big"))
    return head[24]


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW[xC] array."""
    ops = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, -1),
        7: lambda a: np.rot90(a, 1)[::-1], 8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def _refuse_frames(path: Path, img: Image.Image) -> None:
    """An animated image (APNG, WebP, GIF) or a multi-page TIFF holds more than the one
    picture a run writes back: refused rather than upscaling its first frame alone."""
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        raise ImageError(f"{path}: {frames} frames (an animated or multi-page image); sr-export upscales one "
                         "picture per file: save the frame you want on its own, or convert the animation to a video "
                         "file (.mkv, .mp4) and pass that")


def _read_png16(path: Path) -> LoadedImage:
    import png

    with Image.open(path) as img:  # before decoding: an animation is refused unread
        _refuse_frames(path, img)
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    planes = info["planes"]
    data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows]).reshape(height, width, planes)
    data = _orient(data, orientation)
    values = data.astype(np.float32) / 65535.0
    has_alpha = info["alpha"]
    color = values[..., : planes - 1] if has_alpha else values
    alpha = values[..., -1] if has_alpha else None
    return LoadedImage(color, alpha, 16, gray=color.shape[-1] == 1)


def read_image(path: str | Path) -> LoadedImage:
    """Read an image file; one clear `ImageError` for anything unreadable."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # The size is checked against our own limit; Pillow's bomb check stays the backstop.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if _png_bit_depth(path) == 16:
                return _read_png16(path)
            with Image.open(path) as img:
                _check_pixels(path, *img.size)
                _refuse_frames(path, img)
                img = ImageOps.exif_transpose(img)
                img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{path}: refused as a decompression bomb (more pixels than Pillow allows)") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a folder, not an image") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image sr-export can read") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, ValueError, png.Error...
        raise ImageError(f"{path}: corrupt or truncated image ({exc})") from None
    return from_pil(img)


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(height, width) as `read_image` will return it, from the file's header alone (EXIF
    orientations 5-8 swap them); None where the header cannot be read (`read_image` then
    reports why)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # unreadable here is reported, in one line, by read_image
        return None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


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
        img = img.convert("LA" if mode == "LA" else "RGBA")
        alpha = np.asarray(img.getchannel("A"), np.float32) / 255.0
        img = img.convert("L" if img.mode == "LA" else "RGB")
    elif mode not in ("RGB", "L"):
        img = img.convert("L" if mode == "1" else "RGB")
    pixels = np.asarray(img, np.float32) / 255.0
    gray = img.mode == "L"
    return LoadedImage(pixels[..., None] if gray else pixels, alpha, 8, gray)


def quantize(pixels: np.ndarray, bits: int) -> np.ndarray:
    """round(clamp(y, 0, 1) * max) as uint8 or uint16."""
    peak, dtype = (255.0, np.uint8) if bits == 8 else (65535.0, np.uint16)
    scaled = np.clip(pixels, 0.0, 1.0)  # one temporary, then in place: 8K frames are large
    scaled *= peak
    np.rint(scaled, out=scaled)
    return scaled.astype(dtype)


def _interleave(pixels: np.ndarray, alpha: np.ndarray | None, bits: int) -> np.ndarray:
    channels = [quantize(pixels, bits)]
    if alpha is not None:
        channels.append(quantize(alpha, bits)[..., None])
    return np.concatenate(channels, axis=-1)


def to_pil(pixels: np.ndarray, alpha: np.ndarray | None = None) -> Image.Image:
    """Float HxWxC [0,1] (C = 1 or 3) plus optional alpha to an 8-bit PIL image."""
    data = _interleave(pixels, alpha, 8)
    return Image.fromarray(data[..., 0] if data.shape[-1] == 1 else data)


def write_png(path: str | Path, pixels: np.ndarray, alpha: np.ndarray | None = None, bits: int = 8) -> None:
    """Write an 8- or 16-bit PNG atomically."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            if bits == 16:
                import png

                data = _interleave(pixels, alpha, 16)
                height, width, planes = data.shape
                writer = png.Writer(width, height, greyscale=planes <= 2, alpha=planes in (2, 4), bitdepth=16,
                                    compression=PNG_COMPRESS_LEVEL)
                with open(tmp, "wb") as handle:
                    writer.write(handle, data.reshape(height, width * planes))
            else:
                to_pil(pixels, alpha).save(tmp, format="PNG", compress_level=PNG_COMPRESS_LEVEL,
                                             compress_type=PNG_ZLIB_STRATEGY)
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
