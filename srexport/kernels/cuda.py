"""Loading and launching the CUDA kernels through cuda-python (`cuda.bindings.driver`).

cuda-python is optional and imported lazily: importing this module needs neither it nor a
GPU. The first launch loads the kernels into the device's primary context (the one the
CUDA runtime, TensorRT and PyTorch also use), from

0. precompiled fatbins in $SREXPORT_FATBIN_DIR (`build.export_fatbins`), else
1. a fatbin compiled by nvcc for sm_75/80/86/89/90 + PTX (`compiler.compile_cuda`, cached), else
2. NVRTC (`cuda.bindings.nvrtc`, from `pip install nvidia-cuda-nvrtc==13.0.88`: an NVRTC
   newer than the local nvcc emits PTX that ptxas/driver of that version reject), compiled
   to a cubin for the device's own architecture.

`SREXPORT_KERNELS=nvcc|nvrtc` forces one source (auto: the first that works). Errors are `CudaUnavailable` (no
cuda-python, no driver, no GPU, no compiler: one clear line) or `CudaError` (a failing
driver call, with the CUDA error name).

Launch wrappers (device pointers are ints, or anything with `__cuda_array_interface__`,
`data_ptr`, or `int()`; `stream` is a CUstream handle or int, 0 = legacy default stream):

- `blend_accumulate(patches, offsets, batch, channels, patch_h, patch_w, canvas, weight,
  height, width, wy, wx, dtype="float32", stream=0)` -- offsets are host (top, left)
  pairs; they are uploaded on `stream` into a scratch buffer.
- `blend_finalize(canvas, weight, channels, height, width, out, top=0, left=0, out_h=None,
  out_w=None, dtype="uint8", stream=0)`
- `vnsc(rgb, out, n, h, w, dtype="float32", stream=0)`
- `GpuBlender`: owns canvas/weight/window buffers; `add_batch`, `finalize`, `download`.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from srexport.errors import CudaError, CudaUnavailable, KernelBuildError, SrExportError  # noqa: F401  (CudaError: what the calls raise)
from srexport.kernels import launch
from srexport.kernels.compiler import CU_SOURCES, HEADERS, KERNEL_DIR, compile_cuda, nvcc_path
from srexport.lazy import driver_check as _check
from srexport.lazy import import_cuda_driver as _driver
from srexport.lazy import import_nvrtc as _nvrtc

NVRTC_PIN = "13.0.88"  # matches nvcc 13.0 (see FACTS.md)
KERNELS = {
    "srx_blend_accumulate_f32": "srx_blend.cu",
    "srx_blend_accumulate_f16": "srx_blend.cu",
    "srx_blend_finalize_u8": "srx_blend.cu",
    "srx_blend_finalize_u16": "srx_blend.cu",
    "srx_blend_finalize_f32": "srx_blend.cu",
    "srx_vnsc_f32": "srx_vnsc.cu",
    "srx_vnsc_f16": "srx_vnsc.cu",
}


def _init_driver():
    drv = _driver()
    try:
        result = drv.cuInit(0)
    except Exception as exc:  # cuda-python raises when libcuda.so (the driver) is absent
        raise CudaUnavailable(f"no NVIDIA driver (libcuda) on this machine: {exc}") from None
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise CudaUnavailable(f"CUDA driver unusable: cuInit returned {getattr(err, 'name', err)}")
    count = _check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
    if count < 1:
        raise CudaUnavailable("the CUDA driver sees no GPU")
    return drv


def cuda_status() -> tuple[bool, str]:
    """(True, device description) when kernels can run here, else (False, the reason). Never raises."""
    try:
        drv = _init_driver()
        dev = _check(drv.cuDeviceGet(0), "cuDeviceGet")
        name = _check(drv.cuDeviceGetName(128, dev), "cuDeviceGetName")
        name = name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)
        major, minor = _compute_capability(drv, dev)
    except SrExportError as exc:
        return False, str(exc)
    except Exception as exc:  # anything else from a broken install
        return False, f"CUDA unusable: {exc}"
    return True, f"{name} (sm_{major}{minor})"


def _compute_capability(drv, dev) -> tuple[int, int]:
    attr = drv.CUdevice_attribute
    major = _check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))
    minor = _check(drv.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))
    return int(major), int(minor)


# -- NVRTC ---------------------------------------------------------------------------
def nvrtc_version() -> tuple[int, int]:
    return tuple(_check(_nvrtc().nvrtcVersion(), "nvrtcVersion"))


def nvrtc_compile(name: str, arch: str, *, ptx: bool = False) -> bytes:
    """Compile kernels/<name> with NVRTC for `arch` ('sm_86': cubin; 'compute_75': PTX).

    Runs without a GPU. The NVRTC must not be newer than the driver/ptxas that consumes
    its PTX: pin nvidia-cuda-nvrtc to the toolkit (13.0.88 for nvcc 13.0)."""
    if name not in CU_SOURCES:
        raise KernelBuildError(f"unknown kernel source '{name}'")
    nvrtc = _nvrtc()
    src = (KERNEL_DIR / name).read_bytes()
    headers = [(KERNEL_DIR / h).read_bytes() for h in HEADERS]
    try:
        prog = _check(nvrtc.nvrtcCreateProgram(src, name.encode(), len(headers), headers,
                                               [h.encode() for h in HEADERS]), "nvrtcCreateProgram")
    except RuntimeError as exc:  # libnvrtc not found
        raise CudaUnavailable(f"NVRTC is not installed (pip install nvidia-cuda-nvrtc=={NVRTC_PIN}): {exc}") from None
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17", b"--fmad=true", b"-default-device"]
        err = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0]
        log_size = _check(nvrtc.nvrtcGetProgramLogSize(prog))
        log = b" " * log_size
        nvrtc.nvrtcGetProgramLog(prog, log)
        if int(err) != 0:
            raise KernelBuildError(f"NVRTC failed on {name} for {arch}: {log.decode(errors='replace').strip()}")
        if ptx or arch.startswith("compute_"):
            size = _check(nvrtc.nvrtcGetPTXSize(prog))
            out = b" " * size
            _check(nvrtc.nvrtcGetPTX(prog, out), "nvrtcGetPTX")
            return out.rstrip(b"\0")
        size = _check(nvrtc.nvrtcGetCUBINSize(prog))
        out = b" " * size
        _check(nvrtc.nvrtcGetCUBIN(prog, out), "nvrtcGetCUBIN")
        return out
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


# -- pointers ------------------------------------------------------------------------
def device_pointer(obj: Any) -> int:
    """An int device address from an int, CUdeviceptr, `__cuda_array_interface__` or `data_ptr`."""
    if obj is None:
        return 0
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is not None:
        return int(cai["data"][0])
    data_ptr = getattr(obj, "data_ptr", None)
    if data_ptr is not None:
        return int(data_ptr() if callable(data_ptr) else data_ptr)
    try:
        return int(obj)
    except (TypeError, ValueError):
        raise launch.KernelArgumentError(f"cannot take a device pointer from {type(obj).__name__}") from None


def _stream_handle(stream: Any) -> int:
    if stream is None:
        return 0
    if isinstance(stream, (int, np.integer)):
        return int(stream)
    handle = getattr(stream, "handle", None)  # cuda.core Stream
    if handle is not None:
        return int(handle)
    return int(stream)


# -- the loaded kernels --------------------------------------------------------------
class Kernels:
    """The kernels loaded into one device's primary context, with launch wrappers."""

    def __init__(self, device: int = 0, source: str | None = None):
        drv = _init_driver()
        self._drv = drv
        self.device = device
        self._dev = _check(drv.cuDeviceGet(device), "cuDeviceGet")
        self._ctx = _check(drv.cuDevicePrimaryCtxRetain(self._dev), "cuDevicePrimaryCtxRetain")
        _check(drv.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")
        self.capability = _compute_capability(drv, self._dev)
        self.source = source or os.environ.get("SREXPORT_KERNELS", "auto")
        self._modules: dict[str, Any] = {}
        self._functions: dict[str, Any] = {}
        self._scratch: dict[int, tuple[int, int]] = {}  # stream -> (offsets buffer, capacity bytes)
        self._lock = threading.Lock()
        self.loaded_from: dict[str, str] = {}

    # modules
    def _image(self, name: str) -> tuple[bytes, str]:
        major, minor = self.capability
        if self.source not in ("auto", "nvcc", "nvrtc"):
            raise CudaUnavailable(f"SREXPORT_KERNELS must be auto, nvcc or nvrtc, not '{self.source}'")
        problems = []
        shipped = os.environ.get("SREXPORT_FATBIN_DIR")
        if self.source == "auto" and shipped:
            path = Path(shipped) / f"{Path(name).stem}.fatbin"
            if path.is_file():
                return path.read_bytes(), f"fatbin {path}"
            problems.append(f"no {path}")
        if self.source in ("auto", "nvcc"):
            if nvcc_path() is None:
                problems.append("no nvcc")
            else:
                try:
                    build = compile_cuda(name)
                    return build.fatbin.read_bytes(), f"nvcc fatbin {build.fatbin.name}"
                except KernelBuildError as exc:
                    if self.source == "nvcc":
                        raise
                    problems.append(str(exc).splitlines()[0])
            if self.source == "nvcc":
                raise CudaUnavailable("SREXPORT_KERNELS=nvcc but nvcc is not installed")
        try:
            image = nvrtc_compile(name, f"sm_{major}{minor}")
        except CudaUnavailable as exc:
            raise CudaUnavailable(f"cannot load the kernels: {'; '.join(problems + [str(exc)])}") from None
        return image, f"NVRTC {'.'.join(map(str, nvrtc_version()))} cubin sm_{major}{minor}"

    def function(self, kernel: str):
        with self._lock:
            fn = self._functions.get(kernel)
            if fn is not None:
                return fn
            name = KERNELS[kernel]
            if name not in self._modules:
                image, origin = self._image(name)
                self._set_current()
                self._modules[name] = _check(self._drv.cuModuleLoadData(image), f"cuModuleLoadData({name})")
                self.loaded_from[name] = origin
            fn = _check(self._drv.cuModuleGetFunction(self._modules[name], kernel.encode()), f"cuModuleGetFunction({kernel})")
            self._functions[kernel] = fn
            return fn

    def _set_current(self) -> None:
        _check(self._drv.cuCtxSetCurrent(self._ctx), "cuCtxSetCurrent")

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], args: Sequence[ctypes._SimpleCData],
               stream: Any = 0, shared_bytes: int = 0) -> None:
        """cuLaunchKernel with `args` given as ctypes values (c_void_p for pointers)."""
        fn = self.function(kernel)
        if min(grid) < 1:
            return
        self._set_current()
        pointers = (ctypes.c_void_p * len(args))(*(ctypes.addressof(a) for a in args))
        _check(self._drv.cuLaunchKernel(fn, *map(int, grid), *map(int, block), shared_bytes,
                                        self._drv.CUstream(_stream_handle(stream)), ctypes.addressof(pointers), 0),
               f"launch of {kernel}")

    # memory helpers (tests, GpuBlender)
    def alloc(self, nbytes: int) -> int:
        self._set_current()
        return int(_check(self._drv.cuMemAlloc(max(1, int(nbytes))), "cuMemAlloc"))

    def free(self, ptr: int) -> None:
        if ptr:
            self._set_current()
            _check(self._drv.cuMemFree(self._drv.CUdeviceptr(int(ptr))), "cuMemFree")

    def upload(self, array: np.ndarray, ptr: int | None = None, stream: Any = 0) -> int:
        array = np.ascontiguousarray(array)
        ptr = self.alloc(array.nbytes) if ptr is None else int(ptr)
        self._set_current()
        _check(self._drv.cuMemcpyHtoDAsync(self._drv.CUdeviceptr(ptr), array.ctypes.data, array.nbytes,
                                           self._drv.CUstream(_stream_handle(stream))), "cuMemcpyHtoDAsync")
        self.synchronize(stream)
        return ptr

    def download(self, ptr: Any, shape, dtype, stream: Any = 0) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        self.synchronize(stream)
        self._set_current()
        _check(self._drv.cuMemcpyDtoH(out.ctypes.data, self._drv.CUdeviceptr(device_pointer(ptr)), out.nbytes),
               "cuMemcpyDtoH")
        return out

    def zero(self, ptr: Any, nbytes: int, stream: Any = 0) -> None:
        self._set_current()
        _check(self._drv.cuMemsetD8Async(self._drv.CUdeviceptr(device_pointer(ptr)), 0, int(nbytes),
                                         self._drv.CUstream(_stream_handle(stream))), "cuMemsetD8Async")

    def synchronize(self, stream: Any = 0) -> None:
        self._set_current()
        handle = _stream_handle(stream)
        if handle:
            _check(self._drv.cuStreamSynchronize(self._drv.CUstream(handle)), "cuStreamSynchronize")
        else:
            _check(self._drv.cuCtxSynchronize(), "cuCtxSynchronize")

    def _offsets_buffer(self, stream: Any, nbytes: int) -> int:
        key = _stream_handle(stream)
        buf, cap = self._scratch.get(key, (0, 0))
        if cap < nbytes:
            if buf:
                self.synchronize(stream)
                self.free(buf)
            cap = max(nbytes, launch.BLEND_MAX_BATCH * 8)
            buf = self.alloc(cap)
            self._scratch[key] = (buf, cap)
        return buf

    # launch wrappers
    def blend_accumulate(self, patches: Any, offsets, batch: int, channels: int, patch_h: int, patch_w: int,
                         canvas: Any, weight: Any, height: int, width: int, wy: Any, wx: Any, *,
                         dtype="float32", stream: Any = 0) -> None:
        """Add `batch` NCHW patches (float32/float16 at `patches`) times outer(wy, wx) into the
        float32 canvas (channels x height x width) and weight (height x width) planes.
        `offsets`: host (top, left) per patch; patches may hang over the canvas edges."""
        suffix = launch.kernel_suffix(dtype, launch.PATCH_DTYPES)
        launch.check_blend_shapes(channels, height, width, patch_h, patch_w, patch_h, patch_w)
        offsets = launch.check_offsets(offsets, batch)
        itemsize = 4 if suffix == "f32" else 2
        patch_bytes = channels * patch_h * patch_w * itemsize
        base = device_pointer(patches)
        scratch = self._offsets_buffer(stream, offsets.nbytes)
        self._set_current()
        _check(self._drv.cuMemcpyHtoDAsync(self._drv.CUdeviceptr(scratch), offsets.ctypes.data, offsets.nbytes,
                                           self._drv.CUstream(_stream_handle(stream))), "cuMemcpyHtoDAsync(offsets)")
        for start, stop in launch.blend_chunks(batch):
            box = launch.blend_bbox(offsets[start:stop], patch_h, patch_w, height, width)
            if box is None:
                continue
            y0, x0, bh, bw = box
            args = [
                ctypes.c_void_p(base + start * patch_bytes), ctypes.c_int(stop - start), ctypes.c_int(channels),
                ctypes.c_int(patch_h), ctypes.c_int(patch_w), ctypes.c_void_p(scratch + start * 8),
                ctypes.c_void_p(device_pointer(wy)), ctypes.c_void_p(device_pointer(wx)),
                ctypes.c_void_p(device_pointer(canvas)), ctypes.c_void_p(device_pointer(weight)),
                ctypes.c_int(height), ctypes.c_int(width), ctypes.c_int(y0), ctypes.c_int(x0),
            ]
            self.launch(f"srx_blend_accumulate_{suffix}", launch.blend_grid(bh, bw), launch.BLEND_BLOCK, args, stream)

    def blend_finalize(self, canvas: Any, weight: Any, channels: int, height: int, width: int, out: Any,
                       top: int = 0, left: int = 0, out_h: int | None = None, out_w: int | None = None, *,
                       dtype="uint8", stream: Any = 0) -> None:
        """canvas / weight over the region -> interleaved HWC at `out` (uint8/uint16:
        round(clamp(v, 0, 1) * peak); float32: unclamped)."""
        out_h = height - top if out_h is None else out_h
        out_w = width - left if out_w is None else out_w
        launch.check_region(height, width, top, left, out_h, out_w)
        suffix = launch.kernel_suffix(dtype, launch.OUTPUT_DTYPES)
        args = [
            ctypes.c_void_p(device_pointer(canvas)), ctypes.c_void_p(device_pointer(weight)), ctypes.c_int(channels),
            ctypes.c_int(height), ctypes.c_int(width), ctypes.c_int(top), ctypes.c_int(left), ctypes.c_int(out_h),
            ctypes.c_int(out_w), ctypes.c_void_p(device_pointer(out)),
        ]
        self.launch(f"srx_blend_finalize_{suffix}", launch.finalize_grid(out_h, out_w), launch.FINALIZE_BLOCK, args,
                    stream)

    def vnsc(self, rgb: Any, out: Any, n: int, h: int, w: int, *, dtype="float32", stream: Any = 0) -> None:
        """VN+SC of (n, 3, h, w) float32/float16 RGB at `rgb` into (n, 49, h, w) at `out`."""
        suffix = launch.kernel_suffix(dtype, launch.PATCH_DTYPES)
        if min(n, h, w) < 1:
            raise launch.KernelArgumentError(f"empty VN+SC input ({n}, 3, {h}, {w})")
        args = [ctypes.c_void_p(device_pointer(rgb)), ctypes.c_int(n), ctypes.c_int(h), ctypes.c_int(w),
                ctypes.c_void_p(device_pointer(out))]
        self.launch(f"srx_vnsc_{suffix}", launch.vnsc_grid(n, h, w), launch.VNSC_BLOCK, args, stream)


_kernels: dict[int, Kernels] = {}
_kernels_lock = threading.Lock()


def kernels(device: int = 0) -> Kernels:
    """The process-wide `Kernels` of a device (created on first use)."""
    with _kernels_lock:
        k = _kernels.get(device)
        if k is None:
            k = _kernels[device] = Kernels(device)
        return k


def blend_accumulate(patches, offsets, batch, channels, patch_h, patch_w, canvas, weight, height, width, wy, wx, *,
                     dtype="float32", stream=0, device: int = 0) -> None:
    kernels(device).blend_accumulate(patches, offsets, batch, channels, patch_h, patch_w, canvas, weight, height,
                                     width, wy, wx, dtype=dtype, stream=stream)


def blend_finalize(canvas, weight, channels, height, width, out, top=0, left=0, out_h=None, out_w=None, *,
                   dtype="uint8", stream=0, device: int = 0) -> None:
    kernels(device).blend_finalize(canvas, weight, channels, height, width, out, top, left, out_h, out_w,
                                   dtype=dtype, stream=stream)


def vnsc(rgb, out, n, h, w, *, dtype="float32", stream=0, device: int = 0) -> None:
    kernels(device).vnsc(rgb, out, n, h, w, dtype=dtype, stream=stream)


class GpuBlender:
    """GPU twin of srexport.runtime.blend.Blender: canvas and weight planes in device memory.

    `add_batch(patches_ptr, offsets, patch_h, patch_w, dtype)` takes a device batch (e.g.
    a TensorRT output binding); `finalize(...)` writes HWC uint8/uint16/float32 into a
    device buffer, `download(...)` returns it as a NumPy array."""

    def __init__(self, channels: int, height: int, width: int, wy: np.ndarray, wx: np.ndarray, *,
                 stream: Any = 0, device: int = 0):
        self.k = kernels(device)
        self.channels, self.height, self.width = channels, height, width
        self.stream = stream
        wy = np.ascontiguousarray(wy, np.float32).ravel()
        wx = np.ascontiguousarray(wx, np.float32).ravel()
        launch.check_blend_shapes(channels, height, width, wy.size, wx.size, wy.size, wx.size)
        self.patch_h, self.patch_w = wy.size, wx.size
        self.canvas = self.k.alloc(channels * height * width * 4)
        self.weight = self.k.alloc(height * width * 4)
        self.wy = self.k.upload(wy, stream=stream)
        self.wx = self.k.upload(wx, stream=stream)
        self.reset()

    def reset(self) -> None:
        self.k.zero(self.canvas, self.channels * self.height * self.width * 4, self.stream)
        self.k.zero(self.weight, self.height * self.width * 4, self.stream)

    def add_batch(self, patches: Any, offsets, dtype="float32", window: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """`window` (wy, wx) replaces the blender's own for this batch (crop stitching's box
        weights); each distinct window is uploaded once and kept until `close`."""
        offsets = launch.check_offsets(offsets)
        wy, wx = self.wy, self.wx
        if window is not None:
            wy, wx = self._window(*window)
        self.k.blend_accumulate(patches, offsets, offsets.shape[0], self.channels, self.patch_h, self.patch_w,
                                self.canvas, self.weight, self.height, self.width, wy, wx, dtype=dtype,
                                stream=self.stream)

    def _window(self, wy: np.ndarray, wx: np.ndarray) -> tuple[Any, Any]:
        wy = np.ascontiguousarray(wy, np.float32).ravel()
        wx = np.ascontiguousarray(wx, np.float32).ravel()
        launch.check_blend_shapes(self.channels, self.height, self.width, self.patch_h, self.patch_w, wy.size, wx.size)
        cache = self.__dict__.setdefault("_windows", {})
        pointers = []
        for vector in (wy, wx):
            key = vector.tobytes()
            if key not in cache:
                cache[key] = self.k.upload(vector, stream=self.stream)
            pointers.append(cache[key])
        return pointers[0], pointers[1]

    def finalize(self, out: Any, top=0, left=0, height=None, width=None, dtype="uint8") -> None:
        self.k.blend_finalize(self.canvas, self.weight, self.channels, self.height, self.width, out, top, left,
                              height, width, dtype=dtype, stream=self.stream)

    def download(self, top=0, left=0, height=None, width=None, dtype=np.uint8) -> np.ndarray:
        height = self.height - top if height is None else height
        width = self.width - left if width is None else width
        out = self.k.alloc(height * width * self.channels * np.dtype(dtype).itemsize)
        try:
            self.finalize(out, top, left, height, width, dtype)
            return self.k.download(out, (height, width, self.channels), dtype, self.stream)
        finally:
            self.k.free(out)

    def close(self) -> None:
        self.k.synchronize(self.stream)
        for name in ("canvas", "weight", "wy", "wx"):
            ptr = getattr(self, name, 0)
            if ptr:
                self.k.free(ptr)
                setattr(self, name, 0)
        for ptr in self.__dict__.pop("_windows", {}).values():
            self.k.free(ptr)

    def __enter__(self) -> "GpuBlender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
