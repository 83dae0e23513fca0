"""Image-quality metrics and the accuracy measurements of reduced-precision graphs.

The metrics follow the super-resolution papers' evaluation protocol, so figures here are
comparable with published tables:

- `psnr(reference, test, peak)`: 10 log10(peak^2 / MSE) over every value;
- `rgb_to_y(rgb)`: ITU-R BT.601 luma of RGB in [0, 1], in 8-bit units,
  Y = 16 + 65.481 R + 128.553 G + 24.966 B (so Y is in [16, 235]);
- `psnr_y(sr, hr, shave)`: PSNR on Y with `shave` pixels cut from every border, peak 255.
  Both images are first clamped and rounded to 8 bits (what a saved PNG holds).

Low-resolution inputs are made from HR images by `lr_from_hr`: crop the HR image to a
multiple of the scale, then PIL bicubic downscale (what PCARN and G-MGBP were
evaluated with). Every measurement runs images through the real tiled runtime
(`srexport.runtime.upscaler.Upscaler`) with the backend session of the graph under test, so
a figure is what a user of that graph gets, tiling and blending included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


# -- metrics --------------------------------------------------------------------------
def to_unit(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image -> float64 in the [0, 1] scale (floats are not clamped)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if image.dtype == np.uint16:
        return image.astype(np.float64) / 65535.0
    return image.astype(np.float64)


def quantize8(image: np.ndarray) -> np.ndarray:
    """Clamp to [0, 1] and round to 8 bits (uint8), as a saved 8-bit image holds it."""
    return np.rint(np.clip(to_unit(image), 0.0, 1.0) * 255.0).astype(np.uint8)


def rgb_to_y(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma in 8-bit units (16..235) of an HxWx3 RGB image (uint8 or [0, 1] float)."""
    rgb = to_unit(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 image, got shape {rgb.shape}")
    return 16.0 + rgb @ _Y_WEIGHTS


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 1.0, shave: int = 0) -> float:
    """PSNR in dB of `test` against `reference` (same shape; the last two spatial axes are
    HxW(xC) or CxHxW alike: `shave` cuts the first two axes of an HxW(xC) array).

    Identical inputs give +inf.
    """
    reference = np.asarray(reference, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if reference.shape != test.shape:
        raise ValueError(f"psnr: shapes differ, {reference.shape} vs {test.shape}")
    if shave:
        reference = reference[shave:-shave, shave:-shave]
        test = test[shave:-shave, shave:-shave]
    mse = float(np.mean((reference - test) ** 2))
    if not math.isfinite(mse):
        return float("nan")
    return float("inf") if mse == 0.0 else 10.0 * math.log10(peak * peak / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int = 0) -> float:
    """PSNR-Y (dB, peak 255) of an SR result against the HR ground truth, both HxWx3
    (uint8, or float in [0, 1]); each is clamped and rounded to 8 bits first and
    `shave` pixels are cut from every border."""
    return psnr(rgb_to_y(quantize8(hr)), rgb_to_y(quantize8(sr)), peak=255.0, shave=shave)


def mean_finite(values: Iterable[float]) -> float:
    """Mean of PSNR figures; +inf entries (identical images) are left out, NaN propagates.
    All +inf gives +inf."""
    values = list(values)
    if any(math.isnan(v) for v in values):
        return float("nan")
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("inf") if values else float("nan")
    return float(np.mean(finite))


# -- evaluation images ----------------------------------------------------------------
def crop_to_multiple(hr: np.ndarray, scale: int) -> np.ndarray:
    """Crop an HxWxC image at the bottom/right to a multiple of `scale`."""
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    return hr[:h, :w]


def downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """PIL-bicubic downscale of an HxWx3 float [0, 1] image by `scale` (per channel, in
    float, so nothing is rounded on the way)."""
    h, w = image.shape[0] // scale, image.shape[1] // scale
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize((w, h), Image.BICUBIC))
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=-1)


def lr_from_hr(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(LR, HR) pair from an HR image: HR cropped to a multiple of `scale` (as uint8),
    LR = PIL bicubic downscale of that crop, rounded to 8 bits (a real LR image is 8-bit)
    and returned as float32 [0, 1] HxWx3."""
    hr8 = crop_to_multiple(quantize8(hr), scale)
    h, w = hr8.shape[0] // scale, hr8.shape[1] // scale
    lr = np.asarray(Image.fromarray(hr8).resize((w, h), Image.BICUBIC))
    return lr.astype(np.float32) / 255.0, hr8


@dataclass(frozen=True)
class EvalImage:
    name: str
    lr: np.ndarray  # HxWx3 float32 [0, 1]
    hr: np.ndarray | None  # (sH)x(sW)x3 uint8 ground truth, None for probe images


def eval_images(
    folder: str | Path, scale: int, warn: Callable[[str], None] | None = None, limit: int | None = None
) -> list[EvalImage]:
    """LR/HR pairs of every readable image of `folder` (HR = the folder's images).

    Unreadable files are skipped with a warning while others remain; none readable
    raises `CalibrationError`.
    """
    from srexport.calib.patches import CalibrationError, list_images, read_rgb
    from srexport.errors import ImageError

    files = list_images(folder)
    if not files:
        raise CalibrationError(f"evaluation folder {folder} holds no readable images")
    pairs = []
    for path in files[:limit] if limit else files:
        try:
            hr = read_rgb(path)
        except ImageError as exc:
            if warn:
                warn(f"skipping {exc}")
            continue
        if min(hr.shape[:2]) < 2 * scale:
            if warn:
                warn(f"skipping {path}: smaller than twice the scale")
            continue
        lr, hr8 = lr_from_hr(hr, scale)
        pairs.append(EvalImage(path.stem, lr, hr8))
    if not pairs:
        raise CalibrationError(f"evaluation folder {folder}: no image could be read")
    return pairs


# -- measurements through the tiled runtime -------------------------------------------
def upscale_rgb(upscaler, lr: np.ndarray) -> np.ndarray:
    """Run an HxWx3 float32 LR image through an `Upscaler`; HxWx3 float32, not clamped."""
    planes = np.ascontiguousarray(lr.transpose(2, 0, 1), dtype=np.float32)
    return upscaler.upscale_planes(planes).transpose(1, 2, 0)


@dataclass
class Measurement:
    """Per-image figures of one graph (and, optionally, the reference graph)."""

    names: list[str] = field(default_factory=list)
    psnr_vs_reference: list[float] = field(default_factory=list)
    psnr_y: list[float] = field(default_factory=list)
    reference_psnr_y: list[float] = field(default_factory=list)

    @property
    def mean_psnr_vs_reference(self) -> float | None:
        return mean_finite(self.psnr_vs_reference) if self.psnr_vs_reference else None

    @property
    def mean_psnr_y(self) -> float | None:
        return mean_finite(self.psnr_y) if self.psnr_y else None

    @property
    def mean_reference_psnr_y(self) -> float | None:
        return mean_finite(self.reference_psnr_y) if self.reference_psnr_y else None


def score_outputs(
    outputs: Sequence[np.ndarray],
    images: Sequence[EvalImage],
    reference_outputs: Sequence[np.ndarray] | None,
    shave: int,
) -> Measurement:
    """Figures of already computed HxWx3 outputs: PSNR (peak 1, both clamped to [0, 1],
    not rounded) against `reference_outputs`, PSNR-Y against each image's ground truth
    (for the outputs and, when given, the reference outputs)."""
    result = Measurement()
    for index, (image, out) in enumerate(zip(images, outputs)):
        result.names.append(image.name)
        ref = reference_outputs[index] if reference_outputs is not None else None
        if ref is not None:
            result.psnr_vs_reference.append(psnr(np.clip(ref, 0, 1), np.clip(out, 0, 1), peak=1.0))
        if image.hr is not None:
            h, w = min(image.hr.shape[0], out.shape[0]), min(image.hr.shape[1], out.shape[1])
            result.psnr_y.append(psnr_y(out[:h, :w], image.hr[:h, :w], shave))
            if ref is not None:
                result.reference_psnr_y.append(psnr_y(ref[:h, :w], image.hr[:h, :w], shave))
    return result


def compare(
    upscaler,
    images: Sequence[EvalImage],
    reference=None,
    reference_outputs: Sequence[np.ndarray] | None = None,
    shave: int | None = None,
) -> tuple[Measurement, list[np.ndarray]]:
    """Upscale every image with `upscaler` (the tiled runtime) and score the outputs
    (`score_outputs`) against the `reference` upscaler's outputs or the given ones.

    Returns the measurement and the outputs of `upscaler`.
    """
    shave = upscaler.scale if shave is None else shave
    outputs = [upscale_rgb(upscaler, image.lr) for image in images]
    if reference_outputs is None and reference is not None:
        reference_outputs = [upscale_rgb(reference, image.lr) for image in images]
    return score_outputs(outputs, images, reference_outputs, shave), outputs


PSNR_CAP_DB = 100.0


def round_db(value: float | None, digits: int = 3) -> float | None:
    """A PSNR figure for the manifest. JSON has no inf/NaN: identical outputs (+inf) are
    recorded as PSNR_CAP_DB (100 dB), NaN (a non-finite output) as None."""
    if value is None or math.isnan(value):
        return None
    return round(min(float(value), PSNR_CAP_DB), digits)
