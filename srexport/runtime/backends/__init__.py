"""Backends: each turns a bundle graph into a `Session` that maps a batch to a batch.

The tiler and blender know nothing about backends; comparing backends is a loop.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import EngineUnavailable, GpuError, SrExportError

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
    patch: tuple[int, int] | int | str | None = None,
    batch: int | None = None,
    log: Callable[[str], None] | None = None,
    memory: float | None = None,
) -> Session:
    """Open `bundle`'s graph of `precision` on `backend`; precision "auto" picks one by
    `srexport.runtime.backends.precision_auto` (the session's `precision` says which).

    "auto" follows `srexport.runtime.backends.selection` (the rule is stated there):
    TensorRT when TensorRT, a GPU and a matching (or buildable) engine are there, else
    OpenVINO on the CPU for fp32/int8 (bf16 too, where the CPU has it) when OpenVINO is
    installed, else ONNX Runtime, the default that always works. The returned session's
    `selection_note` says why this backend: "requested", or "auto: ..." with the reason
    (and why TensorRT was passed over, when it was tried). `patch`/`batch` (the tiler's,
    when known; patch "auto" with the budget `memory` GiB: every patch that budget
    allows) let TensorRT pick or build an engine whose profile covers them and
    OpenVINO pick its streams; `log` receives progress such as engine builds (default:
    the "srexport.tensorrt" logger, warnings reach stderr).
    """
    if backend not in BACKENDS:
        raise SrExportError(f"unknown backend '{backend}' (backends: {', '.join(BACKENDS)})")
    if precision == "auto":
        choice = resolve_precision(bundle, backend, precision)
        session = open_session(bundle, backend, choice.precision, threads, patch=patch, batch=batch, log=log,
                               memory=memory)
        session.selection_note = f"{session.selection_note}; {choice.reason}"
        return session
    if backend == "auto":
        return _auto_session(bundle, precision, threads, patch, batch, log, memory)
    if precision == "bf16" and backend != "openvino":
        raise SrExportError(f"bf16 runs on the openvino backend only, not on {backend} "
                            "(use --backend openvino or auto, or --precision fp32 or int8)")
    if backend == "torch":
        from srexport.runtime.backends.torch import TorchSession

        return _noted(TorchSession(bundle, precision, threads), "requested", precision)
    if backend == "openvino":
        from srexport.runtime.backends.openvino import OvSession

        return _noted(OvSession(bundle, precision, threads, batch=batch), "requested", precision)
    if backend == "tensorrt":
        from srexport.runtime.backends.tensorrt import TrtSession

        try:
            session = TrtSession(bundle, precision, threads, patch=patch, batch=batch, memory=memory, log=log)
        except GpuError as exc:
            raise EngineUnavailable(
                f"the tensorrt backend cannot run here: {exc} (use --backend onnxruntime or auto)"
            ) from None
        return _noted(session, f"requested; {session.engine_note}", precision)
    from srexport.runtime.backends.onnxruntime import OrtSession

    return _noted(OrtSession(bundle, precision, threads), "requested", precision)


def resolve_precision(bundle: Bundle, backend: str, precision: str):
    """A `PrecisionChoice`: "auto" resolved by `precision_auto` for this machine and
    backend, any other precision as asked."""
    from srexport.runtime.backends.precision_auto import PrecisionChoice, choose_precision, this_machine

    if precision != "auto":
        return PrecisionChoice(precision, "requested")
    return choose_precision(bundle.manifest.precisions, this_machine(backend))


def _auto_session(bundle: Bundle, precision: str, threads: int, patch, batch, log, memory=None) -> Session:
    """`--backend auto`: TensorRT is tried first for the GPU precisions (opening it is the
    only way to know whether an engine fits this GPU); the CPU choice follows
    `selection.auto_backend` with TensorRT ruled out."""
    from srexport.runtime.backends.selection import GPU_PRECISIONS, auto_backend

    passed_over = ""
    if precision in GPU_PRECISIONS:
        from srexport.runtime.backends.tensorrt import TrtSession

        try:
            session = TrtSession(bundle, precision, threads, patch=patch, batch=batch, memory=memory, log=log)
        except GpuError as exc:
            passed_over = f"TensorRT not used: {exc}"
        else:
            return _noted(session, f"auto: TensorRT and a GPU are available; {session.engine_note}", precision)
    choice, why = auto_backend(precision, tensorrt=False)
    note = f"auto: {passed_over}; {why}" if passed_over else f"auto: {why}"
    if choice == "openvino":
        from srexport.runtime.backends.openvino import OvSession

        return _noted(OvSession(bundle, precision, threads, batch=batch), note, precision)
    from srexport.runtime.backends.onnxruntime import OrtSession

    return _noted(OrtSession(bundle, precision, threads), note, precision)


def _noted(session, note: str, precision: str):
    """Record on the session why this backend was chosen (the CLI prints it after the
    backend's name and providers) and the precision it runs."""
    session.selection_note = note
    session.precision = precision
    return session
