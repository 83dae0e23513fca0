"""The one place that imports the optional dependencies, lazily, each with a clear message.

Importing `srexport` (or any module of it) never imports tensorrt, cuda-python, openvino,
ray, tritonclient or matplotlib: they are extras (`pip install "sr-export[tensorrt]"`,
`[openvino]`, `[ray]`, `[triton]`, `[plot]`). A missing GPU package raises an
`EngineUnavailable` subclass (`srexport.errors`) whose message says what is missing and how
to get it, so callers can fall back to ONNX Runtime with that message; a missing CPU-side
package raises `DependencyMissing`.

Names used for the imported modules throughout the code base (the API conformance test
relies on them): `trt` = tensorrt, `trtp` = tensorrt.plugin, `cudart` =
cuda.bindings.runtime, `drv` = cuda.bindings.driver.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType
from typing import Callable

from srexport.errors import (
    CudaError,
    CudaUnavailable,
    DependencyMissing,
    EngineUnavailable,
    SrExportError,
    TensorRTUnavailable,
)

__all__ = [
    "CudaError", "CudaUnavailable", "EngineUnavailable", "TensorRTUnavailable", "MIN_TENSORRT", "EXTRA_HINT",
    "OPENVINO_HINT", "RAY_HINT", "TRITON_HINT", "version_tuple", "import_tensorrt", "import_tensorrt_plugin",
    "import_cudart", "import_cuda_driver", "import_nvrtc", "cuda_runtime_or_none", "import_openvino", "import_ray",
    "import_tritonclient", "import_pyplot", "tensorrt_version", "reset_cache", "error_name", "check", "driver_check",
]

MIN_TENSORRT = (11, 0)
EXTRA_HINT = 'pip install "sr-export[tensorrt]"'
OPENVINO_HINT = "pip install 'sr-export[openvino]' (or: pip install openvino)"
RAY_HINT = "pip install 'sr-export[ray]'"
TRITON_HINT = "pip install 'sr-export[triton]'"

_lock = threading.Lock()
_cache: dict[str, ModuleType | SrExportError] = {}


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


def import_tensorrt_plugin() -> tuple[ModuleType, ModuleType]:
    """(`tensorrt`, `tensorrt.plugin`), or raise `TensorRTUnavailable`. Not cached: the
    plugin registers once per process anyway."""
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
    except ImportError as exc:
        raise TensorRTUnavailable(f"TensorRT with tensorrt.plugin is not installed: {exc}") from None
    return trt, trtp


def _import_or_raise(modules: tuple[str, ...], error: Callable[[ImportError], SrExportError]) -> ModuleType:
    """Import `modules` in order and return the first; a missing one raises `error(exc)`."""
    try:
        imported = [importlib.import_module(name) for name in modules]
    except ImportError as exc:
        raise error(exc) from None
    return imported[0]


def _cuda_python_missing(exc: ImportError) -> CudaUnavailable:
    return CudaUnavailable(f"cuda-python is not installed (pip install cuda-python): {exc}")


def import_cuda_driver() -> ModuleType:
    """`cuda.bindings.driver` (cuda-python), or raise `CudaUnavailable`."""
    return _import_or_raise(("cuda.bindings.driver",), _cuda_python_missing)


def import_nvrtc() -> ModuleType:
    """`cuda.bindings.nvrtc` (cuda-python), or raise `CudaUnavailable`."""
    return _import_or_raise(("cuda.bindings.nvrtc",), _cuda_python_missing)


def cuda_runtime_or_none() -> ModuleType | None:
    """cuda-python's runtime module (`cuda.bindings.runtime`, or the older `cuda.cudart`),
    or None when cuda-python is not installed. Never raises; not cached."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except Exception:
            continue
    return None


def import_openvino() -> ModuleType:
    """The `openvino` module, or a one-line `DependencyMissing` saying how to install it."""
    return _import_or_raise(("openvino",), lambda exc: DependencyMissing(
        f"the openvino backend needs the openvino package: {OPENVINO_HINT}"))


def import_ray() -> ModuleType:
    """The `ray` module with Ray Data (which ships in the `ray[data]` extra), or one clear
    `DependencyMissing`."""
    return _import_or_raise(("ray", "ray.data"), lambda exc: DependencyMissing(
        f"--ray needs Ray Data ({exc.name} is not installed): {RAY_HINT}"))


def import_tritonclient(protocol: str = "grpc") -> ModuleType:
    """tritonclient.grpc or tritonclient.http, or one clear `DependencyMissing`."""
    if protocol not in ("grpc", "http"):
        raise SrExportError(f"unknown Triton protocol '{protocol}' (grpc or http)")
    try:
        module = importlib.import_module(f"tritonclient.{protocol}")
    except (ImportError, RuntimeError) as exc:  # tritonclient raises RuntimeError for a missing extra
        raise DependencyMissing(f"Triton {protocol} client unavailable ({exc}): {TRITON_HINT} "
                                f"or pip install 'tritonclient[{protocol}]'") from None
    return module


def import_pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg (file-only) backend, or one clear `DependencyMissing`."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise DependencyMissing(
            "--plot needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'sr-export[plot]')"
        ) from None
    return plt


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


def driver_check(result, what: str = "CUDA call"):
    """Unpack a cuda-python driver/NVRTC `(error, *values)` result; raise `CudaError` on failure."""
    if isinstance(result, tuple):
        err, values = result[0], result[1:]
    else:
        err, values = result, ()
    if int(err) != 0:
        name = getattr(err, "name", str(err))
        try:
            from cuda.bindings import driver

            if isinstance(err, driver.CUresult):
                e2, text = driver.cuGetErrorString(err)
                if int(e2) == 0 and text:
                    name = f"{name}: {text.decode() if isinstance(text, bytes) else text}"
        except Exception:  # pragma: no cover - diagnostics only
            pass
        raise CudaError(f"{what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values
