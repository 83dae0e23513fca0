"""The backend factory table: backend name -> its options type and its opener.

An opener takes a `SessionRequest` and returns a `Session` (or raises; GPU-side failures
are `GpuError`s, which `open_session` turns into one line or a fallback). Backend modules
are imported when opened, so listing them here imports no optional package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from srexport.errors import OptionError
from srexport.runtime.backends.base import Session
from srexport.runtime.backends.options import (OPTION_TYPES, BackendOptions, OpenVINOOptions, OrtOptions,
                                               SessionRequest, TensorRTOptions, TorchOptions)


def _open_onnxruntime(request: SessionRequest) -> Session:
    from srexport.runtime.backends.onnxruntime import OrtSession

    options = request.options or OrtOptions()
    return OrtSession(request.bundle, request.precision, request.threads,
                      list(options.providers) if options.providers else None,
                      optimization=options.graph_optimization, streams=options.streams, zero_noise=request.zero_noise,
                      **request.noted())


def _open_openvino(request: SessionRequest) -> Session:
    from srexport.runtime.backends.openvino import OvSession

    options = request.options or OpenVINOOptions()
    return OvSession(request.bundle, request.precision, request.threads, batch=request.batch,
                     cache_dir=options.cache_dir, streams=options.streams, shapes=options.shapes,
                     zero_noise=request.zero_noise, **request.noted())


def _open_tensorrt(request: SessionRequest) -> Session:
    from srexport.runtime.backends.tensorrt import TrtSession

    options = request.options or TensorRTOptions()
    return TrtSession(request.bundle, request.precision, request.threads, patch=request.patch, batch=request.batch,
                      memory=request.memory, build=options.build, opt_level=options.opt_level,
                      gpu_index=options.gpu_index, streams=options.streams, log=request.log, **request.noted())


def _open_torch(request: SessionRequest) -> Session:
    from srexport.runtime.backends.torch import TorchSession

    return TorchSession(request.bundle, request.precision, request.threads, **request.noted())


@dataclass(frozen=True)
class BackendEntry:
    options: type
    open: Callable[[SessionRequest], Session]


BACKEND_TABLE: dict[str, BackendEntry] = {
    "tensorrt": BackendEntry(TensorRTOptions, _open_tensorrt),
    "openvino": BackendEntry(OpenVINOOptions, _open_openvino),
    "onnxruntime": BackendEntry(OrtOptions, _open_onnxruntime),
    "torch": BackendEntry(TorchOptions, _open_torch),
}


def options_by_backend(backend: str, given: BackendOptions | Iterable[BackendOptions] | None,
                       candidates: Iterable[str]) -> dict[str, BackendOptions]:
    """`backend_options` (one options object, or several for "auto") by the backend each
    is for; refused in one line when one is not an options object, is for a backend that
    `backend` cannot open (`candidates`), or repeats a backend."""
    if given is None:
        return {}
    items = [given] if isinstance(given, OPTION_TYPES) else list(given) if isinstance(given, (tuple, list)) else [given]
    allowed = list(candidates)
    found: dict[str, BackendOptions] = {}
    for item in items:
        owner = next((name for name, entry in BACKEND_TABLE.items() if type(item) is entry.options), None)
        if owner is None:
            names = ", ".join(t.__name__ for t in OPTION_TYPES)
            raise OptionError(f"backend_options must be {names} (or several of them for backend auto), "
                              f"got {type(item).__name__}")
        if owner not in allowed:
            wanted = " or ".join(BACKEND_TABLE[name].options.__name__ for name in allowed if name in BACKEND_TABLE)
            raise OptionError(f"{type(item).__name__} are options of the {owner} backend, not of {backend} "
                              f"(pass {wanted})")
        if owner in found:
            raise OptionError(f"backend_options gives {type(item).__name__} twice")
        found[owner] = item
    return found
