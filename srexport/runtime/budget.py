"""A memory model of a bundle's graph, and the patch that a memory budget allows.

The peak activation memory of a conv net grows linearly with the patch's pixels. It is
derived from the ONNX graph itself: the graph is shape-inferred at one concrete patch
size and walked in node order, each tensor alive from the node that makes it to the last
node that reads it; the largest sum of live tensor bytes, divided by the patch's input
pixels, is the graph's bytes per input pixel. Backends add their own work buffers
(im2col, reorders, arenas) on top: `BACKEND_FACTOR` (`BACKEND_FACTORS` per backend)
covers them, checked against a measured peak RSS in tests/test_runtime_budget.py.

Measured peak RSS above the level before the call, over the graph figure (2-core EPYC,
fp32, 256x256 and 384x512 inputs): ONNX Runtime 1.57-2.06 (PCARN-M), 2.29-2.32 (G-MGBP);
OpenVINO 1.27 (PCARN-M), 1.62-1.66 (G-MGBP).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from pathlib import Path

from srexport.errors import SrExportError
from srexport.shapes import ShapeRules
from srexport.validation import available_memory

BACKEND_FACTOR = 2.5  # backend work buffers: ONNX Runtime measured 2.1x (PCARN-M) to 2.3x (G-MGBP)
BACKEND_FACTORS = {"openvino": 1.9}  # OpenVINO measured up to 1.66x (G-MGBP); others: BACKEND_FACTOR
RAM_FRACTION = 0.5  # of MemAvailable: the default budget on the CPU
# On the CPU the budget is a ceiling, not a target: the memory a run's tiles first touch
# costs page faults. PCARN-M-L1 x4, 1920x1080 -> 8K, fp32, 2-core AMX Xeon VM: ONNX Runtime
# (2 sessions) in 9 tiles of 388x668 took 22-24 s at 7.9 GB peak RSS (1.78 M faults, 14 s of
# system time), in 45 tiles of 256x256 17-18 s at 2.9 GB for 26% more pixels; OpenVINO in 3
# tiles of 1080x668 22.5 s at 6.0 GB, in 32 of 302x277 22.3 s at 1.8 GB for 24% more pixels.
# Time = FLOPs / rate + touched bytes / rate fits ONNX Runtime's runs (256-448 px tiles and
# 388x668; 192 px tiles ran 12% over it) within 5% at 290 FLOPs per byte of the memory
# model, OpenVINO's at about 60. This is a VM's page-fault cost; on bare metal faults are
# cheaper and the rule errs toward smaller tiles than needed (never beyond 1.3x). At 290,
# G-MGBP's 540x960 input would run in 4 tiles (51.6-54.5 s) instead of 2 (48.2-49.5 s).
TOUCH_FLOPS_PER_BYTE = {"openvino": 60.0}  # per CPU backend; others: TOUCH_FLOPS_PER_BYTE_DEFAULT
TOUCH_FLOPS_PER_BYTE_DEFAULT = 290.0  # ONNX Runtime (and the torch backend, unmeasured)
CPU_RECOMPUTE = 1.3  # CPU tilings compute at most this many times the image's pixels, where one fits
DEVICE_FRACTION = 0.7  # of free device memory: the default budget on a GPU
_PROBE = 64  # patch edge (input pixels) the graph is shape-inferred at
_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


@dataclass(frozen=True)
class MemoryModel:
    """Peak bytes of one graph call: `fixed` (weights) + `per_pixel` x input pixels x batch;
    and its convolutions' FLOPs per graph input pixel (0: unknown)."""

    per_pixel: float  # live activation bytes per graph input pixel (graph only)
    fixed: float  # weight bytes
    factor: float = BACKEND_FACTOR
    flops_per_pixel: float = 0.0
    touch_flops_per_byte: float = TOUCH_FLOPS_PER_BYTE_DEFAULT  # what touching a byte costs, in FLOPs

    def patch_bytes(self, height: int, width: int, batch: int = 1) -> float:
        return self.fixed + self.factor * self.per_pixel * height * width * batch


def _live_peak(model) -> float:
    """Largest sum of live intermediate tensor bytes over the graph's node order."""
    graph = model.graph
    sizes: dict[str, float] = {}
    for info in list(graph.value_info) + list(graph.output) + list(graph.input):
        t = info.type.tensor_type
        dims = [d.dim_value for d in t.shape.dim]
        if dims and all(d > 0 for d in dims):
            count = 1
            for d in dims:
                count *= d
            sizes[info.name] = count * _DTYPE_BYTES.get(t.elem_type, 4)
    initializers = {i.name for i in graph.initializer}
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            last_use[name] = index
    for out in graph.output:
        last_use[out.name] = len(graph.node)
    live = {i.name for i in graph.input if i.name not in initializers}
    peak = sum(sizes.get(n, 0.0) for n in live)
    for index, node in enumerate(graph.node):
        live.update(n for n in node.output if n)
        peak = max(peak, sum(sizes.get(n, 0.0) for n in live))
        live = {n for n in live if last_use.get(n, -1) > index}
    return peak


@functools.lru_cache(maxsize=16)
def _graph_model(graph: str, noise: tuple, probe: int) -> tuple[float, float, float]:
    """(live bytes per input pixel, weight bytes, FLOPs per input pixel) at a probe x probe input."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = onnx.load(graph)
    initializers = {i.name for i in model.graph.initializer}
    shapes = {"image": (1, 3, probe, probe)}
    for name, channels, factor, border in noise:
        side = factor * (probe + 2 * border)
        shapes[name] = (1, channels, side, side)
    for graph_input in model.graph.input:
        if graph_input.name in initializers:
            continue
        dims = graph_input.type.tensor_type.shape.dim
        shape = shapes.get(graph_input.name, (1, 3, probe, probe))
        for d, v in zip(dims, shape):
            d.ClearField("dim_param")
            d.dim_value = v
    for graph_output in model.graph.output:
        for d in graph_output.type.tensor_type.shape.dim:
            d.ClearField("dim_param")
            d.ClearField("dim_value")
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    weights = float(sum(numpy_helper.to_array(i).nbytes for i in model.graph.initializer))
    return _live_peak(inferred) / (probe * probe), weights, _conv_flops(inferred) / (probe * probe)


def _conv_flops(model) -> float:
    """FLOPs of the shape-inferred graph's convolutions: 2 x each output (Conv) or input
    (ConvTranspose) element x the weight's C / groups x kernel taps; 0 when any of their
    shapes is unknown (then touched bytes alone rank CPU tilings, in C++ alike)."""
    graph = model.graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    for info in list(graph.value_info) + list(graph.output) + list(graph.input):
        dims.setdefault(info.name, [d.dim_value if d.HasField("dim_value") else -1
                                    for d in info.type.tensor_type.shape.dim])
    flops = 0.0
    for node in graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
            continue
        scattered = dims.get(node.output[0] if node.op_type == "Conv" else node.input[0])
        weight = dims.get(node.input[1])
        if not scattered or not weight or min(scattered + weight[1:]) < 0:
            return 0.0
        flops += 2.0 * math.prod(scattered) * math.prod(weight[1:])
    return flops


def memory_model(bundle, precision: str = "fp32", backend: str | None = None) -> MemoryModel:
    """The memory model of `bundle`'s graph (the fp32 graph stands in for bf16) on
    `backend` (a session's name: its factor from `BACKEND_FACTORS`)."""
    graph_precision = precision if precision in bundle.manifest.precisions and precision != "bf16" else "fp32"
    m = bundle.manifest
    rules = m.shape_rules
    probe = rules.legal_at_least(max(_PROBE, rules.min_size))
    noise = tuple((n.name, n.channels, n.factor, n.border) for n in m.noise_inputs)
    per_pixel, weights, flops = _graph_model(str(bundle.graph_path(graph_precision)), noise, probe)
    return MemoryModel(per_pixel, weights, BACKEND_FACTORS.get(backend or "", BACKEND_FACTOR), flops,
                       TOUCH_FLOPS_PER_BYTE.get(backend or "", TOUCH_FLOPS_PER_BYTE_DEFAULT))


def available_ram() -> int:
    """Bytes this machine can still allocate (`srexport.validation.available_memory`)."""
    return available_memory()


def free_device_memory() -> int | None:
    """Free CUDA device memory in bytes, or None without a GPU."""
    try:
        from srexport.lazy import cuda_runtime_or_none

        cudart = cuda_runtime_or_none()
        if cudart is None:
            return None
        err, free, _total = cudart.cudaMemGetInfo()
        return None if int(err) != 0 else int(free)
    except Exception:
        return None


@dataclass(frozen=True)
class Budget:
    bytes: int
    source: str  # how it was chosen, for the run line

    @property
    def gib(self) -> float:
        return self.bytes / 2**30


def default_budget(device: str = "cpu", memory_gib: float | None = None) -> Budget:
    """`--memory GiB` when given, else a safe fraction of available RAM (CPU) or free
    device memory (GPU)."""
    if memory_gib is not None:
        if memory_gib <= 0:
            raise SrExportError(f"--memory must be a positive number of GiB, got {memory_gib}")
        return Budget(int(memory_gib * 2**30), "--memory")
    if device == "cuda":
        free = free_device_memory()
        if free is not None:
            return Budget(int(DEVICE_FRACTION * free), f"{DEVICE_FRACTION:.0%} of free device memory")
    return Budget(int(RAM_FRACTION * available_ram()), f"{RAM_FRACTION:.0%} of available RAM")


def image_bytes(height: int, width: int, output_scale: int, blend: bool) -> float:
    """What the runtime holds for a whole image besides the network: the input planes and
    their padded copy, the float32 output canvas (and weight plane when blending), and the
    finished output (float32 HWC + quantised)."""
    out_px = output_scale * output_scale * height * width
    return 2 * 12.0 * height * width + out_px * (12.0 + 12.0 + 3.0 + (4.0 if blend else 0.0))


def fits(model: MemoryModel, budget: int, rules: ShapeRules, height: int, width: int, patch: tuple[int, int],
         batch: int, blend: bool) -> bool:
    """Whether calls of `patch` on an image of (height, width) stay within the budget."""
    return model.patch_bytes(*patch, batch) <= budget - image_bytes(height, width, rules.output_scale, blend)


def budget_patch(model: MemoryModel, budget: int, rules: ShapeRules, height: int, width: int, batch: int,
                 blend: bool, floor: int, overlap: int = 0, max_edge: int | None = None,
                 recompute: float | None = None) -> tuple[int, int] | None:
    """The legal (ph, pw) for tiles of this image (overlapping by `overlap`) whose call fits
    what the budget leaves after the image's own buffers; None when the whole image fits
    (run it whole). `floor` is the smallest patch edge allowed (crop stitching: 2 * halo + 1);
    `max_edge` the largest a backend accepts (a TensorRT engine's profile), if any.

    Without `recompute`: the patch that computes the fewest pixels (the largest that fits).
    With it (CPU sessions: `CPU_RECOMPUTE`): among the tilings computing at most `recompute`
    times the image's pixels, where one fits, the one of least estimated time (`cpu_cost`:
    its FLOPs plus the bytes its calls touch); else the fewest pixels."""
    from srexport.runtime.tiler import axis_starts

    left = budget - image_bytes(height, width, rules.output_scale, blend)
    whole = rules.legal_at_least(height), rules.legal_at_least(width)
    within = max_edge is None or max(whole) <= max_edge
    if within and model.patch_bytes(*whole, batch) <= left:
        return None
    area = max(0.0, (left - model.fixed) / (model.factor * model.per_pixel * batch))
    floor = rules.legal_at_least(max(floor, rules.min_size))
    best, best_cost = None, None
    for ph in _tight_patches(height, overlap, rules, floor):
        for pw in _tight_patches(width, overlap, rules, floor):
            if ph * pw > area or (max_edge is not None and max(ph, pw) > max(max_edge, floor)):
                continue
            rows = len(axis_starts(max(height, ph), ph, min(overlap, ph - 1)))
            cols = len(axis_starts(max(width, pw), pw, min(overlap, pw - 1)))
            computed = rows * ph * cols * pw
            if recompute is not None and computed <= recompute * height * width:
                cost = (0, cpu_cost(model, computed, ph, pw, batch), -ph * pw)
            else:
                cost = (1, computed, -ph * pw)
            if best_cost is None or cost < best_cost:
                best, best_cost = (ph, pw), cost
    return best or (floor, floor)


def cpu_cost(model: MemoryModel, computed: int, ph: int, pw: int, batch: int) -> float:
    """Estimated CPU time of a tiling, in FLOPs: what its `computed` pixels cost plus the
    memory its calls of (ph, pw) x `batch` first touch (`TOUCH_FLOPS_PER_BYTE`)."""
    return computed * model.flops_per_pixel + model.touch_flops_per_byte * model.patch_bytes(ph, pw, batch)


def _tight_patches(length: int, overlap: int, rules: ShapeRules, floor: int) -> list[int]:
    """Per tile count n along an axis, the smallest legal patch that covers it with n tiles
    (n * p - (n - 1) * overlap >= length): the only patch sizes worth considering."""
    sizes = []
    n = 1
    while True:
        p = max(floor, rules.legal_at_least(-(-(length + (n - 1) * overlap) // n)))
        if not sizes or p < sizes[-1]:
            sizes.append(p)
        if p == floor or p <= overlap + rules.multiple_of:
            break
        n += 1
    return sizes


def _legal_at_most(size: int, rules: ShapeRules, floor: int) -> int:
    """The largest legal size <= `size`, but not below `floor` (a legal size)."""
    if size <= floor:
        return floor
    candidate = rules.legal_at_least(size)
    while candidate > size and candidate - rules.multiple_of >= floor:
        candidate -= rules.multiple_of
    return max(floor, candidate if candidate <= size else floor)
