"""Launch geometry and argument checks shared by the host twins and the CUDA launchers.

Both sides call these so that a host twin runs exactly the schedule the kernel runs
(same bounding box, same 32x8 blocks, same batch chunks).
"""

from __future__ import annotations

import numpy as np

from srexport.errors import SrExportError

BLEND_BLOCK = (32, 8, 1)  # SRX_BLEND_BLOCK_X, SRX_BLEND_BLOCK_Y
BLEND_MAX_BATCH = 1024  # SRX_BLEND_MAX_BATCH: patches per launch
BLEND_MAX_CHANNELS = 4  # SRX_BLEND_MAX_CHANNELS
FINALIZE_BLOCK = (32, 8, 1)
VNSC_BLOCK = (32, 8, 1)
VNSC_TILE = (16, 32)  # output rows x columns per block
VNSC_CHANNELS = 49
VNSC_SHARED_BYTES = (28 * 44 + 22 * 38) * 4  # static, per block

PATCH_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}
OUTPUT_DTYPES = {np.dtype(np.uint8): "u8", np.dtype(np.uint16): "u16", np.dtype(np.float32): "f32"}


class KernelArgumentError(SrExportError, ValueError):
    """Arguments a kernel cannot take (shapes, dtypes, sizes)."""


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_offsets(offsets, batch: int | None = None) -> np.ndarray:
    """(B, 2) int32 (top, left) per patch, C-contiguous."""
    arr = np.ascontiguousarray(np.asarray(offsets, dtype=np.int64).reshape(-1, 2))
    if batch is not None and arr.shape[0] != batch:
        raise KernelArgumentError(f"{arr.shape[0]} offsets for a batch of {batch} patches")
    if arr.size and (arr.min() < -(2**31) or arr.max() >= 2**31):
        raise KernelArgumentError("patch offsets must fit in int32")
    return arr.astype(np.int32)


def blend_bbox(offsets: np.ndarray, ph: int, pw: int, height: int, width: int) -> tuple[int, int, int, int] | None:
    """(y0, x0, bh, bw): the part of the canvas the patches cover, or None when nothing."""
    if offsets.shape[0] == 0:
        return None
    y0 = max(0, int(offsets[:, 0].min()))
    x0 = max(0, int(offsets[:, 1].min()))
    y1 = min(height, int(offsets[:, 0].max()) + ph)
    x1 = min(width, int(offsets[:, 1].max()) + pw)
    if y1 <= y0 or x1 <= x0:
        return None
    return y0, x0, y1 - y0, x1 - x0


def blend_chunks(batch: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most BLEND_MAX_BATCH patches, launched in order."""
    return [(s, min(batch, s + BLEND_MAX_BATCH)) for s in range(0, batch, BLEND_MAX_BATCH)]


def blend_grid(bh: int, bw: int) -> tuple[int, int, int]:
    return cdiv(bw, BLEND_BLOCK[0]), cdiv(bh, BLEND_BLOCK[1]), 1


def finalize_grid(out_h: int, out_w: int) -> tuple[int, int, int]:
    return cdiv(out_w, FINALIZE_BLOCK[0]), cdiv(out_h, FINALIZE_BLOCK[1]), 1


def vnsc_grid(n: int, h: int, w: int) -> tuple[int, int, int]:
    if n > 65535:
        raise KernelArgumentError(f"VN+SC takes at most 65535 images per launch, got {n}")
    return cdiv(w, VNSC_TILE[1]), cdiv(h, VNSC_TILE[0]), n


def check_blend_shapes(channels: int, height: int, width: int, ph: int, pw: int, wy_len: int, wx_len: int) -> None:
    if not 1 <= channels <= BLEND_MAX_CHANNELS:
        raise KernelArgumentError(f"blending takes 1..{BLEND_MAX_CHANNELS} channels, got {channels}")
    if height < 1 or width < 1 or ph < 1 or pw < 1:
        raise KernelArgumentError(f"empty canvas ({height}x{width}) or patch ({ph}x{pw})")
    if (wy_len, wx_len) != (ph, pw):
        raise KernelArgumentError(f"window of {wy_len}x{wx_len} for patches of {ph}x{pw}")
    if channels * height * width >= 2**62:
        raise KernelArgumentError("canvas too large")


def check_region(height: int, width: int, top: int, left: int, out_h: int, out_w: int) -> None:
    if top < 0 or left < 0 or out_h < 1 or out_w < 1 or top + out_h > height or left + out_w > width:
        raise KernelArgumentError(
            f"region {out_h}x{out_w} at ({top}, {left}) is not inside the {height}x{width} canvas"
        )


def kernel_suffix(dtype, table: dict) -> str:
    try:
        return table[np.dtype(dtype)]
    except (KeyError, TypeError):
        names = ", ".join(str(d) for d in table)
        raise KernelArgumentError(f"unsupported dtype {dtype} (supported: {names})") from None
