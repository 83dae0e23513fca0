"""The one place that imports TensorRT and cuda-python, lazily, with a clear message.

Importing `srexport` (or any module of this package) never imports either: they are the
optional extra `pip install "sr-export[tensorrt]"`. Every failure is an `EngineUnavailable`
subclass whose message says what is missing and how to get it, so callers can fall back
to ONNX Runtime with that message.

Names used for the imported modules throughout the code base (the API conformance test
relies on them): `trt` = tensorrt, `trtp` = tensorrt.plugin, `cudart` =
cuda.bindings.runtime.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

from srexport.errors import SrExportError

MIN_TENSORRT = (11, 0)
EXTRA_HINT = 'pip install "sr-export[tensorrt]"'

_lock = threading.Lock()
_cache: dict[str, ModuleType | SrExportError] = {}


class EngineUnavailable(SrExportError):
    """No TensorRT engine can run here (missing library, GPU, engine, or a failed build)."""


class TensorRTUnavailable(EngineUnavailable):
    """The TensorRT Python package or its native libraries are missing or too old."""


class CudaUnavailable(EngineUnavailable):
    """cuda-python, the NVIDIA driver or a GPU is missing."""


class CudaError(SrExportError):
    """A CUDA runtime call failed on a machine that has a GPU."""


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in str(text).split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _import_tensorrt_module() -> ModuleType:
    """`tensorrt` (the full wheel or NVIDIA's tarball wheel), else the standalone
    `tensorrt_bindings` (the tensorrt-cu13-bindings wheel with the libraries installed
    system-wide). The latter is registered as `tensorrt` too: its own `tensorrt.plugin`
    subpackage imports it under that name."""
    try:
        return importlib.import_module("tensorrt")
    except ModuleNotFoundError as exc:
        if exc.name != "tensorrt":
            raise
    module = importlib.import_module("tensorrt_bindings")
    sys.modules.setdefault("tensorrt", module)
    return module


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module (>= 11), or raise `TensorRTUnavailable` saying why."""
    with _lock:
        cached = _cache.get("tensorrt")
        if cached is None:
            cached = _load_tensorrt()
            _cache["tensorrt"] = cached
    if isinstance(cached, SrExportError):
        raise cached
    return cached


def _load_tensorrt() -> ModuleType | SrExportError:
    try:
        trt = _import_tensorrt_module()
    except ModuleNotFoundError:
        return TensorRTUnavailable(f"TensorRT is not installed ({EXTRA_HINT} on a machine with an NVIDIA GPU)")
    except (ImportError, OSError) as exc:
        # The bindings are there but libnvinfer / libnvonnxparser are not.
        return TensorRTUnavailable(f"TensorRT's Python bindings are installed but its libraries are not: {exc}")
    version = str(getattr(trt, "__version__", "0"))
    if version_tuple(version)[:2] < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        return TensorRTUnavailable(
            f"TensorRT {version} is too old: sr-export builds strongly typed engines with TensorRT >= {need}"
        )
    return trt


def import_cudart() -> ModuleType:
    """`cuda.bindings.runtime` (cuda-python), or raise `CudaUnavailable`."""
    with _lock:
        cached = _cache.get("cudart")
        if cached is None:
            try:
                cached = importlib.import_module("cuda.bindings.runtime")
            except ImportError as exc:
                cached = CudaUnavailable(f"cuda-python is not installed ({EXTRA_HINT}): {exc}")
            _cache["cudart"] = cached
    if isinstance(cached, SrExportError):
        raise cached
    return cached


def tensorrt_version() -> str | None:
    """The TensorRT version string, or None when it cannot be imported. Never raises."""
    try:
        return str(import_tensorrt().__version__)
    except SrExportError:
        return None


def reset_cache() -> None:
    """Forget what was imported (tests swap in fakes)."""
    with _lock:
        _cache.clear()


def error_name(cudart: ModuleType, err) -> str:
    """'cudaErrorNoDevice (100): no CUDA-capable device is detected' for a cudaError_t."""
    name = getattr(err, "name", str(err))
    try:
        code, text = cudart.cudaGetErrorString(err)
        if int(code) == 0 and text:
            text = text.decode() if isinstance(text, bytes) else str(text)
            return f"{name} ({int(err)}): {text}"
    except Exception:  # diagnostics only
        pass
    return f"{name} ({int(err)})"


def check(cudart: ModuleType, result, what: str):
    """Unpack a cuda-python `(cudaError_t, *values)` result; raise `CudaError` on failure."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        raise CudaError(f"{what} failed: {error_name(cudart, err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values
