"""INT8 graphs by explicit quantization: QDQ ONNX from representative patches.

Calibration (`calibrate`) measures activation ranges over the calibration patches once
(entropy, percentile or minmax; see its docstring) and caches them in ONNX Runtime's
calibration-cache JSON. Every quantized graph is then made from that cache by
`onnxruntime.quantization.quantize_static` (QDQ format, per-channel weights); the
`quant_pre_process` step is skipped (it fails on these graphs: incomplete symbolic shape
inference).

Two schemes from the same ranges:

- "cpu" (`model.int8.onnx`, what `precision="int8"` runs): uint8 asymmetric activations,
  int8 symmetric per-channel weights with reduce_range (7-bit), every supported op
  quantized so ONNX Runtime fuses the whole trunk into QLinearConv / QLinearAdd /
  QLinearConcat, pixel shuffles moved onto the uint8 side (`commute_dequantize`) and
  dense blocks kept in uint8 for OpenVINO (`srexport.calib.int8_cpu_passes`). 7-bit weights avoid the int16 saturation of the u8 x s8 kernels of
  x86 CPUs without VNNI (AVX2: measured 1.5 dB PSNR-Y lost with 8-bit weights on
  PCARN-M), so the graph gives the same result on every x86 CPU.
- "tensorrt" (`model.int8.tensorrt.onnx`): int8 symmetric activations (zero point 0) and
  weights, float biases: the only QDQ form TensorRT's strongly typed builder accepts.
  ONNX Runtime CPU runs it too, but slower than FP32 (it cannot fuse the ReLUs).

Exclusions (`nodes_to_exclude`) are chosen by measurement (`choose_exclusions` in
`srexport.calib.int8_select`) among `exclusion_candidates` and `module_groups`. Besides
whole nodes left in float, a candidate may keep only some outputs in float
(`float_outputs`, `keep_outputs_float`): a convolution that reads features and writes the
picture (PCARN-M's exit convolution, 4x the pixels of the trunk) then runs on int8 inputs
and weights, while the picture itself is never rounded to 8 bits. Measured on PCARN-M-L1
x4 (2-core AMX Xeon, OpenVINO, one 320x180 frame): 86 ms with that convolution in float,
69 ms with it int8 in, float out, at 0.099 and 0.101 dB PSNR-Y loss on held-out patches.
`qdq_structure` reports, for every Conv/ConvTranspose, whether its weight is quantized
per channel, so the exclusions are recorded and checkable.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from srexport.calib.int8_cpu_passes import bias_adds_to_depthwise, integer_concats, share_concat_ranges
from srexport.onnx_passes import channel_counts, consumers

METHODS = {"entropy": "Entropy", "percentile": "Percentile", "minmax": "MinMax"}
CONV_OPS = ("Conv", "ConvTranspose")


@dataclass(frozen=True)
class Scheme:
    name: str
    activation: str  # QuantType member name
    weight: str
    reduce_range: bool
    extra: dict


SCHEMES = {
    "cpu": Scheme("cpu", "QUInt8", "QInt8", True, {"ActivationSymmetric": False, "WeightSymmetric": True}),
    "tensorrt": Scheme(
        "tensorrt", "QInt8", "QInt8", False,
        {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    ),
}


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantization tools print progress and log warnings (pre-processing
    advice); keep the build's output to our own lines."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def _op_types() -> list[str]:
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class _Reader:
    """CalibrationDataReader over a slice of samples."""

    def __init__(self, samples: Sequence[dict[str, np.ndarray]], names: list[str]):
        self._it = iter(samples)
        self._names = names

    def get_next(self):
        sample = next(self._it, None)
        return None if sample is None else {n: sample[n] for n in self._names}

    def __len__(self):  # pragma: no cover - the API asks for it in strided mode only
        return 0


PERCENTILE = 99.999


def calibrate(
    fp32_path: str | Path,
    samples: Sequence[dict[str, np.ndarray]],
    method: str,
    cache_path: str | Path,
    work_dir: str | Path,
    threads: int = 0,
) -> Path:
    """Collect activation ranges of the FP32 graph over `samples` with `method` and save
    them to `cache_path` (ONNX Runtime's calibration-cache JSON).

    - minmax: min and max of every tensor over all samples;
    - percentile: ONNX Runtime's symmetric percentile rule, computed exactly: t = the
      PERCENTILE-th percentile of |x| over all samples, range = [max(min, -t), min(max, t)];
    - entropy: ONNX Runtime's EntropyCalibrater (KL divergence on 128-bin histograms).

    minmax and percentile run on scalars and top-k lists computed inside the graph
    (`_range_pass`), so memory stays one forward pass whatever the network or the patch
    count; the entropy calibrator keeps every tensor of a pass, so it runs one patch at a time.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData, save_tensors_data

    if method not in METHODS:
        raise ValueError(f"unknown calibration method '{method}' ({', '.join(METHODS)})")
    if not samples:
        raise ValueError("calibration needs at least one sample")
    if method == "entropy":
        return _calibrate_entropy(fp32_path, samples, cache_path, work_dir)
    model = onnx.load(str(fp32_path))
    tensors = _calibrated_tensors(model)
    tail = 0.0 if method == "minmax" else (100.0 - PERCENTILE) / 100.0
    lo, hi, count, tops = _range_pass(model, tensors, samples, tail * len(samples), threads)
    ranges = {}
    for t in tensors:
        if method == "minmax":
            ranges[t] = (lo[t], hi[t])
            continue
        keep = max(1, int(np.ceil(count[t] * tail)))
        values = np.sort(tops[t])[::-1]
        threshold = float(values[min(keep, values.size) - 1]) if values.size else 0.0
        ranges[t] = (max(lo[t], -threshold), min(hi[t], threshold))
    method_enum = getattr(CalibrationMethod, METHODS[method])
    data = TensorsData(method_enum, {
        t: (np.array(a, np.float32), np.array(b, np.float32)) if method == "minmax"
        else (np.array(a, np.float32), np.array(b, np.float32), np.zeros(1, np.int64), np.zeros(2, np.float32))
        for t, (a, b) in ranges.items()
    })
    save_tensors_data(data, Path(cache_path))
    return Path(cache_path)


def _calibrated_tensors(model: onnx.ModelProto) -> list[str]:
    """Float tensors ONNX Runtime's calibrators would calibrate: graph inputs and node
    outputs (initializers excluded)."""
    from srexport.calib.fp16 import float_tensors

    inputs = [i.name for i in model.graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT]
    return inputs + [t for t in float_tensors(model, constants=True) if t not in inputs]


def _range_pass(model, tensors, samples, top_fraction: float, threads: int):
    from srexport.calib.fp16 import instrumented_session
    from srexport.onnx_passes import place_after_producers

    """One pass over `samples` with, computed inside the graph for every tensor: min, max,
    element count and (when top_fraction > 0) the ceil(top_fraction * count) largest |x|.

    With top_fraction = n_samples * (1 - percentile), each sample's top list holds at least
    as many values as the percentile keeps over all samples together, so the union of
    the lists contains the global top and the percentile is exact. The instrumentation is
    placed right after each tensor's producer, so tensors are freed as in a plain run.
    """
    instrumented = onnx.ModelProto()
    instrumented.CopyFrom(model)
    graph = instrumented.graph
    flat, frac, one = "__srx_flat", "__srx_frac", "__srx_one"
    graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array([-1], np.int64), flat),
        onnx.numpy_helper.from_array(np.array(top_fraction, np.float32), frac),
        onnx.numpy_helper.from_array(np.array(1, np.int64), one),
    ])
    index = {t: i for i, t in enumerate(tensors)}
    outputs: list[str] = []

    def probe(t: str) -> list:
        i = index[t]
        lo, hi, n = f"__srx_lo_{i}", f"__srx_hi_{i}", f"__srx_n_{i}"
        nodes = [
            helper.make_node("ReduceMin", [t], [lo], keepdims=0),
            helper.make_node("ReduceMax", [t], [hi], keepdims=0),
            helper.make_node("Size", [t], [n]),
        ]
        graph.output.extend([helper.make_tensor_value_info(lo, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(hi, TensorProto.FLOAT, []),
                             helper.make_tensor_value_info(n, TensorProto.INT64, [])])
        outputs.extend([lo, hi, n])
        if top_fraction > 0:
            x = {k: f"__srx_{k}_{i}" for k in ("abs", "vec", "nf", "kf", "kc", "ki", "k1", "k", "kv", "top", "ix")}
            nodes += [
                helper.make_node("Abs", [t], [x["abs"]]),
                helper.make_node("Reshape", [x["abs"], flat], [x["vec"]]),
                helper.make_node("Cast", [n], [x["nf"]], to=TensorProto.FLOAT),
                helper.make_node("Mul", [x["nf"], frac], [x["kf"]]),
                helper.make_node("Ceil", [x["kf"]], [x["kc"]]),
                helper.make_node("Cast", [x["kc"]], [x["ki"]], to=TensorProto.INT64),
                helper.make_node("Max", [x["ki"], one], [x["k1"]]),
                helper.make_node("Min", [x["k1"], n], [x["k"]]),
                helper.make_node("Reshape", [x["k"], flat], [x["kv"]]),
                helper.make_node("TopK", [x["vec"], x["kv"]], [x["top"], x["ix"]], axis=0, largest=1, sorted=0),
            ]
            graph.output.append(helper.make_tensor_value_info(x["top"], TensorProto.FLOAT, [None]))
            outputs.append(x["top"])
        return nodes

    place_after_producers(graph, {t: probe(t) for t in tensors})
    session = instrumented_session(instrumented, threads)
    inputs = [i.name for i in session.get_inputs()]
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    count = {t: 0 for t in tensors}
    tops: dict[str, list] = {t: [] for t in tensors}
    for sample in samples:
        values = dict(zip(outputs, session.run(outputs, {n: sample[n] for n in inputs})))
        for t, i in index.items():
            lo[t] = min(lo[t], float(values[f"__srx_lo_{i}"]))
            hi[t] = max(hi[t], float(values[f"__srx_hi_{i}"]))
            count[t] += int(values[f"__srx_n_{i}"])
            if top_fraction > 0:
                tops[t].append(values[f"__srx_top_{i}"])
    return lo, hi, count, {t: np.concatenate(v) if v else np.zeros(0, np.float32) for t, v in tops.items()}


def _calibrate_entropy(fp32_path, samples, cache_path, work_dir) -> Path:
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    graph = onnx.load(str(fp32_path))
    names = [i.name for i in graph.graph.input]
    with _quiet():
        calibrator = create_calibrator(
            Path(fp32_path),
            _op_types(),
            augmented_model_path=str(Path(work_dir) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
            extra_options={},
        )
        for sample in samples:  # one at a time: the calibrator keeps every tensor of a pass
            calibrator.collect_data(_Reader([sample], names))
        ranges = calibrator.compute_data()
        save_tensors_data(ranges, Path(cache_path))
    del calibrator
    return Path(cache_path)


def quantize(
    fp32_path: str | Path,
    out_path: str | Path,
    cache_path: str | Path,
    method: str,
    exclude: Iterable[str] = (),
    scheme: str = "cpu",
    float_outputs: Iterable[str] = (),
) -> onnx.ModelProto:
    """Write the QDQ graph of `scheme` from the cached ranges; return it. The nodes of
    `float_outputs` are quantized, but their outputs are not (`keep_outputs_float`). The
    "cpu" scheme quantizes the graph after `bias_adds_to_depthwise`, from the ranges after
    `share_concat_ranges`, and concatenates integers (`integer_concats`); what each pass
    changed is recorded in the graph's metadata (`cpu_passes`)."""
    s = SCHEMES[scheme]
    with tempfile.TemporaryDirectory(prefix="srexport-quantize-") as tmp:
        source, ranges, passes = fp32_path, cache_path, {}
        if scheme == "cpu":
            source, ranges, passes = _cpu_inputs(fp32_path, cache_path, Path(tmp))
        graph = _quantize_static(source, out_path, ranges, method, exclude, s)
    changed = keep_outputs_float(graph, float_outputs) > 0
    if scheme == "cpu":
        passes["commute_dequantize"] = commute_dequantize(graph)
        passes["integer_concats"] = integer_concats(graph)
        _set_metadata(graph, CPU_PASSES_KEY, json.dumps(passes, sort_keys=True))
        changed = True
    if changed:
        onnx.save_model(graph, str(out_path))
    onnx.checker.check_model(graph)
    return graph


CPU_PASSES_KEY = "srexport.int8_cpu_passes"


def _set_metadata(graph: onnx.ModelProto, key: str, value: str) -> None:
    kept = [p for p in graph.metadata_props if p.key != key]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    graph.metadata_props.add(key=key, value=value)


def cpu_passes(graph: onnx.ModelProto) -> dict[str, int]:
    """What the "cpu" scheme's passes changed in a graph `quantize` wrote (its metadata)."""
    for prop in graph.metadata_props:
        if prop.key == CPU_PASSES_KEY:
            return json.loads(prop.value)
    return {}


def _cpu_inputs(fp32_path, cache_path, work: Path) -> tuple[Path, Path, dict[str, int]]:
    """The float graph and the ranges the "cpu" scheme quantizes (srexport.calib.int8_cpu_passes)."""
    graph = onnx.load(str(fp32_path))
    adds = bias_adds_to_depthwise(graph)
    source = Path(fp32_path)
    if adds:
        source = work / "depthwise.onnx"
        onnx.save(graph, str(source))
    ranges = work / "ranges.json"
    widened = share_concat_ranges(graph, Path(cache_path), ranges)
    return source, ranges, {"bias_adds_to_depthwise": adds, "share_concat_ranges": widened}


def _quantize_static(source, out_path, cache_path, method: str, exclude: Iterable[str], s: Scheme) -> onnx.ModelProto:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    with _quiet():
        quantize_static(
            str(source),
            str(out_path),
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=_op_types(),
            per_channel=True,
            reduce_range=s.reduce_range,
            activation_type=getattr(QuantType, s.activation),
            weight_type=getattr(QuantType, s.weight),
            nodes_to_exclude=sorted(exclude),
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            extra_options=dict(s.extra),
            calibration_cache_path=str(cache_path),
        )
    return onnx.load(str(out_path))


# -- structure -------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvInfo:
    name: str
    op_type: str
    in_channels: int
    out_channels: int
    weight_quantized: bool
    per_channel: bool
    weight_qmax: int | None  # largest |quantized weight|: 127 for 8 bits, 64 for reduce_range


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in model.graph.initializer}


def conv_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int, int]]:
    """(node, in channels, out channels) of every Conv/ConvTranspose with a constant
    weight, in graph order (also works on QDQ graphs, through the weight's DQ)."""
    inits = _initializers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    result = []
    for node in model.graph.node:
        if node.op_type not in CONV_OPS or len(node.input) < 2:
            continue
        weight = node.input[1]
        dq = producer.get(weight)
        if dq is not None and dq.op_type == "DequantizeLinear":
            weight = dq.input[0]
        if weight not in inits:
            continue
        shape = list(inits[weight].dims)
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv":
            cin, cout = shape[1] * group, shape[0]
        else:
            cin, cout = shape[0], shape[1] * group
        result.append((node, cin, cout))
    return result


def qdq_structure(model: onnx.ModelProto) -> list[ConvInfo]:
    """For every Conv/ConvTranspose of a QDQ graph: is its weight read through a
    DequantizeLinear of an int8 constant with one scale per output channel?"""
    inits = _initializers(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    infos = []
    for node, cin, cout in conv_layers(model):
        dq = producer.get(node.input[1])
        quantized = per_channel = False
        qmax = None
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
            weight = inits[dq.input[0]]
            quantized = weight.data_type in (TensorProto.INT8, TensorProto.UINT8)
            scale = onnx.numpy_helper.to_array(inits[dq.input[1]]) if dq.input[1] in inits else np.zeros(0)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            channel_axis = 0 if node.op_type == "Conv" else 1
            per_channel = scale.ndim == 1 and axis == channel_axis and scale.size == weight.dims[channel_axis]
            if quantized:
                values = onnx.numpy_helper.to_array(weight).astype(np.int32)
                qmax = int(np.abs(values).max()) if values.size else 0
        infos.append(ConvInfo(node.name, node.op_type, cin, cout, quantized, per_channel, qmax))
    return infos


def image_space_nodes(model: onnx.ModelProto, channels: int = 3) -> list[str]:
    """The network's first and last layers, generalised to SR graphs: every node that
    writes an image-space tensor (`channels` channels: the mean shifts, the residual
    additions and the learned upscalers of the image path) or the sub-pixels of one (a
    convolution whose output only a pixel shuffle to the picture reads), and every Conv
    that reads one (the first feature extractors). These carry the picture itself: 8-bit steps there
    land directly in the output."""
    chans = channel_counts(model)
    readers = consumers(model.graph)

    def shuffled_to_image(name: str) -> bool:
        # a tensor whose only reader is a pixel shuffle that writes the picture holds its sub-pixels
        users = readers.get(name, [])
        return (len(users) == 1 and users[0].op_type == "DepthToSpace"
                and any(chans.get(o) == channels for o in users[0].output))

    names = []
    for node in model.graph.node:
        writes = any(chans.get(o) == channels or shuffled_to_image(o) for o in node.output)
        reads = node.op_type in CONV_OPS and chans.get(node.input[0]) == channels
        if (writes or reads) and node.op_type not in ("Constant", "Shape"):
            names.append(node.name)
    return names


def feature_to_image_convs(model: onnx.ModelProto, channels: int = 3) -> list[str]:
    """The image-space convolutions (`image_space_nodes`) that read features, not the
    picture: the last layers, which turn features into the picture or its sub-pixels. Their
    inputs are features like any other layer's; only their outputs are image-space."""
    chans = channel_counts(model)
    image = set(image_space_nodes(model, channels))
    return sorted(n.name for n in model.graph.node
                  if n.name in image and n.op_type in CONV_OPS and chans.get(n.input[0], channels) != channels)


def keep_outputs_float(model: onnx.ModelProto, names: Iterable[str]) -> int:
    """Remove the QuantizeLinear -> DequantizeLinear pair on the output of each named node,
    in place, so that its readers take the float output; returns the pairs removed. A node
    whose output is not read by exactly one such pair is left as it is."""
    names = set(names)
    if not names:
        return 0
    graph = model.graph
    reading = consumers(graph)
    outputs = {o.name for o in graph.output}
    removed = 0
    for node in [n for n in graph.node if n.name in names]:
        out = node.output[0]
        readers = reading.get(out, [])
        if len(readers) != 1 or readers[0].op_type != "QuantizeLinear" or out in outputs:
            continue
        q = readers[0]
        dqs = reading.get(q.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs) or q.output[0] in outputs:
            continue
        for dq in dqs:
            if dq.output[0] in outputs:  # the float output takes the graph output's name
                node.output[0] = dq.output[0]
                for user in reading.get(out, []):
                    user.input[:] = [dq.output[0] if i == out else i for i in user.input]
                out = dq.output[0]
        for dq in dqs:
            for user in reading.get(dq.output[0], []):
                user.input[:] = [out if i == dq.output[0] else i for i in user.input]
            graph.node.remove(dq)
        graph.node.remove(q)
        removed += 1
    return removed


def module_groups(model: onnx.ModelProto, skip: Iterable[str] = ()) -> dict[str, list[str]]:
    """Nodes by the top-level module that made them (the first component of the exporter's
    node names, "/Analysis/block/..." -> "Analysis"), leaving out `skip`; only groups
    holding a convolution. A module shared by several calls (G-MGBP's Analysis, Upscaling,
    ...) is one group: its calls share weights, so they stand or fall together."""
    skip = set(skip)
    convs = {n.name for n, _, _ in conv_layers(model)}
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        parts = node.name.split("/")
        if len(parts) > 2 and node.name not in skip:
            groups.setdefault(parts[1], []).append(node.name)
    return {g: sorted(names) for g, names in groups.items() if convs & set(names)}


@dataclass(frozen=True)
class Exclusions:
    """Nodes left in float (`excluded`) and nodes computed in int8 whose outputs stay float."""

    label: str
    excluded: tuple[str, ...] = ()
    float_outputs: tuple[str, ...] = ()


IMAGE_OUTPUTS = "image-space outputs in float"
IMAGE_LAYERS = "image-space layers"


def exclusion_candidates(fp32: onnx.ModelProto) -> tuple[list[Exclusions], dict[str, list[str]]]:
    """The first exclusion sets to try: none (all INT8); the image-space layers
    (`image_space_nodes`, the first/last layers of an SR graph) in float except the
    convolutions that read features, which compute in int8 with float outputs
    (`feature_to_image_convs`); and all the image-space layers in float. Plus the module
    groups (`module_groups`) the measurement may add to the last."""
    image = sorted(image_space_nodes(fp32))
    last = feature_to_image_convs(fp32)
    candidates = [Exclusions("none")]
    if last:
        candidates.append(Exclusions(IMAGE_OUTPUTS, tuple(n for n in image if n not in last), tuple(last)))
    candidates.append(Exclusions(IMAGE_LAYERS, tuple(image)))
    return candidates, module_groups(fp32, image)


MOVEMENT_OPS = ("DepthToSpace", "SpaceToDepth")


def commute_dequantize(model: onnx.ModelProto, ops: Sequence[str] = MOVEMENT_OPS) -> int:
    """Move per-tensor DequantizeLinear nodes past pure data-movement ops, in place.

    ONNX Runtime's quantizer leaves DepthToSpace (the pixel shuffle of every SR upsampler)
    unquantized, so it moves float32 data, four times the bytes, at the largest
    resolution of the network. DequantizeLinear with one scale and zero point is
    elementwise, so DQ -> DepthToSpace equals DepthToSpace -> DQ exactly. Returns the
    number of nodes moved."""
    graph = model.graph
    inits = _initializers(model)
    producer = {o: n for n in graph.node for o in n.output}
    moved = 0
    additions: dict[str, list] = {}
    for node in list(graph.node):
        if node.op_type not in ops:
            continue
        dq = producer.get(node.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        params = [inits.get(name) for name in dq.input[1:]]
        if any(p is None for p in params) or any(int(np.prod(p.dims)) != 1 for p in params):
            continue  # per-channel: the channel axis does not survive the move
        out = node.output[0]
        quantized = out + "__srx_q"
        node.input[0] = dq.input[0]
        node.output[0] = quantized
        additions[quantized] = [helper.make_node("DequantizeLinear", [quantized, *dq.input[1:]], [out],
                                                 name=f"{node.name}_dequantize")]
        moved += 1
    if moved:
        from srexport.onnx_passes import place_after_producers, remove_dead_nodes

        place_after_producers(graph, additions)
        remove_dead_nodes(model)
    return moved
