"""What the hardware could do: a matrix-multiply peak measured in the same run (CPU), or
the published peak of the GPU.

Timings on shared machines drift by 3x or more between runs (FACTS.md), so the CPU peak
is measured right beside the model, with the runtime's own thread count, and the profile
reports the model's achieved FLOP/s as a fraction of it. The measurement is an FP32
`torch.matmul` of square matrices, repeated for a fraction of a second; the best call
counts (a peak), the median is kept too.
"""

from __future__ import annotations

import platform
import statistics
import time

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
        torch.matmul(a, b, out=out)  # warm-up: threads, caches
        rates = []
        deadline = time.perf_counter() + seconds
        while len(rates) < min_calls or time.perf_counter() < deadline:
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            rates.append(2.0 * n**3 / (time.perf_counter() - start) / 1e9)
            if len(rates) >= 200:
                break
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
