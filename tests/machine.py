"""What this machine offers, probed directly (not through srexport's selection code), for
tests that check which backend `auto` picked."""

from __future__ import annotations

import importlib


def openvino_cpu_capabilities() -> set[str] | None:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of the CPU, or None without a loadable OpenVINO."""
    try:
        openvino = importlib.import_module("openvino")
        return set(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:
        return None


def ort_has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def expected_auto_backend_without_tensorrt(precision: str = "fp32", model: str | None = None) -> str:
    """The documented rule (README, --backend auto) with TensorRT ruled out: ONNX Runtime's
    CUDA provider for a GPU precision, else ONNX Runtime for PCARN-M's fp32 (its grouped
    convolutions), else OpenVINO when it offers the precision on this CPU, else ONNX
    Runtime on the CPU."""
    if precision in ("fp32", "fp16", "int8") and ort_has_cuda():
        return "onnxruntime"
    if precision == "fp32" and model == "pcarn-m":
        return "onnxruntime"
    wanted = {"fp32": "FP32", "int8": "INT8", "bf16": "BF16"}.get(precision)
    caps = openvino_cpu_capabilities()
    if wanted is not None and caps is not None and wanted in caps:
        return "openvino"
    return "onnxruntime"
