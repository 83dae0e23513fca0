"""What the hardware could do: a matrix-multiply peak measured in the same run (CPU), or
the published peak of the GPU.

Timings on shared machines drift by 3x or more between runs (FACTS.md), so the CPU peak
is measured right beside the model, with the runtime's own thread count, and the profile
reports the model's achieved FLOP/s as a fraction of it. The measurement is a matmul of
square matrices, repeated for a fraction of a second; the best call counts (a peak), the
median is kept too. Its precision is the graph's (`measure_cpu_peak`): an FP32
`torch.matmul`, or, for OpenVINO's bf16 and int8, OpenVINO's own MatMul in bf16 (AMX or
AVX512-BF16) or between QDQ pairs (AMX-INT8 or VNNI kernels), so that a bf16 or int8 graph
is not measured against the FP32 units (an int8 PCARN-M reached 235% of the FP32 peak).
"""

from __future__ import annotations

import platform
import statistics
import time

import numpy as np

# Dense (not sparse) peaks in TFLOP/s from the vendors' data sheets, by a substring of
# the device name (first match wins, so the more specific names come first).
# fp16 is the dense tensor-core rate, int8 in TOP/s. A name the table lacks gets no peak
# (None) rather than a guess. "A100" precedes "A10" because matching is by substring.
PUBLISHED_GPU_PEAKS: tuple[tuple[str, dict[str, float]], ...] = (
    ("H200", {"fp32": 67.0, "fp16": 989.4, "int8": 1979.0}),
    ("H100 PCIe", {"fp32": 51.2, "fp16": 756.0, "int8": 1513.0}),
    ("H100 NVL", {"fp32": 60.0, "fp16": 835.0, "int8": 1671.0}),
    ("H100", {"fp32": 67.0, "fp16": 989.4, "int8": 1979.0}),
    ("GH200", {"fp32": 67.0, "fp16": 989.4, "int8": 1979.0}),
    ("A100", {"fp32": 19.5, "fp16": 312.0, "int8": 624.0}),
    ("A10", {"fp32": 31.2, "fp16": 125.0, "int8": 250.0}),
    ("L40S", {"fp32": 91.6, "fp16": 362.0, "int8": 733.0}),
    ("L4", {"fp32": 30.3, "fp16": 121.0, "int8": 242.0}),
    ("RTX 4090", {"fp32": 82.6, "fp16": 165.2, "int8": 660.6}),
    ("V100", {"fp32": 15.7, "fp16": 125.0}),
    ("T4", {"fp32": 8.1, "fp16": 65.0, "int8": 130.0}),
)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def cuda_runtime():
    """cuda-python's runtime module (`cuda.bindings.runtime`, or the older `cuda.cudart`),
    or None when cuda-python is not installed."""
    from srexport.lazy import cuda_runtime_or_none

    return cuda_runtime_or_none()


def gpu_name(index: int = 0) -> str | None:
    """The CUDA device's name through cuda-python, or None without a usable driver."""
    cudart = cuda_runtime()
    if cudart is None:
        return None
    try:
        err, props = cudart.cudaGetDeviceProperties(index)
        if int(err) != 0:
            return None
        name = props.name
        return (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()
    except Exception:
        return None


def published_gpu_peak(name: str | None, precision: str = "fp32") -> dict | None:
    """{'gflops', 'source', 'kind'} for a GPU name, or None when the table lacks it."""
    if not name:
        return None
    upper = name.upper()
    for key, peaks in PUBLISHED_GPU_PEAKS:
        if key.upper() in upper:
            kind = precision if precision in peaks else "fp32"
            return {
                "gflops": peaks[kind] * 1e3,
                "source": "published",
                "kind": f"{kind} dense peak of {key} (vendor data sheet)",
            }
    return None


def measure_matmul_peak(threads: int, n: int = 1536, seconds: float = 0.6, min_calls: int = 3) -> dict:
    """FP32 matrix-multiply peak of this CPU with `threads` threads, measured now.

    Returns {'gflops' (best call), 'median_gflops', 'calls', 'n', 'threads', 'source',
    'kind'}. torch's global thread count is restored afterwards.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.rand(n, n, generator=gen, dtype=torch.float32)
        b = torch.rand(n, n, generator=gen, dtype=torch.float32)
        out = torch.empty(n, n, dtype=torch.float32)
        rates = _rates(lambda: torch.matmul(a, b, out=out), 2.0 * n**3, seconds, min_calls)  # after a warm-up call
    finally:
        torch.set_num_threads(previous)
    return {
        "gflops": max(rates),
        "median_gflops": statistics.median(rates),
        "calls": len(rates),
        "n": n,
        "threads": threads,
        "source": "measured",
        "kind": f"fp32 torch.matmul {n}x{n}, {threads} threads, best of {len(rates)} calls",
    }


def _rates(call, flops: float, seconds: float, min_calls: int = 3, max_calls: int = 200) -> list[float]:
    """GFLOP/s of each timed `call` (after one untimed), for about `seconds`."""
    call()
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(rates) < min_calls or (time.perf_counter() < deadline and len(rates) < max_calls):
        start = time.perf_counter()
        call()
        rates.append(flops / (time.perf_counter() - start) / 1e9)
    return rates


OPENVINO_PEAK_PRECISIONS = ("f32", "bf16", "int8")


def openvino_matmul_model(precision: str, n: int, seed: int = 0):
    """(ONNX model, its constant operand B as float) of one n x n MatMul `a @ B`: for
    "int8" between QDQ pairs in the scheme of the bundles' CPU int8 graphs (`calib.int8`):
    a quantised on the fly to uint8 (scale 0.01, zero point 128), B stored int8 in 7 bits
    (|B| <= 64, scale 0.01). CPUs without VNNI multiply uint8 by int8 with AVX2's vpmaddubsw,
    which saturates each pair of products at int16: 7-bit weights keep a pair within
    2 * 255 * 64 = 32640, so the graph computes a @ B exactly on every x86 CPU (int8
    activations and weights up to 100 gave errors of up to 1.0 on an AVX2-only EPYC)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    io = ([helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    if precision == "int8":
        quantised = rng.integers(-64, 64, (n, n)).astype(np.int8)
        constants = [numpy_helper.from_array(np.array(0.01, np.float32), "s"),
                     numpy_helper.from_array(np.array(128, np.uint8), "za"),
                     numpy_helper.from_array(np.array(0, np.int8), "z"), numpy_helper.from_array(quantised, "b")]
        nodes = [helper.make_node("QuantizeLinear", ["a", "s", "za"], ["aq"]),
                 helper.make_node("DequantizeLinear", ["aq", "s", "za"], ["ad"]),
                 helper.make_node("DequantizeLinear", ["b", "s", "z"], ["bd"]),
                 helper.make_node("MatMul", ["ad", "bd"], ["c"])]
        operand = quantised.astype(np.float32) * np.float32(0.01)
    else:
        operand = rng.random((n, n), dtype=np.float32)
        constants, nodes = [numpy_helper.from_array(operand, "b")], [helper.make_node("MatMul", ["a", "b"], ["c"])]
    graph = helper.make_graph(nodes, f"matmul_{precision}", *io, constants)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), operand


def openvino_matmul_peak(precision: str, threads: int, n: int = 2048, seconds: float = 1.0) -> dict:
    """Best and median GFLOP/s (2 per multiply-add) of one n x n MatMul compiled by
    OpenVINO's CPU plugin (oneDNN's JIT kernels for this CPU's ISA) in `precision`: "f32",
    "bf16" (INFERENCE_PRECISION_HINT bf16: AMX or AVX512-BF16; an SrExportError where this
    CPU has no BF16, for OpenVINO would quietly run f32) or "int8" (between QDQ pairs:
    AMX-INT8 or VNNI kernels where present)."""
    from srexport.errors import SrExportError
    from srexport.runtime.backends.openvino import core, cpu_capabilities

    if precision not in OPENVINO_PEAK_PRECISIONS:
        raise SrExportError(f"no OpenVINO matmul peak for '{precision}' (one of {', '.join(OPENVINO_PEAK_PRECISIONS)})")
    if precision == "bf16" and "BF16" not in cpu_capabilities():
        raise SrExportError("this CPU computes no bf16 (no AVX512-BF16 or AMX): no bf16 peak")
    model, _ = openvino_matmul_model(precision, n)
    ov_core = core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision != "int8":  # int8: the QDQ pairs choose the kernels, as in a bundle's int8 graph
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov_core.compile_model(ov_core.read_model(model.SerializeToString(), b""), "CPU", config)
    request = compiled.create_infer_request()
    a = np.random.default_rng(1).random((n, n), dtype=np.float32)
    rates = _rates(lambda: request.infer({"a": a}), 2.0 * n**3, seconds)
    return {"gflops": max(rates), "median_gflops": statistics.median(rates), "calls": len(rates), "n": n,
            "threads": threads, "source": "measured",
            "kind": f"{precision} OpenVINO MatMul {n}x{n}, {threads} threads, best of {len(rates)} calls"}


def measure_cpu_peak(precision: str, backend: str, threads: int) -> dict:
    """The CPU peak a graph of `precision` on `backend` is measured against: OpenVINO's bf16
    or int8 MatMul for those precisions on OpenVINO, else the FP32 `torch.matmul`."""
    if backend == "openvino" and precision in ("bf16", "int8"):
        return openvino_matmul_peak(precision, threads, n=1536, seconds=0.6)
    return measure_matmul_peak(threads)
