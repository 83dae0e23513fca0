"""`sr-export doctor`: what this machine offers sr-export, each item present or not, and why.

Every probe is isolated: a missing or broken component is reported, never raised.
"""

from __future__ import annotations

import ctypes
import importlib
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from srexport.tensorrt.device import cuda_version_text


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    present: bool
    detail: str  # what was found, or the reason it is absent

    def line(self, width: int = 14) -> str:
        mark = "ok" if self.present else "--"
        return f"  [{mark}] {self.name:<{width}} {self.detail}"


def _guard(name: str, probe: Callable[[], DoctorCheck]) -> DoctorCheck:
    try:
        return probe()
    except Exception as exc:  # a probe must never take `doctor` down
        return DoctorCheck(name, False, f"probe failed: {type(exc).__name__}: {exc}")


def check_driver() -> DoctorCheck:
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return DoctorCheck("NVIDIA driver", False, f"libcuda.so.1 not found: no NVIDIA driver installed ({exc})")
    version = ctypes.c_int(0)
    api = ""
    if libcuda.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value:
        api = f"supports CUDA {cuda_version_text(version.value)}"
    release = ""
    proc = Path("/proc/driver/nvidia/version")
    if proc.is_file():
        match = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", proc.read_text(errors="replace"))
        release = match.group(1) if match else ""
    detail = ", ".join(x for x in (release and f"version {release}", api) if x) or "libcuda.so.1 loads"
    return DoctorCheck("NVIDIA driver", True, detail)


def check_gpu() -> DoctorCheck:
    from srexport.tensorrt.device import gpu_status

    gpu, text = gpu_status(0)
    return DoctorCheck("GPU", gpu is not None, text)


def check_cuda_runtime() -> DoctorCheck:
    from srexport.lazy import CudaUnavailable, import_cudart

    try:
        cudart = import_cudart()
    except CudaUnavailable as exc:
        return DoctorCheck("CUDA runtime", False, str(exc))
    err, version = cudart.cudaRuntimeGetVersion()
    if int(err) != 0:
        return DoctorCheck("CUDA runtime", False, f"cudaRuntimeGetVersion failed: {getattr(err, 'name', err)}")
    return DoctorCheck("CUDA runtime", True, f"CUDA {cuda_version_text(int(version))} (cuda-python's cudart)")


def check_cuda_python() -> DoctorCheck:
    from srexport.lazy import CudaUnavailable, import_cudart

    try:
        import_cudart()
    except CudaUnavailable as exc:
        return DoctorCheck("cuda-python", False, str(exc))
    found = []
    for name in ("cuda.bindings", "cuda.core"):
        try:
            found.append(f"{name} {getattr(importlib.import_module(name), '__version__', '?')}")
        except ImportError:
            pass
    return DoctorCheck("cuda-python", True, ", ".join(found) or "cuda.bindings.runtime imports")


def check_tensorrt() -> DoctorCheck:
    from srexport.lazy import TensorRTUnavailable, import_tensorrt

    try:
        trt = import_tensorrt()
    except TensorRTUnavailable as exc:
        return DoctorCheck("TensorRT", False, str(exc))
    detail = f"{trt.__version__} (strongly typed engines)"
    from srexport.tensorrt.device import gpu_status
    from srexport.tensorrt.keys import short_trt_version

    gpu, _ = gpu_status(0)
    if gpu is not None:
        detail += f"; engines for this GPU are named *_{gpu.sm}_trt{short_trt_version(trt.__version__)}_*"
    return DoctorCheck("TensorRT", True, detail)


def check_onnxruntime() -> DoctorCheck:
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError as exc:
        return DoctorCheck("ONNX Runtime", False, f"not installed: {exc}")
    providers = ort.get_available_providers()
    gpu = [p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    note = "" if gpu else " (CPU only: onnxruntime-gpu adds the CUDA and TensorRT providers)"
    return DoctorCheck("ONNX Runtime", True, f"{ort.__version__}, providers: {', '.join(providers)}{note}")


def check_openvino() -> DoctorCheck:
    from srexport.runtime.backends.selection import available_backends

    if not available_backends()["openvino"]:
        return DoctorCheck("OpenVINO", False, "not installed (pip install 'sr-export[openvino]': the fastest CPU "
                                              "backend for fp32 and int8, and bf16 on AVX512-BF16/AMX CPUs)")
    from srexport.lazy import import_openvino
    from srexport.runtime.backends.openvino import core, cpu_capabilities, cpu_name

    openvino = import_openvino()
    core()
    caps = sorted(c for c in cpu_capabilities() if c in ("FP32", "BF16", "FP16", "INT8"))
    return DoctorCheck("OpenVINO", True, f"{openvino.__version__.split('-')[0]}, CPU {cpu_name()}: {', '.join(caps)}")


def _nvcc() -> tuple[str | None, str | None]:
    try:
        from srexport.kernels.compiler import nvcc_path, nvcc_version

        path = nvcc_path()
        return path, nvcc_version(path) if path else None
    except ImportError:
        path = shutil.which("nvcc")
        if path is None:
            return None, None
        text = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        match = re.search(r"release (\d+\.\d+)", text)
        return path, match.group(1) if match else None


def check_nvcc() -> DoctorCheck:
    path, version = _nvcc()
    if path is None:
        return DoctorCheck("nvcc", False, "not found on PATH, $CUDA_HOME or /usr/local/cuda (the CUDA toolkit "
                                          "compiles the custom kernels; NVRTC can stand in)")
    return DoctorCheck("nvcc", True, f"CUDA {version or '?'} at {path}")


PROBES: tuple[tuple[str, Callable[[], DoctorCheck]], ...] = (
    ("NVIDIA driver", check_driver),
    ("GPU", check_gpu),
    ("CUDA runtime", check_cuda_runtime),
    ("cuda-python", check_cuda_python),
    ("TensorRT", check_tensorrt),
    ("ONNX Runtime", check_onnxruntime),
    ("OpenVINO", check_openvino),
    ("nvcc", check_nvcc),
)


def collect() -> list[DoctorCheck]:
    """Every check, in a fixed order."""
    return [_guard(name, probe) for name, probe in PROBES]


def auto_backends() -> dict[str, str]:
    """What `--backend auto` picks here for each precision, then for the fp32 of each model
    with a rule of its own where it picks another backend (keys "fp32 of MODEL"), with the
    reason (`srexport.runtime.backends.selection.auto_backend`; engine availability aside)."""
    from srexport.runtime.backends.selection import ORT_FP32_MODELS, PRECISIONS

    plain = {precision: _auto_choice(precision) for precision in PRECISIONS}
    choices = {precision: line for precision, (_, line) in plain.items()}
    for model in sorted(ORT_FP32_MODELS):
        backend, line = _auto_choice("fp32", model)
        if backend != plain["fp32"][0]:
            choices[f"fp32 of {model}"] = line
    return choices


def _auto_choice(precision: str, model: str | None = None) -> tuple[str | None, str]:
    """(backend or None when refused, its line) of `auto_backend`."""
    from srexport.errors import SrExportError
    from srexport.runtime.backends.selection import auto_backend

    try:
        backend, why = auto_backend(precision, model=model)
    except SrExportError as exc:
        return None, f"refused: {exc}"
    return backend, f"{backend} ({why})"


def render(checks: list[DoctorCheck]) -> str:
    width = max(len(c.name) for c in checks)
    lines = ["sr-export doctor"]
    lines += [c.line(width) for c in checks]
    lines.append("--backend auto here:")
    lines += [f"  {precision}: {choice}" for precision, choice in auto_backends().items()]
    lines.append(f"--precision auto here: {auto_precisions()}")
    return "\n".join(lines)


def auto_precisions() -> str:
    """The order `--precision auto` tries here with `--backend auto`, fastest first, and why
    (each bundle then takes the first it holds within its recorded gate)."""
    from srexport.runtime.backends.precision_auto import machine_order, this_machine

    here = this_machine("auto")
    order, why = machine_order(here)
    frames, _ = machine_order(here, repeating=True)
    streams = f"; frame streams: {', '.join(frames)}" if frames != order else ""
    return f"{', '.join(order)}{streams} ({why}; a bundle runs the first it holds within its recorded accuracy gate)"
