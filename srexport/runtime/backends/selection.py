"""`--backend auto`: which backend runs a precision fastest on this machine, and why.

The rule (first match wins; `choose_backend` is the pure function, `available_backends`
and `cpu_capabilities` the cheap probes of this machine):

GPU first, when an NVIDIA GPU is present:
1. tensorrt, for fp32, fp16 and int8, when TensorRT is installed (engines from the
   bundle's graphs; fastest on NVIDIA GPUs).
2. onnxruntime, for fp32, fp16 and int8, when ONNX Runtime's CUDA execution provider is
   installed (onnxruntime-gpu).
CPU otherwise (or for bf16, which only the OpenVINO CPU path runs):
3. onnxruntime, for fp32 of the models in `ORT_FP32_MODELS`, whose fp32 graphs ONNX Runtime
   runs faster than OpenVINO on the CPU (measured, see there).
4. openvino, for fp32 and int8, when OpenVINO is installed and its CPU plugin offers the
   precision (INT8: every x86 CPU with AVX2; fastest with VNNI / AMX-INT8); for bf16 when
   the CPU offers BF16 (AVX512-BF16 or AMX).
5. onnxruntime (CPU) for fp32, fp16 and int8: the guaranteed default that always works
   (fp16 runs upcast to fp32 there: accuracy, not speed).
bf16 with no OpenVINO or on a CPU without BF16 is refused with a one-line `SrExportError`
that says what to do instead.

Measured basis (FACTS.md, 2 threads, BPP 192x192): OpenVINO FP32 1.5x ONNX Runtime FP32,
OpenVINO BF16 6.3x; `benchmarks/cpu_backends.py` re-measures every pair on the models.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

from srexport.bundle import PRECISIONS
from srexport.errors import SrExportError

GPU_PRECISIONS = ("fp32", "fp16", "int8")
OPENVINO_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "int8": "INT8"}

# Models whose fp32 graph ONNX Runtime runs faster than OpenVINO on the CPU. PCARN-M is
# mostly 3x3 convolutions in 4 groups of 16 channels, which OpenVINO's CPU plugin runs with
# its plain JIT kernel (about 85 GFLOP/s of a 287 GFLOP/s fp32 peak on 2 threads), not the
# brgemm one of its dense convolutions. Measured on a 2-core AMX Xeon, 2 threads, fp32,
# PCARN-M-L1 x4: CSet14 folder run 1.55-1.57 s (ONNX Runtime) against 1.69-1.90 s
# (OpenVINO); 320x180 frames 2.30-2.38 against 2.06-2.07 output Mpx/s. G-MGBP and BPP run faster on
# OpenVINO (G-MGBP CSet5 folder 3.3 s against 4.4 s), so they are not listed.
# `benchmarks/cpu_backends.py` and `benchmarks/default_run.py` re-measure them.
ORT_FP32_MODELS = frozenset({"pcarn-m"})


def onnxruntime_runs_faster(precision: str, model: str | None) -> bool:
    """Whether `model`'s `precision` is one ONNX Runtime runs faster than OpenVINO on the CPU."""
    return precision == "fp32" and model in ORT_FP32_MODELS


def choose_backend(precision: str, available: dict[str, bool], cpu_caps: set[str],
                   model: str | None = None) -> tuple[str, str]:
    """(backend, reason) for `precision` of `model` (the bundle's registered model name, or
    None) given what is installed and what the CPU offers.

    `available` keys (missing = False): "tensorrt" (TensorRT installed and a GPU
    present), "onnxruntime-cuda" (ONNX Runtime's CUDA provider installed and a GPU present),
    "openvino" (the openvino package installed). `cpu_caps` is OpenVINO's
    OPTIMIZATION_CAPABILITIES of the CPU ({"FP32", "INT8", "BF16", ...}; empty when unknown).
    """
    if precision not in PRECISIONS:
        raise SrExportError(f"unknown precision '{precision}' (precisions: {', '.join(PRECISIONS)})")
    has = lambda name: bool(available.get(name, False))  # noqa: E731
    if precision in GPU_PRECISIONS:
        if has("tensorrt"):
            return "tensorrt", f"an NVIDIA GPU and TensorRT are present: TensorRT runs {precision} fastest"
        if has("onnxruntime-cuda"):
            return "onnxruntime", "an NVIDIA GPU and ONNX Runtime's CUDA provider are present (no TensorRT)"
    if onnxruntime_runs_faster(precision, model) and has("onnxruntime") and has("openvino"):
        return "onnxruntime", (f"no GPU backend; ONNX Runtime runs {model} fp32 faster than OpenVINO on the CPU "
                               "(grouped convolutions)")
    if precision in OPENVINO_CAPABILITY and has("openvino"):
        wanted = OPENVINO_CAPABILITY[precision]
        if wanted in cpu_caps:
            if precision == "bf16":
                return "openvino", "bf16 runs on the OpenVINO CPU backend (BF16 on this CPU: AVX512-BF16/AMX)"
            why = f"no GPU backend; OpenVINO is the fastest CPU backend for {precision} ({wanted} on this CPU)"
            return "openvino", why
        if precision == "bf16":
            raise SrExportError(
                "bf16 needs a CPU with AVX512-BF16 or AMX, and this one lacks both: use --precision fp32 or int8"
            )
    if precision == "bf16":
        raise SrExportError(
            "bf16 runs on the openvino backend only, which is not installed: "
            "pip install 'sr-export[openvino]', or use --precision fp32 or int8"
        )
    if precision == "fp16":
        why = "no GPU backend: ONNX Runtime runs the fp16 graph on the CPU (upcast to fp32, no speed gain)"
        return "onnxruntime", why
    if not has("openvino"):
        return "onnxruntime", "no GPU backend and no OpenVINO: ONNX Runtime (CPU), the default that always works"
    lacking = OPENVINO_CAPABILITY[precision]
    return "onnxruntime", f"no GPU backend and OpenVINO's CPU plugin lacks {lacking}: ONNX Runtime (CPU)"


# -- probes (cheap: no heavy module is imported unless it is installed and asked about) -----
def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _distribution(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def nvidia_gpu_present() -> bool:
    """An NVIDIA GPU visible to this process (driver device nodes or proc entries), without
    loading CUDA; CUDA_VISIBLE_DEVICES="" or "-1" hides them, as it does for CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    return any(Path(f"/dev/nvidia{i}").exists() for i in range(16))


def available_backends() -> dict[str, bool]:
    """What this machine offers, by package presence (find_spec: nothing is imported)."""
    gpu = nvidia_gpu_present()
    return {
        "tensorrt": gpu and _installed("tensorrt"),
        "onnxruntime-cuda": gpu and (_distribution("onnxruntime-gpu") or _distribution("onnxruntime-gpu-cuda13")),
        "openvino": _installed("openvino"),
        "onnxruntime": _installed("onnxruntime"),
        "torch": _installed("torch"),
    }


def cpu_capabilities(available: dict[str, bool] | None = None) -> set[str]:
    """OpenVINO's view of the CPU when OpenVINO is installed (imports it: it is the backend
    auto is about to open anyway), else an empty set."""
    available = available_backends() if available is None else available
    if not available.get("openvino"):
        return set()
    from srexport.runtime.backends.openvino import cpu_capabilities as ov_caps

    try:
        return ov_caps()
    except SrExportError:
        return set()


def auto_backend(precision: str, tensorrt: bool = True, model: str | None = None) -> tuple[str, str]:
    """`choose_backend` on this machine's probes, for `model` (a bundle's model name, or
    None). OpenVINO is imported only when the choice can fall to it; an OpenVINO that does
    not load counts as absent. `tensorrt=False`: TensorRT was tried and could not run (see
    `open_session`)."""
    available = available_backends()
    available["tensorrt"] = available["tensorrt"] and tensorrt
    gpu = available["tensorrt"] or available["onnxruntime-cuda"]
    caps: set[str] = set()
    to_onnxruntime = onnxruntime_runs_faster(precision, model) and available["onnxruntime"]
    if available["openvino"] and not (gpu and precision in GPU_PRECISIONS) and not to_onnxruntime:
        caps = cpu_capabilities(available)
        if not caps:
            available["openvino"] = False
    return choose_backend(precision, available, caps, model)
