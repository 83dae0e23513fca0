"""Backends: each turns a bundle graph into a `Session` that maps a batch to a batch.

The tiler and blender know nothing about backends; comparing backends is a loop.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable

from srexport.bundle import Bundle
from srexport.errors import EngineUnavailable, GpuError, SrExportError
from srexport.runtime.backends.base import Session
from srexport.runtime.backends.options import (BackendOptions, OpenVINOOptions, OrtOptions, SessionRequest,
                                               TensorRTOptions, TorchOptions)
from srexport.runtime.backends.table import BACKEND_TABLE, options_by_backend

__all__ = ["BACKENDS", "BACKEND_TABLE", "OpenVINOOptions", "OrtOptions", "Session", "SessionRequest",
           "TensorRTOptions", "TorchOptions", "open_session", "resolve_precision"]

BACKENDS = ("auto", *BACKEND_TABLE)
AUTO_CANDIDATES = ("tensorrt", "openvino", "onnxruntime")  # what `auto` may pick (selection.py)


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
    backend_options: BackendOptions | Iterable[BackendOptions] | None = None,
    precision_reason: str = "",
    zero_noise: bool = False,
) -> Session:
    """Open `bundle`'s graph of `precision` on `backend`; precision "auto" picks one by
    `srexport.runtime.backends.precision_auto` (the session's `precision` says which).

    "auto" follows `srexport.runtime.backends.selection` (the rule is stated there):
    TensorRT when TensorRT, a GPU and a matching (or buildable) engine are there, else
    OpenVINO on the CPU for fp32/int8 (bf16 too, where the CPU has it) when OpenVINO is
    installed (ONNX Runtime for the fp32 of the models it runs faster), else ONNX Runtime,
    the default that always works. The returned session's
    `selection_note` says why this backend: "requested", or "auto: ..." with the reason
    (and why TensorRT was passed over, when it was tried). `patch`/`batch` (the tiler's,
    when known; patch "auto" with the budget `memory` GiB: every patch that budget
    allows) let TensorRT pick or build an engine whose profile covers them and
    OpenVINO pick its streams; `log` receives progress such as engine builds (default:
    the "srexport.tensorrt" logger, warnings reach stderr). `backend_options`: that
    backend's options (`srexport.runtime.backends.options`), or for "auto" one per
    backend it may pick; another backend's options are refused in one line. `zero_noise`:
    the run's noise is W = 0, so the CPU backends run the bundle's W = 0 graph (the FP32
    graph without noise inputs) where it has one.
    """
    if backend not in BACKENDS:
        raise SrExportError(f"unknown backend '{backend}' (backends: {', '.join(BACKENDS)})")
    options = options_by_backend(backend, backend_options, AUTO_CANDIDATES if backend == "auto" else (backend,))
    if precision == "auto":
        choice = resolve_precision(bundle, backend, precision)
        precision, precision_reason = choice.precision, choice.reason
    request = SessionRequest(bundle, precision, threads, patch, batch, memory, log, precision_reason=precision_reason,
                             zero_noise=zero_noise)
    if backend == "auto":
        return _auto_session(request, options)
    if precision == "bf16" and backend != "openvino":
        raise SrExportError(f"bf16 runs on the openvino backend only, not on {backend} "
                            "(use --backend openvino or auto, or --precision fp32 or int8)")
    try:
        return BACKEND_TABLE[backend].open(replace(request, options=options.get(backend)))
    except GpuError as exc:
        raise EngineUnavailable(
            f"the {backend} backend cannot run here: {exc} (use --backend onnxruntime or auto)"
        ) from None


def resolve_precision(bundle: Bundle, backend: str, precision: str, repeating: bool = False):
    """A `PrecisionChoice`: "auto" resolved by `precision_auto` for this machine and
    backend (`repeating`: for frame streams of one size), any other precision as asked."""
    from srexport.runtime.backends.precision_auto import PrecisionChoice, choose_precision, this_machine

    if precision != "auto":
        return PrecisionChoice(precision, "requested")
    return choose_precision(bundle.manifest.precisions, this_machine(backend), repeating)


def _auto_session(request: SessionRequest, options: dict[str, BackendOptions]) -> Session:
    """`--backend auto`: TensorRT is tried first for the GPU precisions (opening it is the
    only way to know whether an engine fits this GPU); the CPU choice follows
    `selection.auto_backend` with TensorRT ruled out."""
    from srexport.runtime.backends.selection import GPU_PRECISIONS, auto_backend

    passed_over = ""
    if request.precision in GPU_PRECISIONS:
        try:
            return BACKEND_TABLE["tensorrt"].open(replace(request, options=options.get("tensorrt"),
                                                          reason="auto: TensorRT and a GPU are available"))
        except GpuError as exc:
            passed_over = f"TensorRT not used: {exc}"
    choice, why = auto_backend(request.precision, tensorrt=False, model=request.bundle.manifest.model)
    reason = f"auto: {passed_over}; {why}" if passed_over else f"auto: {why}"
    return BACKEND_TABLE[choice].open(replace(request, options=options.get(choice), reason=reason))
