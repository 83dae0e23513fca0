"""The runtime: tile an image, run patches on a backend, blend them with a window."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from srexport.bundle import Bundle, load_bundle
from srexport.errors import ImageError, SrExportError
from srexport.runtime.backends import Session, open_session
from srexport.runtime.blend import WINDOWS, Blender, window_1d, window_2d
from srexport.runtime.imageio import LoadedImage, from_pil, quantize, read_image, to_pil, write_png
from srexport.runtime.noise import normal_field
from srexport.runtime.padding import reflect_pad
from srexport.runtime.resize import bicubic
from srexport.runtime.tiler import TilePlan, plan_tiles

Progress = Callable[[int, int], None]
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Upscaler:
    """A loaded bundle ready to upscale images (see `srexport.load`)."""

    def __init__(
        self,
        bundle: Bundle,
        session: Session,
        patch: tuple[int, int] | None = None,
        overlap: int | None = None,
        window: str = "hamming",
        batch: int = 1,
        noise: float = 0.0,
        seed: int = 0,
    ):
        manifest = bundle.manifest
        if manifest.task != "sr":
            raise SrExportError(f"bundle {bundle.root} holds a {manifest.task} network, not a super-resolution one")
        self.bundle = bundle
        self.session = session
        self.patch = patch or (manifest.patch, manifest.patch)
        self.overlap = manifest.overlap if overlap is None else overlap
        # Validate patch and overlap now, not in the middle of a folder.
        plan_tiles(max(self.patch), max(self.patch), self.patch, self.overlap, manifest.shape_rules)
        self.window = window
        if window not in WINDOWS:
            raise SrExportError(f"unknown window '{window}' (windows: {', '.join(WINDOWS)})")
        if batch < 1:
            raise SrExportError(f"batch must be >= 1, got {batch}")
        self.batch = batch
        self.noise = float(noise)
        self.seed = int(seed)
        self.scale = manifest.scale
        self.output_scale = manifest.shape_rules.output_scale

    # -- arrays -----------------------------------------------------------------
    def plan(self, height: int, width: int) -> TilePlan:
        """The tiling of an LR image of this size, in the graph's input pixels."""
        if self.bundle.manifest.input_kind == "upscaled":
            height, width = height * self.scale, width * self.scale
        return plan_tiles(height, width, self.patch, self.overlap, self.bundle.manifest.shape_rules)

    def upscale_planes(self, planes: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """3xHxW float32 RGB in [0, 1] -> 3x(sH)x(sW) float32, unclamped."""
        if self.bundle.manifest.input_kind == "upscaled":
            planes = bicubic(planes, planes.shape[1] * self.scale, planes.shape[2] * self.scale)
        height, width = planes.shape[1:]
        plan = plan_tiles(height, width, self.patch, self.overlap, self.bundle.manifest.shape_rules)
        padded = reflect_pad(planes, 0, plan.extra_h, 0, plan.extra_w)
        s = self.output_scale
        pad_h, pad_w = plan.padded_size
        out_h, out_w = s * plan.patch_h, s * plan.patch_w
        gpu = self._device_blender(s * pad_h, s * pad_w, out_h, out_w)
        blender = None if gpu else Blender(3, s * pad_h, s * pad_w, window_2d(self.window, out_h, out_w))
        total = len(plan.tiles)
        for first in range(0, total, self.batch):
            tiles = plan.tiles[first : first + self.batch]
            inputs = {"image": np.stack([padded[:, t : t + plan.patch_h, l : l + plan.patch_w] for t, l in tiles])}
            inputs.update(self.noise_batch(plan, tiles))
            if gpu:
                batch = self.session.run_to_device(inputs)
                gpu.add_batch(batch.pointer, [(s * t, s * l) for t, l in tiles], dtype=batch.dtype)
            else:
                for (top, left), out in zip(tiles, self.session.run(inputs)):
                    blender.add(out, s * top, s * left)
            if progress:
                progress(min(first + self.batch, total), total)
        if gpu:
            return gpu.download(0, 0, s * height, s * width, dtype=np.float32).transpose(2, 0, 1)
        return blender.result(0, 0, s * height, s * width)

    def _device_blender(self, height: int, width: int, patch_h: int, patch_w: int):
        """The GPU blender when the session keeps outputs on a GPU (TensorRT), else None."""
        make = getattr(self.session, "device_blender", None)
        if make is None:
            return None
        return make(3, height, width, window_1d(self.window, patch_h), window_1d(self.window, patch_w))

    def noise_batch(self, plan: TilePlan, tiles) -> dict[str, np.ndarray]:
        """Crops of the whole-image noise fields (image coordinates) for these tiles."""
        fields = {}
        for index, spec in enumerate(self.bundle.manifest.noise_inputs):
            shape = spec.shape(len(tiles), plan.patch_h, plan.patch_w)
            if spec.kind == "amplitude":
                fields[spec.name] = np.full(shape, self.noise, np.float32)
                continue
            if self.noise == 0.0:
                fields[spec.name] = np.zeros(shape, np.float32)
                continue
            f, b = spec.factor, spec.border
            fields[spec.name] = np.stack([
                np.stack([
                    normal_field(self.seed, 16 * index + c, f * (top - b), f * (left - b), shape[2], shape[3])
                    for c in range(spec.channels)
                ])
                for top, left in tiles
            ]) * np.float32(self.noise)
        return fields

    def upscale_loaded(self, image: LoadedImage, progress: Progress | None = None) -> LoadedImage:
        planes = np.ascontiguousarray(image.pixels.transpose(2, 0, 1), dtype=np.float32)
        if image.gray:
            planes = np.repeat(planes, 3, axis=0)
        out = self.upscale_planes(planes, progress)
        if image.gray:
            out = np.tensordot(_LUMA, out, axes=1)[None]
        alpha = None
        if image.alpha is not None:
            alpha = np.clip(bicubic(image.alpha[None], out.shape[1], out.shape[2])[0], 0.0, 1.0)
        return LoadedImage(out.transpose(1, 2, 0), alpha, image.bits, image.gray)

    # -- user-facing kinds -------------------------------------------------------
    def upscale(self, image: np.ndarray | Image.Image, progress: Progress | None = None) -> np.ndarray | Image.Image:
        """Upscale a PIL image or an HxW / HxWxC (C = 1, 3, 4) uint8, uint16 or float32
        array; returns the same kind (float32 output is not clamped)."""
        if isinstance(image, Image.Image):
            result = self.upscale_loaded(from_pil(image), progress)
            if result.bits == 16:
                return Image.fromarray(quantize(result.pixels[..., 0], 16))
            return to_pil(result.pixels, result.alpha)
        return self._upscale_array(np.asarray(image), progress)

    def _upscale_array(self, array: np.ndarray, progress: Progress | None) -> np.ndarray:
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise ImageError(f"expected an HxW or HxWxC array with C in (1, 3, 4), got shape {array.shape}")
        peaks = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}
        if array.dtype not in peaks:
            raise ImageError(f"unsupported array dtype {array.dtype} (uint8, uint16 or float32)")
        peak = peaks[array.dtype]
        pixels = array.astype(np.float32) / peak
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        alpha = pixels[..., 3] if pixels.shape[2] == 4 else None
        color = pixels[..., :3]
        loaded = LoadedImage(color, alpha, 8, gray=color.shape[2] == 1)
        out = self.upscale_loaded(loaded, progress)
        result = out.pixels if out.alpha is None else np.concatenate([out.pixels, out.alpha[..., None]], axis=2)
        result = result[..., 0] if array.ndim == 2 else result
        if array.dtype == np.float32:
            return result.astype(np.float32, copy=False)
        return quantize(result, 8 if array.dtype == np.uint8 else 16)

    def upscale_file(self, src: str | Path, dst: str | Path, progress: Progress | None = None) -> Path:
        """Read `src`, upscale it, write a PNG to `dst` (16-bit when the input was)."""
        image = read_image(src)
        out = self.upscale_loaded(image, progress)
        write_png(dst, out.pixels, out.alpha, out.bits)
        return Path(dst)


def load(
    bundle: str | Path,
    backend: str = "auto",
    precision: str = "fp32",
    *,
    patch: int | tuple[int, int] | None = None,
    overlap: int | None = None,
    window: str = "hamming",
    batch: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    threads: int = 0,
) -> Upscaler:
    """Open a bundle for upscaling: `srexport.load("bundles/pcarn-m-x4").upscale(img)`."""
    loaded = load_bundle(bundle)
    if isinstance(patch, int):
        patch = (patch, patch)
    session = open_session(loaded, backend, precision, threads, patch=patch or loaded.manifest.patch, batch=batch)
    return Upscaler(loaded, session, patch, overlap, window, batch, noise, seed)
