"""TensorRT backend: a bundle's engine on an NVIDIA GPU, driven through cuda-python.

`TrtSession(bundle, precision)` finds the engine whose key (keys.py) matches this GPU,
this TensorRT and the bundle's graph, in the bundle's engines/ or the user cache
(`$SREXPORT_CACHE`, default ~/.cache/sr-export/engines). Without one it builds it (a few
minutes, said on the log) into the bundle when writable, else the cache; `build=False`
makes that an `EngineUnavailable` instead. Every "cannot run here" (no TensorRT, no
driver, no GPU, no engine, failed build) is an `EngineUnavailable` with the reason, which
`open_session("auto")` turns into a fallback to ONNX Runtime.

Running: per patch shape, device buffers and pinned host buffers are allocated once (for
the profile's largest batch) and reused. A batch is split over two execution contexts,
each with its own CUDA stream, so the upload of one half overlaps the compute of the
other and the download of the first overlaps the compute of the second; the host copies
into pinned memory overlap the GPU work too. Inputs are converted to the engine's I/O
types (an FP16 graph may take float16) and outputs come back as float32.

For blending on the GPU, `run_to_device` leaves the output batch in device memory and
`device_blender` gives a `srexport.kernels.cuda.GpuBlender` on the same stream (None, with
the reason logged, where the custom kernels cannot run: blend with NumPy then):

    blender = session.device_blender(3, H, W, wy, wx)
    out = session.run_to_device(inputs)
    blender.add_batch(out.pointer, [(s * top, s * left) for top, left in tiles], dtype=out.dtype)
    image = blender.download(0, 0, h, w, dtype=np.float32).transpose(2, 0, 1)
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import ShapeError, SrExportError
from srexport.tensorrt.keys import ENGINE_DIR
from srexport.lazy import CudaError, EngineUnavailable, check, import_cudart
from srexport.runtime.backends.base import Session
from srexport.tensorrt.profiles import PatchProfile, auto_profile, default_max_batch, profile_for_manifest

__all__ = ["DeviceBatch", "EngineUnavailable", "TrtSession", "engine_directories", "user_engine_cache"]

_log = logging.getLogger("srexport.tensorrt")
SHAPES_KEPT = 4  # patch shapes whose buffers stay allocated per stream
STREAMS = 2


def user_engine_cache() -> Path:
    root = os.environ.get("SREXPORT_CACHE") or Path.home() / ".cache" / "sr-export"
    return Path(root) / "engines"


def engine_directories(bundle: Bundle) -> list[Path]:
    """Where engines are looked for: the bundle's engines/, then the user cache."""
    return [bundle.root / ENGINE_DIR, user_engine_cache()]


def _writable_engine_dir(bundle: Bundle) -> Path | None:
    for directory in engine_directories(bundle):
        probe = directory if directory.exists() else directory.parent
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if os.access(probe, os.W_OK):
            return directory
    return None


@dataclass(frozen=True)
class DeviceBatch:
    """An output batch left in device memory (valid until the session's next call)."""

    pointer: int
    shape: tuple[int, ...]
    dtype: str  # "float32" or "float16"
    stream: int  # the CUDA stream the result is (being) produced on


class _Host:
    """Pinned (page-locked) host memory with a NumPy view."""

    def __init__(self, cudart, nbytes: int, dtype: np.dtype):
        self.cudart = cudart
        self.nbytes = nbytes
        self.ptr = int(check(cudart, cudart.cudaMallocHost(nbytes), "cudaMallocHost"))
        raw = (ctypes.c_ubyte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=np.uint8).view(dtype)

    def free(self) -> None:
        if self.ptr:
            self.array = None
            check(self.cudart, self.cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


class _Buffers:
    """Device + pinned host buffers of every I/O tensor for one patch shape."""

    def __init__(self, cudart, specs: dict[str, tuple[tuple[int, ...], np.dtype]]):
        self.cudart = cudart
        self.device: dict[str, int] = {}
        self.host: dict[str, _Host] = {}
        self.capacity: dict[str, tuple[int, ...]] = {}
        try:
            for name, (shape, dtype) in specs.items():
                nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
                self.device[name] = int(check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc"))
                self.host[name] = _Host(cudart, nbytes, np.dtype(dtype))
                self.capacity[name] = shape
        except BaseException:
            self.free()
            raise

    def free(self) -> None:
        for ptr in self.device.values():
            check(self.cudart, self.cudart.cudaFree(ptr), "cudaFree")
        for host in self.host.values():
            host.free()
        self.device, self.host = {}, {}


class _Slot:
    """One execution context on its own stream, with buffers per patch shape."""

    def __init__(self, cudart, engine):
        self.cudart = cudart
        self.context = engine.create_execution_context()
        if self.context is None:
            raise CudaError("TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = check(cudart, cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking),
                            "cudaStreamCreateWithFlags")
        self.handle = int(self.stream)
        self.buffers: OrderedDict[tuple[int, int], _Buffers] = OrderedDict()
        self.pending: tuple | None = None

    def synchronize(self) -> None:
        check(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self.stream is not None:
            try:
                self.synchronize()
            finally:
                for buffers in self.buffers.values():
                    buffers.free()
                self.buffers.clear()
                check(self.cudart, self.cudart.cudaStreamDestroy(self.stream), "cudaStreamDestroy")
                self.stream = None
                self.context = None


class TrtSession(Session):
    """A bundle graph as a TensorRT engine on GPU `gpu_index` (see the module docstring)."""

    name = "tensorrt"
    device = "cuda"

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        threads: int = 0,
        *,
        patch: tuple[int, int] | int | str | None = None,
        batch: int | None = None,
        memory: float | None = None,
        build: bool = True,
        opt_level: int = 3,
        gpu_index: int = 0,
        streams: int = STREAMS,
        log: Callable[[str], None] | None = None,
        reason: str = "",
        precision_reason: str = "",
    ):
        from srexport.tensorrt.builder import engine_environment

        super().__init__(precision, reason=reason, precision_reason=precision_reason)
        self.bundle = bundle
        self.threads = threads
        self._log = log or _log.warning
        self._build = build
        self._opt_level = opt_level
        self._lock = threading.Lock()
        self._slots: list[_Slot] = []
        self.trt, self.gpu = engine_environment(gpu_index)  # EngineUnavailable when either is missing
        self.cudart = import_cudart()
        bundle.graph_path(precision)  # BundleError when the bundle has no such graph
        check(self.cudart, self.cudart.cudaSetDevice(self.gpu.index), "cudaSetDevice")
        manifest = bundle.manifest
        if patch == "auto" and manifest.shape_rules.halo is not None:
            # patch auto: one engine for every patch the budget may choose (profiles.auto_profile)
            from srexport.runtime.budget import default_budget, memory_model

            self.profile = auto_profile(manifest.stitching_rules, manifest.patch, memory_model(bundle, precision, self.name),
                                        default_budget("cuda", memory).bytes, batch or 1)
        else:
            edge = manifest.patch
            if patch is not None and patch != "auto":
                edge = max(edge, max(patch) if isinstance(patch, tuple) else int(patch))
            edge = manifest.shape_rules.legal_at_least(edge)
            # the default batch limit unless the caller runs bigger batches: `sr-export build`
            # makes engines with the defaults, so they serve here
            wanted_batch = batch if batch and batch > default_max_batch(edge) else None
            self.profile = profile_for_manifest(manifest, edge, wanted_batch)
        self._streams = max(1, int(streams))
        self._load(self.profile)

    @property
    def max_patch_edge(self) -> int:
        """The largest patch edge the loaded engine accepts (patch auto tiles within it)."""
        return self.profile.max_edge

    @property
    def backend_note(self) -> str:
        """Which engine runs, on which GPU and TensorRT."""
        return self.engine_note

    # -- engine ------------------------------------------------------------------------
    def _load(self, profile: PatchProfile) -> None:
        from srexport.tensorrt.builder import ensure_engine

        trt = self.trt
        write_dir = _writable_engine_dir(self.bundle) if self._build else None
        path, note = ensure_engine(trt, self.gpu, self.bundle.root, self.bundle.manifest, self.precision, profile,
                                   engine_directories(self.bundle), write_dir, self._opt_level, self._log)
        self._trt_logger = trt.Logger(trt.Logger.WARNING)  # must outlive the runtime and engine
        runtime = trt.Runtime(self._trt_logger)
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise EngineUnavailable(
                f"TensorRT could not load {path} (damaged, or built by another TensorRT); delete it to rebuild"
            )
        self._close_slots()
        self._runtime, self.engine, self.engine_path = runtime, engine, path
        self.engine_note = f"{note} on {self.gpu.name} ({self.gpu.sm}), TensorRT {trt.__version__}"
        self._providers = [f"TensorRT {trt.__version__}", path.name]
        self.input_names, self.output_names = [], []
        self._dtypes: dict[str, np.dtype] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.input_names if is_input else self.output_names).append(name)
            self._dtypes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        if len(self.output_names) != 1:
            raise EngineUnavailable(f"{path.name} has {len(self.output_names)} outputs; sr-export graphs have one")
        low, opt, high = engine.get_tensor_profile_shape(self.input_names[0], 0)
        self.profile = PatchProfile(int(low[0]), int(opt[0]), int(high[0]), int(low[2]), int(opt[2]), int(high[2]))
        slots = []
        try:
            for _ in range(self._streams):
                slots.append(_Slot(self.cudart, engine))
        except CudaError:
            if not slots:
                raise
            self._log("not enough GPU memory for a second TensorRT context: running on one stream")
        self._slots = slots

    def _grow(self, height: int, width: int) -> None:
        edge = max(height, width)
        if not self._build:
            raise ShapeError(
                f"patch {height}x{width} exceeds the TensorRT engine's largest patch ({self.profile.max_edge}); "
                f"run with --patch {self.profile.max_edge} or smaller, or rebuild with `sr-export build --max-patch {edge}`"
            )
        self._log(f"patch {height}x{width} exceeds the engine's largest ({self.profile.max_edge}): "
                  "switching to an engine for larger patches")
        self._load(profile_for_manifest(self.bundle.manifest, edge))

    # -- buffers -----------------------------------------------------------------------
    def _buffers(self, slot: _Slot, shapes: dict[str, tuple[int, ...]]) -> _Buffers:
        image = shapes[self.input_names[0]]
        key = (image[2], image[3])
        found = slot.buffers.get(key)
        if found is not None:
            slot.buffers.move_to_end(key)
            return found
        cap = self.profile.max_batch
        specs = {}
        for name in self.input_names:
            shape = (cap, *shapes[name][1:])
            slot.context.set_input_shape(name, shape)
            specs[name] = (shape, self._dtypes[name])
        for name in self.output_names:
            specs[name] = (tuple(slot.context.get_tensor_shape(name)), self._dtypes[name])
        if len(slot.buffers) >= SHAPES_KEPT:
            slot.synchronize()
            _, old = slot.buffers.popitem(last=False)
            old.free()
        buffers = _Buffers(self.cudart, specs)
        slot.buffers[key] = buffers
        return buffers

    # -- running -----------------------------------------------------------------------
    def _check_inputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise ShapeError(f"missing graph inputs: {', '.join(missing)}")
        arrays = {n: np.asarray(inputs[n]) for n in self.input_names}
        n, _, h, w = arrays[self.input_names[0]].shape
        if h < self.profile.min_edge or w < self.profile.min_edge:
            raise ShapeError(f"patch {h}x{w} is smaller than the engine's smallest ({self.profile.min_edge})")
        if h > self.profile.max_edge or w > self.profile.max_edge:
            self._grow(h, w)
        return arrays

    def _enqueue(self, slot: _Slot, arrays: dict[str, np.ndarray], start: int, stop: int) -> tuple:
        cudart, count = self.cudart, stop - start
        shapes = {name: (count, *arrays[name].shape[1:]) for name in self.input_names}
        buffers = self._buffers(slot, shapes)
        context = slot.context
        for name in self.input_names:
            host = buffers.host[name].array
            size = int(np.prod(shapes[name]))
            np.copyto(host[:size].reshape(shapes[name]), arrays[name][start:stop], casting="unsafe")
            nbytes = size * host.itemsize
            check(cudart, cudart.cudaMemcpyAsync(buffers.device[name], buffers.host[name].ptr, nbytes,
                                                 cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, slot.stream),
                  "cudaMemcpyAsync (upload)")
            if not context.set_input_shape(name, shapes[name]):
                raise ShapeError(f"TensorRT rejected the shape {shapes[name]} for input '{name}'")
            context.set_tensor_address(name, buffers.device[name])
        out = self.output_names[0]
        out_shape = tuple(context.get_tensor_shape(out))
        context.set_tensor_address(out, buffers.device[out])
        if not context.execute_async_v3(slot.handle):
            raise CudaError(f"TensorRT failed to run {self.engine_path.name} on a batch of {shapes}")
        return buffers, out_shape

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self._lock:
            arrays = self._check_inputs(inputs)
            total = arrays[self.input_names[0]].shape[0]
            chunk = min(self.profile.max_batch, max(1, math.ceil(total / len(self._slots))))
            result: np.ndarray | None = None
            out = self.output_names[0]
            for index, start in enumerate(range(0, total, chunk)):
                slot = self._slots[index % len(self._slots)]
                if slot.pending is not None:
                    result = self._collect(slot, result, total)
                stop = min(start + chunk, total)
                buffers, out_shape = self._enqueue(slot, arrays, start, stop)
                host = buffers.host[out]
                size = int(np.prod(out_shape))
                check(self.cudart, self.cudart.cudaMemcpyAsync(host.ptr, buffers.device[out], size * host.array.itemsize,
                                                               self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                                               slot.stream), "cudaMemcpyAsync (download)")
                slot.pending = (start, stop, out_shape, host)
            for slot in self._slots:
                if slot.pending is not None:
                    result = self._collect(slot, result, total)
            return result

    def _collect(self, slot: _Slot, result: np.ndarray | None, total: int) -> np.ndarray:
        start, stop, shape, host = slot.pending
        slot.pending = None
        slot.synchronize()
        if result is None:
            result = np.empty((total, *shape[1:]), dtype=np.float32)
        result[start:stop] = host.array[: int(np.prod(shape))].reshape(shape)
        return result

    def run_to_device(self, inputs: dict[str, np.ndarray]) -> DeviceBatch:
        """Like `run`, but leave the output on the GPU: valid until the next call, on
        `stream_handle` (work enqueued on that stream after this call, such as blending,
        runs after the engine; the next call waits for it before reusing the buffers)."""
        self._require_open()
        with self._lock:
            arrays = self._check_inputs(inputs)
            total = arrays[self.input_names[0]].shape[0]
            if total > self.profile.max_batch:
                raise ShapeError(f"batch {total} exceeds the engine's largest ({self.profile.max_batch})")
            slot = self._slots[0]
            slot.synchronize()  # the previous upload may still read the pinned inputs
            buffers, out_shape = self._enqueue(slot, arrays, 0, total)
            out = self.output_names[0]
            return DeviceBatch(buffers.device[out], out_shape, np.dtype(self._dtypes[out]).name, slot.handle)

    @property
    def stream_handle(self) -> int:
        """The CUDA stream `run_to_device` works on (an int handle)."""
        return self._slots[0].handle

    def device_blender(self, channels: int, height: int, width: int, wy: np.ndarray, wx: np.ndarray):
        """A `srexport.kernels.cuda.GpuBlender` on this session's stream and GPU, or None
        (blend with NumPy) when the custom kernels cannot run here; the reason is logged."""
        try:
            from srexport.kernels.cuda import GpuBlender
        except ImportError as exc:
            self._log(f"blending on the CPU: the CUDA kernels are not available ({exc})")
            return None
        try:
            return GpuBlender(channels, height, width, wy, wx, stream=self.stream_handle, device=self.gpu.index)
        except SrExportError as exc:
            self._log(f"blending on the CPU: {exc}")
            return None

    # -- teardown ----------------------------------------------------------------------
    def _close_slots(self) -> None:
        slots, self._slots = self._slots, []
        for slot in slots:
            slot.close()

    def _release(self) -> None:
        """Free the GPU buffers, streams and contexts (also done when garbage-collected)."""
        with self._lock:
            self._close_slots()
            self.engine = None
            self._runtime = None

    def __del__(self) -> None:
        try:
            self._close_slots()
        except Exception:  # interpreter shutdown: the CUDA bindings may already be gone
            pass
