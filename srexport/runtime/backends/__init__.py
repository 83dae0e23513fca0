"""Backends: each turns a bundle graph into a `Session` that maps a batch to a batch.

The tiler and blender know nothing about backends; comparing backends is a loop.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import SrExportError

BACKENDS = ("auto", "onnxruntime", "torch")


class Session(Protocol):
    name: str
    device: str

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs by graph input name (NCHW float32) -> the output batch (NCHW float32)."""


def open_session(bundle: Bundle, backend: str = "auto", precision: str = "fp32", threads: int = 0) -> Session:
    """Open `bundle`'s graph of `precision` on `backend` ("auto": the first that works)."""
    if backend not in BACKENDS:
        raise SrExportError(f"unknown backend '{backend}' (backends: {', '.join(BACKENDS)})")
    if backend == "torch":
        from srexport.runtime.backends.torch import TorchSession

        return TorchSession(bundle, precision, threads)
    from srexport.runtime.backends.onnxruntime import OrtSession

    return OrtSession(bundle, precision, threads)
