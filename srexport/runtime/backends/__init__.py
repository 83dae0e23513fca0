"""Backends: each turns a bundle graph into a `Session` that maps a batch to a batch.

The tiler and blender know nothing about backends; comparing backends is a loop.
"""

from __future__ import annotations

from typing import Callable

from srexport.bundle import Bundle
from srexport.errors import EngineUnavailable, GpuError, SrExportError
from srexport.runtime.backends.base import Session

__all__ = ["BACKENDS", "Session", "open_session", "resolve_precision"]

BACKENDS = ("auto", "tensorrt", "openvino", "onnxruntime", "torch")


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
    precision_reason: str = "",
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
        return open_session(bundle, backend, choice.precision, threads, patch=patch, batch=batch, log=log,
                            memory=memory, precision_reason=choice.reason)
    if backend == "auto":
        return _auto_session(bundle, precision, threads, patch, batch, log, memory, precision_reason)
    noted = {"reason": "requested", "precision_reason": precision_reason}
    if precision == "bf16" and backend != "openvino":
        raise SrExportError(f"bf16 runs on the openvino backend only, not on {backend} "
                            "(use --backend openvino or auto, or --precision fp32 or int8)")
    if backend == "torch":
        from srexport.runtime.backends.torch import TorchSession

        return TorchSession(bundle, precision, threads, **noted)
    if backend == "openvino":
        from srexport.runtime.backends.openvino import OvSession

        return OvSession(bundle, precision, threads, batch=batch, **noted)
    if backend == "tensorrt":
        from srexport.runtime.backends.tensorrt import TrtSession

        try:
            return TrtSession(bundle, precision, threads, patch=patch, batch=batch, memory=memory, log=log, **noted)
        except GpuError as exc:
            raise EngineUnavailable(
                f"the tensorrt backend cannot run here: {exc} (use --backend onnxruntime or auto)"
            ) from None
    from srexport.runtime.backends.onnxruntime import OrtSession

    return OrtSession(bundle, precision, threads, **noted)


def resolve_precision(bundle: Bundle, backend: str, precision: str):
    """A `PrecisionChoice`: "auto" resolved by `precision_auto` for this machine and
    backend, any other precision as asked."""
    from srexport.runtime.backends.precision_auto import PrecisionChoice, choose_precision, this_machine

    if precision != "auto":
        return PrecisionChoice(precision, "requested")
    return choose_precision(bundle.manifest.precisions, this_machine(backend))


def _auto_session(bundle: Bundle, precision: str, threads: int, patch, batch, log, memory=None,
                  precision_reason: str = "") -> Session:
    """`--backend auto`: TensorRT is tried first for the GPU precisions (opening it is the
    only way to know whether an engine fits this GPU); the CPU choice follows
    `selection.auto_backend` with TensorRT ruled out."""
    from srexport.runtime.backends.selection import GPU_PRECISIONS, auto_backend

    passed_over = ""
    if precision in GPU_PRECISIONS:
        from srexport.runtime.backends.tensorrt import TrtSession

        try:
            return TrtSession(bundle, precision, threads, patch=patch, batch=batch, memory=memory, log=log,
                              reason="auto: TensorRT and a GPU are available", precision_reason=precision_reason)
        except GpuError as exc:
            passed_over = f"TensorRT not used: {exc}"
    choice, why = auto_backend(precision, tensorrt=False)
    noted = {"reason": f"auto: {passed_over}; {why}" if passed_over else f"auto: {why}",
             "precision_reason": precision_reason}
    if choice == "openvino":
        from srexport.runtime.backends.openvino import OvSession

        return OvSession(bundle, precision, threads, batch=batch, **noted)
    from srexport.runtime.backends.onnxruntime import OrtSession

    return OrtSession(bundle, precision, threads, **noted)
