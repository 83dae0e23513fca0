"""Representative calibration patches, sampled reproducibly from a folder of images.

"Representative" means: what the graph is fed at run time. The folder's images are taken
as full-resolution photographs (Set5-like, the usual calibration material); the runtime
feeds networks low-resolution images, so each image is first brought to the LR a user
would give the network, by the evaluation protocol's PIL bicubic downscale by the model's
scale (rounded to 8 bits, as a saved LR image is):

- `input_kind == "lr"` (G-MGBP, PCARN): patches of that LR image;
- `input_kind == "upscaled"` (BPP, MGBPv2): patches of the LR image bicubic-upscaled back
  by the scale with the runtime's own resize (`srexport.runtime.resize.bicubic`), exactly
  the picture the runtime tiles.

(`lr_images=True` takes the folder's images as the LR inputs themselves, for a folder of
the very images one means to upscale.) Noise inputs are fed zeros: the runtime's default
amplitude W = 0.

One fixed patch size (ONNX Runtime's entropy and percentile calibrators need equal
shapes): CALIB_PATCH model-input pixels for networks whose output does not depend on the
patch size away from the halo (statistics are per pixel; small patches calibrate fast),
scaled by the scale for "upscaled" inputs; a network whose output depends on the whole
patch (`halo is None`: instance norm) is calibrated at its recommended run-time patch.
The size is made legal for the graph and never larger than the smallest image (images
smaller than a patch are reflect-padded, as the runtime pads).

Sampling: images are picked with probability proportional to their area (every pixel
equally likely), positions uniformly. Flat patches are down-weighted by rejection:
a candidate whose luma standard deviation s is below FLAT_STD is kept with probability
max(FLAT_KEEP, s / FLAT_STD), so a perfectly flat patch is FLAT_KEEP (10%) as likely as a
textured one: flat areas still calibrate (they exist in real images) but do not dominate
the histograms. Everything is drawn from `numpy.random.default_rng(seed)`: the same
folder, count, seed and model give the same patches, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from srexport.errors import CalibrationError, ImageError

CALIB_PATCH = 48
FLAT_STD = 0.04  # about 10 grey levels of luma standard deviation
FLAT_KEEP = 0.1
MAX_TRIES = 64
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class CalibrationSet:
    """Calibration samples (one dict of graph inputs per patch, batch 1) and their story."""

    inputs: list[dict[str, np.ndarray]]
    patch: tuple[int, int]
    folder: str
    images: list[str]
    seed: int
    input_kind: str
    scale: int
    skipped: list[str] = field(default_factory=list)
    flat_patches: int = 0
    origins: list[tuple[str, int, int]] = field(default_factory=list)
    # ground truth of each patch (HxWx3 uint8 of the folder's image under the patch's
    # output) where there is one: None for lr_images, padded images and synthetic sets
    targets: list[np.ndarray | None] = field(default_factory=list)

    def summary(self) -> dict:
        """What the manifest records about the calibration."""
        return {
            "folder": self.folder,
            "image_count": len(self.images),
            "images": list(self.images),
            "skipped": list(self.skipped),
            "patches": len(self.inputs),
            "patch_size": list(self.patch),
            "seed": self.seed,
            "input": (
                f"LR = PIL bicubic /{self.scale} of the folder's images"
                + (f", bicubic-upscaled x{self.scale} as the runtime feeds" if self.input_kind == "upscaled" else "")
            ),
            "flat_patches": self.flat_patches,
            "flat_rule": f"luma std < {FLAT_STD} kept with probability max({FLAT_KEEP}, std/{FLAT_STD})",
        }


def list_images(folder: str | Path) -> list[Path]:
    """Readable image files of a folder (not recursive), sorted by name."""
    from srexport.runtime.imageio import READABLE

    folder = Path(folder)
    if not folder.is_dir():
        raise CalibrationError(f"{folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in READABLE)


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as HxWx3 float32 [0, 1] RGB (gray repeated, alpha dropped)."""
    from srexport.runtime.imageio import read_image

    pixels = read_image(path).pixels
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else np.ascontiguousarray(pixels[..., :3])


def downscale8(rgb: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic downscale of an HxWx3 [0, 1] image by `scale`, via 8 bits (as the
    evaluation protocol makes LR images); HxWx3 float32 [0, 1]."""
    if scale == 1:
        return rgb.astype(np.float32)
    img8 = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    h, w = img8.shape[0] // scale, img8.shape[1] // scale
    img8 = img8[: h * scale, : w * scale]
    lr = np.asarray(Image.fromarray(img8).resize((max(1, w), max(1, h)), Image.BICUBIC))
    return lr.astype(np.float32) / 255.0


def model_input_image(rgb: np.ndarray, scale: int, input_kind: str, lr_images: bool = False) -> np.ndarray:
    """A folder image as the 3xHxW float32 picture the runtime would tile for it."""
    from srexport.runtime.resize import bicubic

    lr = rgb.astype(np.float32) if lr_images else downscale8(rgb, scale)
    planes = np.ascontiguousarray(lr.transpose(2, 0, 1))
    if input_kind == "upscaled":
        planes = bicubic(planes, planes.shape[1] * scale, planes.shape[2] * scale)
    return planes


def calibration_patch(model, smallest: int | None = None) -> int:
    """The fixed calibration patch edge in graph-input pixels (see the module docstring)."""
    rules = model.shape_rules()
    if rules.halo is None:
        target = model.recommended_patch()
    else:
        target = CALIB_PATCH * (model.scale if model.input_kind == "upscaled" else 1)
        target = min(target, model.recommended_patch())
    if smallest is not None:
        target = min(target, smallest)
    size = rules.legal_at_least(max(target, 1))
    # prefer the largest legal size that still fits the smallest image
    if smallest is not None and size > smallest:
        fitting = [s for s in range(rules.min_size, smallest + 1) if rules.is_legal(s)]
        size = fitting[-1] if fitting else size
    return size


def texture(patch: np.ndarray) -> float:
    """Standard deviation of the luma of a 3xhxw patch (0 for a flat patch)."""
    return float(np.std(np.tensordot(_LUMA, patch, axes=1)))


def zero_noise(model, batch: int, height: int, width: int) -> dict[str, np.ndarray]:
    return {n.name: np.zeros(n.shape(batch, height, width), np.float32) for n in model.noise_inputs}


def load_folder(
    folder: str | Path, warn: Callable[[str], None] | None = None
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """Every readable image of `folder` as (name, HxWx3 float32); unreadable files are
    skipped with a warning while others remain."""
    files = list_images(folder)
    if not files:
        raise CalibrationError(f"calibration folder {folder} holds no images ({', '.join(_suffixes())})")
    images, skipped = [], []
    for path in files:
        try:
            images.append((path.name, read_rgb(path)))
        except ImageError as exc:
            skipped.append(path.name)
            if warn:
                warn(f"skipping {exc}")
    if not images:
        raise CalibrationError(f"calibration folder {folder}: none of its {len(files)} images could be read")
    return images, skipped


def _suffixes() -> list[str]:
    from srexport.runtime.imageio import READABLE

    return list(READABLE)


def sample_patches(
    folder: str | Path,
    model,
    count: int,
    seed: int = 0,
    patch: int | None = None,
    warn: Callable[[str], None] | None = None,
    lr_images: bool = False,
) -> CalibrationSet:
    """`count` calibration samples from the images of `folder` for `model` (an SRModel or
    anything with scale, input_kind, noise_inputs, shape_rules(), recommended_patch())."""
    from srexport.runtime.padding import reflect_pad

    if count < 1:
        raise CalibrationError(f"calibration needs at least one patch, got {count}")
    loaded, skipped = load_folder(folder, warn)
    scale, kind = int(model.scale), model.input_kind
    pictures = []
    for name, rgb in loaded:
        if not lr_images and min(rgb.shape[:2]) < scale:
            skipped.append(name)
            if warn:
                warn(f"skipping {name}: smaller than the scale x{scale}")
            continue
        hr8 = None
        if not lr_images:
            hr8 = np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
            hr8 = hr8[: hr8.shape[0] - hr8.shape[0] % scale, : hr8.shape[1] - hr8.shape[1] % scale]
        pictures.append((name, model_input_image(rgb, scale, kind, lr_images), hr8))
    if not pictures:
        raise CalibrationError(f"calibration folder {folder}: no usable image (all smaller than x{scale})")
    smallest = min(min(p.shape[1:]) for _, p, _ in pictures)
    size = patch if patch is not None else calibration_patch(model, smallest)
    size = model.shape_rules().legal_at_least(size)
    padded = []
    for name, planes, hr8 in pictures:
        h, w = planes.shape[1:]
        if h < size or w < size:
            planes = reflect_pad(planes, 0, max(0, size - h), 0, max(0, size - w))
            hr8 = None
        padded.append((name, planes, hr8))
    areas = np.array([p.shape[1] * p.shape[2] for _, p, _ in padded], dtype=np.float64)
    out_factor = scale if kind == "lr" else 1
    rng = np.random.default_rng(seed)
    inputs, origins, targets, flat = [], [], [], 0
    noise = zero_noise(model, 1, size, size)
    for _ in range(count):
        for attempt in range(MAX_TRIES):
            index = int(rng.choice(len(padded), p=areas / areas.sum()))
            name, planes, hr8 = padded[index]
            top = int(rng.integers(0, planes.shape[1] - size + 1))
            left = int(rng.integers(0, planes.shape[2] - size + 1))
            crop = planes[:, top : top + size, left : left + size]
            score = texture(crop)
            keep = max(FLAT_KEEP, score / FLAT_STD)
            if rng.random() < keep or attempt == MAX_TRIES - 1:
                break
        flat += score < FLAT_STD
        inputs.append({"image": np.ascontiguousarray(crop[None], dtype=np.float32), **noise})
        origins.append((name, top, left))
        if hr8 is not None:
            f = out_factor
            hr8 = hr8[f * top : f * (top + size), f * left : f * (left + size)]
        targets.append(hr8)
    return CalibrationSet(
        inputs=inputs,
        patch=(size, size),
        folder=str(folder),
        images=[n for n, _, _ in pictures],
        seed=seed,
        input_kind=kind,
        scale=scale,
        skipped=skipped,
        flat_patches=int(flat),
        origins=origins,
        targets=targets,
    )


# -- synthetic material (when no folder is given, and for `verify`) ------------------------
def synthetic_image(height: int, width: int, seed: int) -> np.ndarray:
    """A deterministic photo-like HxWx3 float32 [0, 1] picture: a smooth colour field,
    sharp-edged rectangles and discs, a sinusoidal texture patch and mild grain."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((3, max(2, height // 16), max(2, width // 16)), dtype=np.float32)
    planes = np.stack(
        [np.asarray(Image.fromarray(c).resize((width, height), Image.BICUBIC)) for c in coarse]
    )
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for _ in range(6):
        colour = rng.random(3, dtype=np.float32)[:, None, None]
        if rng.random() < 0.5:
            top, left = rng.integers(0, height), rng.integers(0, width)
            h, w = rng.integers(height // 8 + 1, height // 2 + 2), rng.integers(width // 8 + 1, width // 2 + 2)
            mask = (yy >= top) & (yy < top + h) & (xx >= left) & (xx < left + w)
        else:
            cy, cx, r = rng.integers(0, height), rng.integers(0, width), rng.integers(3, max(4, min(height, width) // 3))
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        planes = np.where(mask[None], colour, planes)
    freq = rng.uniform(0.2, 1.2, size=2).astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(freq[0] * xx + freq[1] * yy)
    region = (xx < width // 3) & (yy > 2 * height // 3)
    planes = np.where(region[None], 0.7 * planes + 0.3 * stripes[None], planes)
    planes = planes + rng.normal(0, 0.01, planes.shape).astype(np.float32)
    return np.clip(planes, 0, 1).transpose(1, 2, 0).astype(np.float32)


def synthetic_set(model, count: int, seed: int = 0, patch: int | None = None) -> CalibrationSet:
    """Samples from synthetic pictures (see `synthetic_image`) in the graph's input kind,
    half of them uniform random noise: the probes used when no folder is given."""
    scale, kind = int(model.scale), model.input_kind
    size = model.shape_rules().legal_at_least(patch or calibration_patch(model))
    rng = np.random.default_rng(seed)
    noise = zero_noise(model, 1, size, size)
    inputs = []
    for i in range(count):
        if i % 2:
            image = rng.random((3, size, size), dtype=np.float32)
        else:
            lr_size = size // scale if kind == "upscaled" else size
            rgb = synthetic_image(max(lr_size, 2), max(lr_size, 2), seed * 1000 + i)
            image = model_input_image(rgb, scale, kind, lr_images=True)[:, :size, :size]
            if image.shape[1:] != (size, size):
                from srexport.runtime.padding import reflect_pad

                image = reflect_pad(image, 0, size - image.shape[1], 0, size - image.shape[2])
        inputs.append({"image": np.ascontiguousarray(image[None], dtype=np.float32), **noise})
    return CalibrationSet(inputs, (size, size), "(synthetic)", [], seed, kind, scale)
