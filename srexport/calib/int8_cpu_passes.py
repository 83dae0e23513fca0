"""Passes of the "cpu" INT8 scheme that let OpenVINO keep dense blocks in uint8.

ONNX Runtime's QDQ output for a dense block (G-MGBP: every layer reads the concatenation
of all earlier outputs through a per-channel bias and a ReLU) makes OpenVINO leave int8
around every layer: each Concat input is dequantized and quantized again to the Concat's
own scale, and each bias Add runs in float between a DequantizeLinear and a
QuantizeLinear. Measured on G-MGBP BOE-R1 x4, 128x128, 2 threads (AMX Xeon, OpenVINO's
per-node times): of 1.04 s, 0.89 s went to those re-quantizations (FakeQuantize, Convert
and Reorder nodes), 0.13 s to the convolutions. Three passes remove them:

- `bias_adds_to_depthwise` (float graph, before quantization): an Add of a per-channel
  constant to a tensor no convolution owns (a Concat, or a convolution output read
  elsewhere too) becomes a depthwise 1x1 convolution of weight 1 and that bias, exactly
  (x * 1 + b = x + b in float). ONNX Runtime then quantizes it like any convolution
  (int32 bias) instead of quantizing the bias constant to uint8, and OpenVINO runs it
  with the ReLU and the requantization as one uint8 -> uint8 kernel;
- `share_concat_ranges` (calibration ranges): a Concat's output and every input that
  feeds no other Concat take the union of their ranges, so they share one scale and zero
  point. A tensor read by several Concats (G-MGBP's state from the level below) keeps its
  own range, or every block it meets would be quantized with the widest range of all;
- `integer_concats` (QDQ graph, after quantization): a Concat of DequantizeLinear outputs
  read only through QuantizeLinear nodes of one scale and zero point concatenates the
  uint8 tensors themselves; an input of another scale is requantized to the Concat's
  (Q(DQ(x)) with identical parameters is the identity on integers, so the result is
  the same integers).

G-MGBP BOE-R1 x4 on the CSet5 sizes, 2 threads (AMX Xeon, OpenVINO, int8 with bf16
remainder, `srexport.load`, best of 3): 2.27-2.37 s -> 0.66-0.73 s (bf16: 1.00-1.04 s); PSNR-Y
against the FP32 graph 41.9 -> 42.3 dB, loss on the build's held-out patches 0.195 -> 0.18 dB.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from srexport.onnx_passes import channel_counts, consumers, per_channel, place_after_producers, remove_dead_nodes


def _per_channel_bias(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto],
                      channels: dict[str, int]) -> tuple[str, np.ndarray] | None:
    """(the tensor, the bias as a vector) of an Add of a float32 constant with one value per
    channel of that tensor, or None."""
    if node.op_type != "Add" or len(node.input) != 2:
        return None
    constant = [name for name in node.input if name in inits]
    other = [name for name in node.input if name not in inits]
    if len(constant) != 1 or len(other) != 1:
        return None
    bias = numpy_helper.to_array(inits[constant[0]])
    values = per_channel(bias, channels.get(other[0], -1)) if bias.dtype == np.float32 else None
    return None if values is None else (other[0], values)


def bias_adds_to_depthwise(model: onnx.ModelProto) -> int:
    """Replace, in place, each Add of a per-channel constant to a Concat output, or to a
    convolution output that something else reads too, by a depthwise 1x1 Conv (weight 1,
    bias b), keeping the Add's node and output names. Returns the Adds replaced. A graph
    input, a convolution whose only reader is the Add (OpenVINO takes that bias into the
    convolution), or a tensor not known to have the bias's channel count (an Add that
    broadcasts channels) is left alone."""
    graph = model.graph
    channels_of = channel_counts(model)
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers = consumers(graph)
    replaced = 0
    for index, node in enumerate(list(graph.node)):
        found = _per_channel_bias(node, inits, channels_of)
        if found is None:
            continue
        tensor, bias = found
        source = producer.get(tensor)
        if source is None or (source.op_type == "Conv" and len(readers.get(tensor, [])) == 1):
            continue
        channels = bias.size
        weight = f"{node.output[0]}__srx_dw_weight"
        bias_name = f"{node.output[0]}__srx_dw_bias"
        graph.initializer.extend([numpy_helper.from_array(np.ones((channels, 1, 1, 1), np.float32), weight),
                                  numpy_helper.from_array(bias.astype(np.float32), bias_name)])
        conv = helper.make_node("Conv", [tensor, weight, bias_name], list(node.output), name=node.name,
                                group=channels, kernel_shape=[1, 1])
        graph.node.remove(node)
        graph.node.insert(index, conv)
        replaced += 1
    if replaced:
        remove_dead_nodes(model)  # the Adds' bias constants
    return replaced


def concat_range_groups(model: onnx.ModelProto) -> list[list[str]]:
    """The tensors that share one range: each Concat's output with those of its inputs that
    feed no other Concat, joined across Concats that share a tensor (a chain of dense
    layers is one group). Groups of one tensor are left out."""
    graph = model.graph
    concat_reads: dict[str, int] = {}
    for node in graph.node:
        if node.op_type == "Concat":
            for name in node.input:
                concat_reads[name] = concat_reads.get(name, 0) + 1
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        parent.setdefault(name, name)
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for node in graph.node:
        if node.op_type != "Concat":
            continue
        members = [node.output[0]] + [name for name in node.input if concat_reads[name] == 1]
        for name in members[1:]:
            parent[root(name)] = root(members[0])
    groups: dict[str, list[str]] = {}
    for name in parent:
        groups.setdefault(root(name), []).append(name)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def share_concat_ranges(model: onnx.ModelProto, cache_in: Path, cache_out: Path) -> int:
    """Write `cache_out`: the calibration cache `cache_in` (ONNX Runtime's JSON) with every
    `concat_range_groups` group given the union of its members' ranges. Returns the
    tensors whose range was widened."""
    document = json.loads(Path(cache_in).read_text())
    ranges = document["data"]
    widened = 0
    for group in concat_range_groups(model):
        members = [name for name in group if name in ranges]
        if len(members) < 2:
            continue
        low = min(float(ranges[n]["lowest"]["data"]) for n in members)
        high = max(float(ranges[n]["highest"]["data"]) for n in members)
        for name in members:
            entry = ranges[name]
            if (float(entry["lowest"]["data"]), float(entry["highest"]["data"])) != (low, high):
                widened += 1
            entry["lowest"]["data"] = low
            entry["highest"]["data"] = high
    Path(cache_out).write_text(json.dumps(document))
    return widened


def _quantization(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> tuple | None:
    """The scale, zero point (values and type) and axis of a Q or DQ node, or None where
    they are not constants."""
    params = []
    for name in node.input[1:3]:
        if name not in inits:
            return None
        value = numpy_helper.to_array(inits[name])
        params.append((value.dtype.str, value.shape, value.tobytes()))
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    return tuple(params), axis


def integer_concats(model: onnx.ModelProto) -> int:
    """Concatenate quantized integers, in place: a Concat whose inputs are all
    DequantizeLinear outputs and whose output is read only by QuantizeLinear nodes of
    one scale and zero point reads the integers (an input of other parameters through a
    QuantizeLinear to the Concat's), and its readers read it instead of those
    QuantizeLinear outputs. Returns the Concats changed."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    renamed: dict[str, str] = {}
    dropped: set[int] = set()
    requantizers: dict[str, list[onnx.NodeProto]] = {}  # after the DequantizeLinear they read
    changed = 0
    for node in graph.node:
        if node.op_type != "Concat" or node.output[0] in outputs:
            continue
        dequantized = [producer.get(name) for name in node.input]
        quantized = readers.get(node.output[0], [])
        if not quantized or any(q.op_type != "QuantizeLinear" or q.output[0] in outputs for q in quantized):
            continue
        if any(dq is None or dq.op_type != "DequantizeLinear" for dq in dequantized):
            continue
        wanted = {_quantization(q, inits) for q in quantized}
        if len(wanted) != 1 or None in wanted:
            continue
        target = wanted.pop()
        reads = []
        for dq in dequantized:
            if _quantization(dq, inits) == target:
                reads.append(dq.input[0])
                continue
            requant = helper.make_node("QuantizeLinear", [dq.output[0], *quantized[0].input[1:]],
                                       [f"{dq.output[0]}__srx_requant{changed}"], name=f"{dq.name}_requant{changed}")
            requantizers.setdefault(dq.output[0], []).append(requant)
            reads.append(requant.output[0])
        node.input[:] = reads
        node.output[0] = quantized[0].output[0]
        for q in quantized:
            dropped.add(id(q))
            renamed[q.output[0]] = node.output[0]
        changed += 1
    if not changed:
        return 0
    kept = [node for node in graph.node if id(node) not in dropped]
    for node in kept:
        node.input[:] = [renamed.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    place_after_producers(graph, requantizers)
    remove_dead_nodes(model)
    return changed
