"""FP16 graphs: the ONNX graph itself in float16 (inputs and outputs kept float32), with the
layers that overflow float16 kept in float32 automatically.

TensorRT 11 builds strongly typed networks, so FP16 is a property of the graph: every
tensor's type is what the engine will compute in. ONNX Runtime CPU runs such a graph by
upcasting, which measures accuracy, not speed.

Overflow detection (SR networks are known to overflow FP16 in some layers):

1. The FP32 graph runs on the probes (calibration patches plus `stress_inputs`: noise,
   1-pixel checkerboards, saturated colours, flat black and white, and full-amplitude
   noise maps for networks with noise inputs) with a scalar max |x| and a NaN flag computed
   inside the graph for every float tensor (scalars only, so memory stays one forward
   pass). A tensor whose magnitude exceeds FP16_MAX / HEADROOM (HEADROOM = 2: images not
   in the probes may be brighter or busier) is an overflow.
2. The nodes that produce an overflowing tensor and the nodes that read it are blocked
   (kept in FP32): blocking the producer alone would cast its output back to float16
   for the readers and overflow there.
3. The FP16 graph, emulated faithfully (`emulate_fp16`: ONNX Runtime CPU computes float16
   graphs in float32 and would hide an overflow), runs on the same probes with the same
   instrumentation; any tensor that is inf/NaN in FP16 but finite in FP32 and whose
   producer's inputs are finite (the origin of the non-finite values, not its downstream)
   is blocked the same way, and this repeats until the FP16 graph is finite everywhere
   (at most MAX_ROUNDS). The graph written is then converted with that block list.

The blocked nodes, why each was blocked, and the largest magnitudes seen are returned in
`Fp16Report.notes()` for the manifest.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from srexport.onnx_passes import place_after_producers, remove_dead_nodes, topological_sort

FP16_MAX = 65504.0
HEADROOM = 2.0
MAX_ROUNDS = 8
_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16)
_SUFFIX_MAX = "__srx_absmax"
_SUFFIX_NAN = "__srx_nan"


@dataclass
class TensorExtremes:
    absmax: float
    nan: bool

    @property
    def finite(self) -> bool:
        return math.isfinite(self.absmax) and not self.nan


@dataclass
class Fp16Report:
    blocked: dict[str, str] = field(default_factory=dict)  # node name -> reason
    largest_fp32: tuple[str, float] | None = None
    rounds: int = 0
    probes: int = 0
    finite: bool = True
    threshold: float = FP16_MAX / HEADROOM

    def notes(self) -> dict:
        name, value = self.largest_fp32 or ("", 0.0)
        return {
            "fp32_blocked_nodes": sorted(self.blocked),
            "fp32_blocked_reasons": dict(sorted(self.blocked.items())),
            "largest_fp32_activation": {"tensor": name, "max_abs": float(value)},
            "overflow_threshold": self.threshold if math.isfinite(self.threshold) else None,
            "probes": self.probes,
            "conversion_rounds": self.rounds,
            "finite_on_probes": self.finite,
            "io_types": "float32 (graph computes in float16)",
        }


# -- instrumentation ---------------------------------------------------------------------
def float_tensors(model: onnx.ModelProto, constants: bool = False) -> dict[str, int]:
    """Float (32 or 16) node outputs of the graph and their element types (outputs of
    Constant nodes only when `constants`)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input):
        types[vi.name] = vi.type.tensor_type.elem_type
    for init in inferred.graph.initializer:
        types.setdefault(init.name, init.data_type)
    result = {}
    for node in model.graph.node:
        if node.op_type == "Constant" and not constants:
            continue
        for out in node.output:
            if out and types.get(out) in _FLOATS:
                result[out] = types[out]
    return result


def instrumented_session(model: onnx.ModelProto, threads: int = 0):
    """CPU session for a graph instrumented with per-tensor reductions. Priority-based
    execution order runs each reduction as soon as its tensor exists, so tensors are freed
    as in a plain run (the default order measured 3.9 GB instead of 0.9 GB on G-MGBP)."""
    from srexport.ort import inference_session

    return inference_session(model, threads=threads, priority_order=True)


def instrument(model: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of `model` with two scalar outputs per tensor: max |x| and any-NaN (1.0/0.0),
    computed in float32 inside the graph, each right after the tensor's producer."""
    model = copy.deepcopy(model)
    graph = model.graph
    after: dict[str, list] = {}
    for i, name in enumerate(tensors):
        f32, absx, nan, nanf = (f"__srx_{i}_{k}" for k in ("f32", "abs", "isnan", "nanf"))
        nodes = [
            helper.make_node("Cast", [name], [f32], to=TensorProto.FLOAT),
            helper.make_node("Abs", [f32], [absx]),
            helper.make_node("IsNaN", [f32], [nan]),
            helper.make_node("Cast", [nan], [nanf], to=TensorProto.FLOAT),
        ]
        # no axes (attribute before opset 18, input since): reduce over everything
        nodes += [
            helper.make_node("ReduceMax", [absx], [name + _SUFFIX_MAX], keepdims=0),
            helper.make_node("ReduceMax", [nanf], [name + _SUFFIX_NAN], keepdims=0),
        ]
        after[name] = nodes
        graph.output.extend([
            helper.make_tensor_value_info(name + _SUFFIX_MAX, TensorProto.FLOAT, []),
            helper.make_tensor_value_info(name + _SUFFIX_NAN, TensorProto.FLOAT, []),
        ])
    place_after_producers(graph, after)
    return model


def extremes(model: onnx.ModelProto, probes: list[dict[str, np.ndarray]], threads: int = 0) -> dict[str, TensorExtremes]:
    """max |x| and NaN presence of every float tensor of `model` over all probes."""
    tensors = list(float_tensors(model))
    session = instrumented_session(instrument(model, tensors), threads)
    names = [i.name for i in session.get_inputs()]
    wanted = [t + s for t in tensors for s in (_SUFFIX_MAX, _SUFFIX_NAN)]
    result = {t: TensorExtremes(0.0, False) for t in tensors}
    for probe in probes:
        values = session.run(wanted, {n: probe[n] for n in names})
        for i, t in enumerate(tensors):
            absmax, nan = float(values[2 * i]), float(values[2 * i + 1])
            e = result[t]
            e.absmax = max(e.absmax, absmax) if not math.isnan(absmax) else e.absmax
            e.nan = e.nan or nan > 0 or math.isnan(absmax)
    return result


# -- probes ----------------------------------------------------------------------------
def stress_inputs(model, size: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Synthetic inputs that drive activations to their extremes, each one patch of
    `size` x `size` graph-input pixels (noise maps, where the network has them, at the
    largest published amplitude W = 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    checker = ((yy + xx) % 2).astype(np.float32)
    coarse = (((yy // 4) + (xx // 4)) % 2).astype(np.float32)
    images = [
        rng.random((3, size, size), dtype=np.float32),
        np.repeat(checker[None], 3, 0),
        np.stack([checker, 1 - checker, checker]),
        np.stack([coarse, 1 - coarse, 1 - coarse]),
        np.ones((3, size, size), np.float32),
        np.zeros((3, size, size), np.float32),
    ]
    probes = []
    for k, image in enumerate(images):
        probe = {"image": image[None].astype(np.float32)}
        for n in model.noise_inputs:
            shape = n.shape(1, size, size)
            amplitude = 1.0 if k % 2 == 0 else 0.0
            probe[n.name] = (amplitude * rng.standard_normal(shape)).astype(np.float32)
        probes.append(probe)
    return probes


# -- conversion ---------------------------------------------------------------------------
def _producers_consumers(model: onnx.ModelProto):
    producer, consumers = {}, {}
    for node in model.graph.node:
        for out in node.output:
            producer[out] = node
        for inp in node.input:
            consumers.setdefault(inp, []).append(node)
    return producer, consumers


def to_fp16(model: onnx.ModelProto, blocked: list[str]) -> onnx.ModelProto:
    """Convert to float16 with inputs/outputs kept float32 and `blocked` nodes in float32."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(
        copy.deepcopy(model), keep_io_types=True, node_block_list=sorted(blocked) or None
    )
    topological_sort(converted)
    drop_cast_round_trips(converted)
    onnx.checker.check_model(converted)
    return converted


def drop_cast_round_trips(model: onnx.ModelProto) -> None:
    """Remove float32 -> float16 -> float32 cast chains.

    The converter casts every blocked node's output to float16 and back before the next
    blocked node reads it, so an overflowing tensor between two FP32 nodes would still
    pass through float16 (and a strongly typed engine would execute those casts). Readers
    of such a round trip read the float32 original instead; casts left unread are removed.
    """
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
    types.update({i.name: i.data_type for i in graph.initializer})
    producer = {o: n for n in graph.node for o in n.output}

    def cast_to(node) -> int | None:
        if node.op_type != "Cast":
            return None
        return next((a.i for a in node.attribute if a.name == "to"), None)

    def is_float32(tensor: str) -> bool:
        return types.get(tensor) == TensorProto.FLOAT

    replace = {}
    for node in graph.node:
        if cast_to(node) != TensorProto.FLOAT:
            continue
        first = producer.get(node.input[0])
        if first is None or cast_to(first) != TensorProto.FLOAT16:
            continue
        if is_float32(first.input[0]):
            replace[node.output[0]] = first.input[0]
    if not replace:
        return
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in replace and name not in outputs:
                node.input[k] = replace[name]
    remove_dead_nodes(model)


def emulate_fp16(model: onnx.ModelProto, blocked: set[str] | list[str]) -> onnx.ModelProto:
    """An FP32 graph that rounds exactly where the FP16 graph stores float16.

    ONNX Runtime CPU has few float16 kernels: it computes the FP16 graph in float32 and
    drops the cast pairs it inserted, so a tensor above 65504 may survive there while a
    strongly typed engine (TensorRT) stores it as inf. Here every float tensor produced by
    a node that is not `blocked` passes through an explicit Cast to float16 and back
    (explicit casts are never removed), weights read by such nodes are rounded to
    float16, and FP32 (blocked) tensors are rounded only for the FP16 nodes that read them.
    Tensor names are those of `model`; outputs are float32 as in the FP16 graph."""
    model = copy.deepcopy(model)
    graph = model.graph
    blocked = set(blocked)
    floats = float_tensors(model)
    floats.update({i.name: i.type.tensor_type.elem_type for i in graph.input
                   if i.type.tensor_type.elem_type == TensorProto.FLOAT})
    producer, consumers = _producers_consumers(model)
    inits = {i.name: i for i in graph.initializer}
    new_nodes: list = []
    renamed: dict[str, str] = {}  # tensor -> its rounded copy, for FP16 readers only

    def round_pair(src: str, dst: str) -> list:
        mid = dst + "__srx_f16"
        return [helper.make_node("Cast", [src], [mid], to=TensorProto.FLOAT16),
                helper.make_node("Cast", [mid], [dst], to=TensorProto.FLOAT)]

    for name in [i.name for i in graph.input if i.name in floats]:
        if any(c.name not in blocked for c in consumers.get(name, [])):
            renamed[name] = name + "__srx_r16"
            new_nodes += round_pair(name, renamed[name])
    for node in graph.node:
        fp16_node = node.name not in blocked
        if fp16_node:
            for k, inp in enumerate(node.input):
                if inp in renamed:
                    node.input[k] = renamed[inp]
                elif inp in inits and inits[inp].data_type == TensorProto.FLOAT:
                    init = inits[inp]
                    values = onnx.numpy_helper.to_array(init)
                    rounded = np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16).astype(np.float32)
                    if any(c.name in blocked for c in consumers.get(inp, [])):
                        copy_name = inp + "__srx_r16"
                        if copy_name not in inits:
                            inits[copy_name] = onnx.numpy_helper.from_array(rounded, copy_name)
                            graph.initializer.append(inits[copy_name])
                        node.input[k] = copy_name
                    else:
                        init.CopyFrom(onnx.numpy_helper.from_array(rounded, inp))
        new_nodes.append(node)
        for k, out in enumerate(node.output):
            if out not in floats:
                continue
            if fp16_node:
                pre = out + "__srx_pre16"
                node.output[k] = pre
                new_nodes += round_pair(pre, out)
            elif any(c.name not in blocked for c in consumers.get(out, [])):
                renamed[out] = out + "__srx_r16"
                new_nodes += round_pair(out, renamed[out])
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model


def convert_fp16(
    model: onnx.ModelProto,
    probes: list[dict[str, np.ndarray]],
    threads: int = 0,
    threshold: float = FP16_MAX / HEADROOM,
) -> tuple[onnx.ModelProto, Fp16Report]:
    """The FP16 graph of an FP32 `model` with its overflowing layers kept in FP32 (see the
    module docstring); `probes` are graph-input dicts (calibration patches + stress).
    `threshold` is step 1's FP32 magnitude limit (inf: rely on the FP16 runs alone)."""
    report = Fp16Report(probes=len(probes), threshold=threshold)
    model = copy.deepcopy(model)
    _ensure_node_names(model)
    producer, consumers = _producers_consumers(model)

    def block_tensor(tensor: str, reason: str) -> bool:
        added = False
        nodes = ([producer[tensor]] if tensor in producer else []) + consumers.get(tensor, [])
        for node in nodes:
            if node.name not in report.blocked:
                report.blocked[node.name] = reason
                added = True
        return added

    ref = extremes(model, probes, threads)
    if ref:
        name = max(ref, key=lambda t: ref[t].absmax if math.isfinite(ref[t].absmax) else -1.0)
        report.largest_fp32 = (name, ref[name].absmax)
    for tensor, e in ref.items():
        if e.absmax > threshold or not e.finite:
            block_tensor(tensor, f"{tensor}: max |x| {e.absmax:.4g} in FP32 > {threshold:g}")
    while True:
        report.rounds += 1
        got = extremes(emulate_fp16(model, report.blocked), probes, threads)
        bad = [t for t in ref if ref[t].finite and t in got and not got[t].finite]
        if not bad:
            report.finite = all(got[t].finite for t in ref if t in got)
            break
        origins = set()
        for t in bad:
            node = producer.get(t)
            reads = [i for i in (node.input if node is not None else []) if i in got]
            # an FP32 input that overflows only in its float16 copy for this reader
            cast_overflow = [i for i in reads if got[i].finite and not got.get(i + "__srx_r16", got[i]).finite]
            if cast_overflow:
                origins.update(cast_overflow)
            elif all(got[i].finite for i in reads):
                origins.add(t)
        added = False
        for t in sorted(origins) or bad:
            added |= block_tensor(t, f"{t}: inf/NaN in FP16 (max |x| {ref[t].absmax:.4g} in FP32)")
        if not added or report.rounds >= MAX_ROUNDS:
            report.finite = False
            break
    return to_fp16(model, list(report.blocked)), report


def _ensure_node_names(model: onnx.ModelProto) -> None:
    """The block list works by node name: give unnamed nodes a stable one."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)
