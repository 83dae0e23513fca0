"""Backends: each turns a bundle graph into a `Session` that maps a batch to a batch.

The tiler and blender know nothing about backends; comparing backends is a loop.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import SrExportError

BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")


class Session(Protocol):
    name: str
    device: str

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs by graph input name (NCHW float32) -> the output batch (NCHW float32)."""


def open_session(
    bundle: Bundle,
    backend: str = "auto",
    precision: str = "fp32",
    threads: int = 0,
    *,
    patch: tuple[int, int] | int | None = None,
    batch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Session:
    """Open `bundle`'s graph of `precision` on `backend`.

    "auto": TensorRT when TensorRT, a GPU and a matching (or buildable) engine are there,
    else ONNX Runtime. The returned session's `selection_note` says why this backend:
    "requested", "auto: TensorRT not used: <reason>" or "auto: TensorRT and a GPU are
    available; engine <file> ...". `patch`/`batch` (the tiler's, when known) let TensorRT
    pick or build an engine whose profile covers them; `log` receives progress such as
    engine builds (default: the "srexport.tensorrt" logger, warnings reach stderr).
    """
    if backend not in BACKENDS:
        raise SrExportError(f"unknown backend '{backend}' (backends: {', '.join(BACKENDS)})")
    if backend == "torch":
        from srexport.runtime.backends.torch import TorchSession

        return _noted(TorchSession(bundle, precision, threads), "requested")
    if backend == "openvino":
        from srexport.runtime.backends.openvino import OvSession

        return _noted(OvSession(bundle, precision, threads, batch=batch), "requested")
    note = "requested"
    if backend in ("tensorrt", "auto"):
        from srexport.runtime.backends.tensorrt import EngineUnavailable, TrtSession
        from srexport.tensorrt.lazy import CudaError

        try:
            session = TrtSession(bundle, precision, threads, patch=patch, batch=batch, log=log)
        except (EngineUnavailable, CudaError) as exc:
            if backend == "tensorrt":
                raise EngineUnavailable(
                    f"the tensorrt backend cannot run here: {exc} (use --backend onnxruntime or auto)"
                ) from None
            note = f"auto: TensorRT not used: {exc}"
        else:
            why = "requested" if backend == "tensorrt" else "auto: TensorRT and a GPU are available"
            return _noted(session, f"{why}; {session.engine_note}")
    from srexport.runtime.backends.onnxruntime import OrtSession

    return _noted(OrtSession(bundle, precision, threads), note)


def _noted(session, note: str):
    """Record on the session why this backend was chosen (the CLI prints it after the
    backend's name and providers)."""
    session.selection_note = note
    return session
