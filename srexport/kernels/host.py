"""ctypes wrapper of the host twin library (host_twin.cpp, built by `compiler.host_library`).

The functions mirror the CUDA launch wrappers of `srexport.kernels.cuda` on NumPy arrays:

- `blend_accumulate(canvas, weight, patches, offsets, wy, wx)`: in place, as the kernel.
- `blend_finalize(canvas, weight, top, left, height, width, dtype)`: HWC uint8/uint16/float32.
- `vnsc(rgb)`: (N, 3, H, W) float32/float16 -> (N, 49, H, W) of the same dtype.
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from srexport.kernels import launch
from srexport.kernels.compiler import host_library

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None

_P = ctypes.c_void_p
_I = ctypes.c_int
_LL = ctypes.c_longlong
_SIGNATURES = {
    "srx_host_abi_version": ([], _I),
    "srx_host_blend_max_batch": ([], _I),
    "srx_host_blend_max_channels": ([], _I),
    "srx_host_vnsc_shared_bytes": ([], _I),
    "srx_host_blend_accumulate_f32": ([_P, _I, _I, _I, _I, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I], None),
    "srx_host_blend_accumulate_f16": ([_P, _I, _I, _I, _I, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I], None),
    "srx_host_blend_finalize_u8": ([_P, _P, _I, _I, _I, _I, _I, _I, _I, _P], None),
    "srx_host_blend_finalize_u16": ([_P, _P, _I, _I, _I, _I, _I, _I, _I, _P], None),
    "srx_host_blend_finalize_f32": ([_P, _P, _I, _I, _I, _I, _I, _I, _I, _P], None),
    "srx_host_vnsc_f32": ([_P, _I, _I, _I, _P], None),
    "srx_host_vnsc_f16": ([_P, _I, _I, _I, _P], None),
    "srx_host_vnsc_taps": ([_P], None),
    "srx_host_vnsc_luma": ([_P, _LL, _P], None),
    "srx_host_half_to_float": ([_P, _LL, _P], None),
    "srx_host_float_to_half": ([_P, _LL, _P], None),
}
ABI_VERSION = 3


def library() -> ctypes.CDLL:
    """The loaded host twin library (compiled with g++ on first use, then cached)."""
    global _lib
    with _lock:
        if _lib is None:
            lib = ctypes.CDLL(str(host_library()))
            for name, (args, res) in _SIGNATURES.items():
                fn = getattr(lib, name)
                fn.argtypes = args
                fn.restype = res
            if lib.srx_host_abi_version() != ABI_VERSION:
                raise RuntimeError("stale host twin library (ABI version mismatch)")
            assert lib.srx_host_blend_max_batch() == launch.BLEND_MAX_BATCH
            assert lib.srx_host_blend_max_channels() == launch.BLEND_MAX_CHANNELS
            assert lib.srx_host_vnsc_shared_bytes() == launch.VNSC_SHARED_BYTES
            _lib = lib
    return _lib


def _ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def _contiguous(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _writable(a: np.ndarray, dtype, name: str) -> None:
    if not (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable):
        raise launch.KernelArgumentError(f"{name} must be a writable C-contiguous {np.dtype(dtype)} array")


# -- blending ------------------------------------------------------------------------
def blend_accumulate(canvas: np.ndarray, weight: np.ndarray, patches: np.ndarray, offsets, wy, wx) -> None:
    """Add (B, C, ph, pw) float32/float16 patches times outer(wy, wx) into canvas (C, H, W)
    and weight (H, W), float32, in place; offsets (B, 2) are (top, left) canvas positions
    (patches may hang over the edges)."""
    _writable(canvas, np.float32, "canvas")
    _writable(weight, np.float32, "weight")
    if canvas.ndim != 3 or weight.shape != canvas.shape[1:]:
        raise launch.KernelArgumentError(f"canvas {canvas.shape} and weight {weight.shape} do not match")
    patches = np.asarray(patches)
    if patches.ndim != 4:
        raise launch.KernelArgumentError(f"patches must be (B, C, h, w), got shape {patches.shape}")
    suffix = launch.kernel_suffix(patches.dtype, launch.PATCH_DTYPES)
    batch, channels, ph, pw = patches.shape
    if channels != canvas.shape[0]:
        raise launch.KernelArgumentError(f"{channels}-channel patches for a {canvas.shape[0]}-channel canvas")
    height, width = weight.shape
    wy, wx = _contiguous(wy, np.float32).ravel(), _contiguous(wx, np.float32).ravel()
    launch.check_blend_shapes(channels, height, width, ph, pw, wy.size, wx.size)
    offsets = launch.check_offsets(offsets, batch)
    storage = np.uint16 if suffix == "f16" else np.float32
    patches = np.ascontiguousarray(patches).view(storage)
    fn = getattr(library(), f"srx_host_blend_accumulate_{suffix}")
    for start, stop in launch.blend_chunks(batch):
        chunk_offsets = np.ascontiguousarray(offsets[start:stop])
        box = launch.blend_bbox(chunk_offsets, ph, pw, height, width)
        if box is None:
            continue
        chunk = np.ascontiguousarray(patches[start:stop])
        fn(_ptr(chunk), stop - start, channels, ph, pw, _ptr(chunk_offsets), _ptr(wy), _ptr(wx),
           _ptr(canvas), _ptr(weight), height, width, *box)


def blend_finalize(canvas: np.ndarray, weight: np.ndarray, top: int = 0, left: int = 0,
                   height: int | None = None, width: int | None = None, dtype=np.uint8) -> np.ndarray:
    """canvas / weight over a region as interleaved HWC: uint8/uint16 =
    round(clamp(v, 0, 1) * peak) (half to even), float32 unclamped."""
    canvas = _contiguous(canvas, np.float32)
    weight = _contiguous(weight, np.float32)
    channels, ch, cw = canvas.shape
    height = ch - top if height is None else height
    width = cw - left if width is None else width
    launch.check_region(ch, cw, top, left, height, width)
    suffix = launch.kernel_suffix(dtype, launch.OUTPUT_DTYPES)
    out = np.empty((height, width, channels), dtype=np.dtype(dtype))
    getattr(library(), f"srx_host_blend_finalize_{suffix}")(
        _ptr(canvas), _ptr(weight), channels, ch, cw, top, left, height, width, _ptr(out))
    return out


class HostBlender:
    """The host twin with srexport.runtime.blend.Blender's interface (planar canvas)."""

    def __init__(self, channels: int, height: int, width: int, wy: np.ndarray, wx: np.ndarray):
        self.canvas = np.zeros((channels, height, width), np.float32)
        self.weight = np.zeros((height, width), np.float32)
        self.wy = _contiguous(wy, np.float32)
        self.wx = _contiguous(wx, np.float32)

    def add_batch(self, patches: np.ndarray, offsets) -> None:
        blend_accumulate(self.canvas, self.weight, patches, offsets, self.wy, self.wx)

    def add(self, patch: np.ndarray, top: int, left: int) -> None:
        self.add_batch(patch[None], [(top, left)])

    def result(self, top=0, left=0, height=None, width=None, dtype=np.float32) -> np.ndarray:
        """HWC image of the region (float32 unclamped, or uint8/uint16 quantized)."""
        return blend_finalize(self.canvas, self.weight, top, left, height, width, dtype)


# -- VN+SC ---------------------------------------------------------------------------
def vnsc(rgb: np.ndarray) -> np.ndarray:
    """(N, 3, H, W) RGB in [0, 1], float32 or float16 -> (N, 49, H, W), same dtype."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise launch.KernelArgumentError(f"VN+SC takes (N, 3, H, W) RGB, got shape {rgb.shape}")
    suffix = launch.kernel_suffix(rgb.dtype, launch.PATCH_DTYPES)
    n, _, h, w = rgb.shape
    if min(n, h, w) < 1:
        raise launch.KernelArgumentError(f"empty input of shape {rgb.shape}")
    rgb = np.ascontiguousarray(rgb)
    out = np.empty((n, launch.VNSC_CHANNELS, h, w), dtype=rgb.dtype)
    getattr(library(), f"srx_host_vnsc_{suffix}")(_ptr(rgb), n, h, w, _ptr(out))
    return out


def vnsc_taps() -> np.ndarray:
    """The kernel's 7x7 Gaussian taps."""
    taps2 = np.empty((7, 7), np.float32)
    library().srx_host_vnsc_taps(_ptr(taps2))
    return taps2


def luma(rgb: np.ndarray) -> np.ndarray:
    """(3, ...) float32 RGB in [0, 1] -> luminance on a [0, 255] scale, as the kernel forms it."""
    rgb = _contiguous(rgb, np.float32)
    count = rgb[0].size
    out = np.empty(rgb.shape[1:], np.float32)
    library().srx_host_vnsc_luma(_ptr(rgb), count, _ptr(out))
    return out


# -- float16 conversions (the kernels' own, used on the host side) -----------------
def half_to_float(bits: np.ndarray) -> np.ndarray:
    bits = _contiguous(bits, np.uint16)
    out = np.empty(bits.shape, np.float32)
    library().srx_host_half_to_float(_ptr(bits), bits.size, _ptr(out))
    return out


def float_to_half(values: np.ndarray) -> np.ndarray:
    values = _contiguous(values, np.float32)
    out = np.empty(values.shape, np.uint16)
    library().srx_host_float_to_half(_ptr(values), values.size, _ptr(out))
    return out
