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
import os
from dataclasses import dataclass
from pathlib import Path

from srexport.errors import SrExportError
from srexport.shapes import ShapeRules
from srexport.validation import available_memory

BACKEND_FACTOR = 2.5  # backend work buffers: ONNX Runtime measured 2.1x (PCARN-M) to 2.3x (G-MGBP)
BACKEND_FACTORS = {"openvino": 1.9}  # OpenVINO measured up to 1.66x (G-MGBP); others: BACKEND_FACTOR
RAM_FRACTION = 0.5  # of MemAvailable: the default budget on the CPU
DEVICE_FRACTION = 0.7  # of free device memory: the default budget on a GPU
_PROBE = 64  # patch edge (input pixels) the graph is shape-inferred at
_DTYPE_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 16: 2}


@dataclass(frozen=True)
class MemoryModel:
    """Peak bytes of one graph call: `fixed` (weights) + `per_pixel` x input pixels x batch."""

    per_pixel: float  # live activation bytes per graph input pixel (graph only)
    fixed: float  # weight bytes
    factor: float = BACKEND_FACTOR

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
def _graph_model(graph: str, noise: tuple, probe: int) -> tuple[float, float]:
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
    return _live_peak(inferred) / (probe * probe), weights


def memory_model(bundle, precision: str = "fp32", backend: str | None = None) -> MemoryModel:
    """The memory model of `bundle`'s graph (the fp32 graph stands in for bf16) on
    `backend` (a session's name: its factor from `BACKEND_FACTORS`)."""
    graph_precision = precision if precision in bundle.manifest.precisions and precision != "bf16" else "fp32"
    m = bundle.manifest
    rules = m.shape_rules
    probe = rules.legal_at_least(max(_PROBE, rules.min_size))
    noise = tuple((n.name, n.channels, n.factor, n.border) for n in m.noise_inputs)
    per_pixel, weights = _graph_model(str(bundle.graph_path(graph_precision)), noise, probe)
    return MemoryModel(per_pixel, weights, BACKEND_FACTORS.get(backend or "", BACKEND_FACTOR))


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


def largest_patch(model: MemoryModel, budget: int, rules: ShapeRules, height: int, width: int, batch: int,
                  blend: bool, floor: int, overlap: int = 0, max_edge: int | None = None) -> tuple[int, int] | None:
    """The legal (ph, pw) whose call fits what the budget leaves after the image's own
    buffers and that computes the fewest pixels on this image (tiles overlapping by
    `overlap`); None when the whole image fits (run it whole). `floor` is the smallest
    patch edge allowed (crop stitching: 2 * halo + 1); `max_edge` the largest a backend
    accepts (a TensorRT engine's profile), if any."""
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
            cost = (rows * ph * cols * pw, -ph * pw)
            if best_cost is None or cost < best_cost:
                best, best_cost = (ph, pw), cost
    return best or (floor, floor)


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
