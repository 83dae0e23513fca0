"""Fuse the exported VN+SC decomposition of a discriminator graph into one plugin node.

`sr-export build --model discriminator` exports VN+SC as standard ONNX ops (slices,
products, a Gaussian convolution, ...: every backend runs it). With `--plugins` the build
calls `fuse_vnsc(model)`, which replaces each VN+SC subgraph by one node

    VNSC(rgb) -> v        domain "srexport", attributes plugin_namespace="srexport",
                          plugin_version="1"

that TensorRT's ONNX parser maps to the plugin registered by
`srexport.kernels.trt_plugin.register()` (plugin "srexport::VNSC": the parser looks the
node's op_type up in the plugin registry under the `plugin_namespace` attribute).

A subgraph is recognised structurally: 49 consecutive inputs of a channel Concat that are
products sharing one factor N (the exporter may merge VN+SC's own Concat with the one
that joins it to the previous stage's features), traced back to the RGB tensor whose three
channels are sliced out for the luminance; the subgraph is everything on a path from that
tensor to the products, and nothing outside may read its inner tensors. With `verify=True` (the default) every matched subgraph is also
run on its own with ONNX Runtime and compared with the PyTorch reference
`srexport.models.discriminator.VNSC` before it is replaced, so a graph is never rewritten
into something that computes differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from srexport.errors import ExportError

DOMAIN = "srexport"
OP_TYPE = "VNSC"
PLUGIN_NAMESPACE = "srexport"
PLUGIN_VERSION = "1"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{OP_TYPE}"
CHANNELS = 49
VERIFY_TOLERANCE = 1e-4  # relative to max(|reference|, 1)

# Ops a VN+SC decomposition may consist of (anything else means we matched wrongly).
_REGION_OPS = {
    "Slice", "Split", "Gather", "Mul", "Add", "Sub", "Div", "Pow", "Sqrt", "Clip", "Max", "Relu", "Pad", "Conv",
    "Concat", "Shape", "ConstantOfShape", "Constant", "Unsqueeze", "Squeeze", "Cast", "Reshape", "Expand",
    "Identity", "ReduceSum", "Neg",
}


@dataclass
class VnscMatch:
    source: str  # the RGB tensor
    concat: int  # index of the channel Concat holding the 49 products
    start: int  # the products are inputs start .. start + 48 of that Concat
    products: list[str]  # the 49 product tensors
    nodes: list[int]  # indices of the subgraph's nodes in graph.node (the Concat excluded)
    deps: list[int]  # constant-only nodes outside it that it reads (kept in the graph)

    def whole(self, graph: onnx.GraphProto) -> bool:
        """The Concat is exactly the 49 products (else it also joins other tensors)."""
        return len(graph.node[self.concat].input) == CHANNELS


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def _channel_source(node: onnx.NodeProto, consts: dict[str, np.ndarray]) -> str | None:
    """The data input of a node that takes one channel (axis 1) out of a tensor, else None."""
    if node.op_type == "Slice" and len(node.input) >= 4:
        try:
            starts, ends, axes = (consts[name].reshape(-1).tolist() for name in node.input[1:4])
        except KeyError:
            return None
        if axes in ([1], [-3]) and len(starts) == 1 and ends[0] - starts[0] == 1 and starts[0] in (0, 1, 2):
            return node.input[0]
    if node.op_type == "Split" and _attr(node, "axis", 0) == 1 and len(node.output) == 3:
        return node.input[0]
    if node.op_type == "Gather" and _attr(node, "axis", 0) == 1:
        index = consts.get(node.input[1])
        if index is not None and index.size == 1 and int(index.reshape(-1)[0]) in (0, 1, 2):
            return node.input[0]
    return None


def find_vnsc(model: onnx.ModelProto) -> list[VnscMatch]:
    """The VN+SC subgraphs of `model`, in graph order."""
    graph = model.graph
    consts = _constants(graph)
    producer: dict[str, int] = {}
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            producer[out] = i
        for inp in node.input:
            consumers.setdefault(inp, []).append(i)
    graph_outputs = {o.name for o in graph.output}

    def ancestors(index: int) -> set[int]:
        seen: set[int] = set()
        stack = [index]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(producer[name] for name in graph.node[i].input if name in producer)
        return seen

    def descendants(tensor: str) -> set[int]:
        seen: set[int] = set()
        stack = list(consumers.get(tensor, []))
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            for out in graph.node[i].output:
                stack.extend(consumers.get(out, []))
        return seen

    def ancestors_of(indices) -> set[int]:
        out: set[int] = set()
        for i in indices:
            out |= ancestors(i)
        return out

    graph_inputs = {i.name for i in graph.input}
    matches = []
    for ci, node in enumerate(graph.node):
        if node.op_type != "Concat" or _attr(node, "axis") not in (1, -3) or len(node.input) < CHANNELS:
            continue
        start = 0
        while start + CHANNELS <= len(node.input):
            match = _match_window(graph, node, ci, start, producer, consumers, consts, graph_outputs, graph_inputs,
                                  ancestors_of, descendants)
            if match is None:
                start += 1
            else:
                matches.append(match)
                start += CHANNELS
    return matches


def _match_window(graph, node, ci, start, producer, consumers, consts, graph_outputs, graph_inputs, ancestors_of,
                  descendants) -> VnscMatch | None:
    """A VN+SC whose 49 products are node.input[start:start + 49], or None."""
    products = list(node.input[start:start + CHANNELS])
    if any(name not in producer for name in products):
        return None
    mul_idx = [producer[name] for name in products]
    muls = [graph.node[i] for i in mul_idx]
    if any(m.op_type != "Mul" or len(m.input) != 2 for m in muls):
        return None
    common = set(muls[0].input)
    for m in muls[1:]:
        common &= set(m.input)
    if len(common) != 1:
        return None
    # the products feed this Concat only
    if any(name in graph_outputs or consumers.get(name, []) != [ci] for name in products):
        return None
    above = ancestors_of(mul_idx)
    sources = {src for i in above if (src := _channel_source(graph.node[i], consts)) is not None}
    if len(sources) != 1:
        return None
    source = sources.pop()
    region = descendants(source) & above
    for i in above - region:  # constants feeding only the region go with it
        n = graph.node[i]
        if n.op_type == "Constant" and all(c in region for out in n.output for c in consumers.get(out, [])):
            region.add(i)
    if any(graph.node[i].op_type not in _REGION_OPS for i in region):
        return None
    if not any(graph.node[i].op_type == "Sqrt" for i in region):  # the normalisation's sqrt(s2)
        return None
    for i in region:  # nothing outside reads an inner tensor
        for out in graph.node[i].output:
            readers = consumers.get(out, [])
            if out in products:
                continue
            if out in graph_outputs or any(c not in region for c in readers):
                return None
    source_chain = set()
    if source in producer:
        source_chain = ancestors_of([producer[source]])
    deps = above - region - source_chain
    if any(name in graph_inputs and name != source for i in deps for name in graph.node[i].input):
        return None  # it reads another graph input: not a self-contained VN+SC
    return VnscMatch(source, ci, start, products, sorted(region), sorted(deps))


def _region_model(model: onnx.ModelProto, match: VnscMatch) -> onnx.ModelProto:
    """The subgraph alone: input `source` (N, 3, H, W) float32, output the 49 channels."""
    graph = model.graph
    output = "vnsc_region_output"
    nodes = [graph.node[i] for i in sorted(match.deps + match.nodes)]
    nodes.append(helper.make_node("Concat", match.products, [output], axis=1))
    used = {name for n in nodes for name in n.input}
    inits = [init for init in graph.initializer if init.name in used]
    sub = helper.make_graph(
        nodes, "vnsc_region",
        [helper.make_tensor_value_info(match.source, onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, ["n", CHANNELS, "h", "w"])],
        inits,
    )
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return helper.make_model(sub, opset_imports=opsets, ir_version=model.ir_version)


def verify_match(model: onnx.ModelProto, match: VnscMatch, sizes=((1, 21, 37), (2, 16, 16))) -> float:
    """Run the matched subgraph with ONNX Runtime against the PyTorch VNSC; return the
    largest error relative to max(|reference|, 1)."""
    import torch

    from srexport.models.discriminator import VNSC
    from srexport.ort import inference_session

    session = inference_session(_region_model(model, match), threads=1)
    reference = VNSC().eval()
    rng = np.random.default_rng(0)
    worst = 0.0
    for n, h, w in sizes:
        x = rng.random((n, 3, h, w), dtype=np.float32)
        got = session.run(None, {match.source: x})[0]
        with torch.no_grad():
            want = reference(torch.from_numpy(x)).numpy()
        if got.shape != want.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - want).max() / max(np.abs(want).max(), 1.0)))
    return worst


def fuse_vnsc(model: onnx.ModelProto, *, verify: bool = True, expected: int | None = None) -> tuple[onnx.ModelProto, int]:
    """Return (a copy of `model` with every VN+SC subgraph replaced by one srexport::VNSC
    plugin node, the number replaced). `expected`: raise ExportError unless exactly that
    many are found (the discriminator has 4: the image and its 3 downscales)."""
    matches = find_vnsc(model)
    if expected is not None and len(matches) != expected:
        raise ExportError(f"found {len(matches)} VN+SC subgraphs to fuse, expected {expected}")
    if verify:
        for match in matches:
            err = verify_match(model, match)
            if not err <= VERIFY_TOLERANCE:
                raise ExportError(f"the subgraph reading {match.source} is not VN+SC (error {err:.2e})")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    if not matches:
        return out, 0
    graph = out.graph
    remove = {i for m in matches for i in m.nodes}
    by_concat: dict[int, list[VnscMatch]] = {}
    for m in matches:
        by_concat.setdefault(m.concat, []).append(m)
    new_nodes = []
    for i, node in enumerate(graph.node):
        if i in remove:
            continue
        if i not in by_concat:
            new_nodes.append(node)
            continue
        inputs = list(node.input)
        fused = []
        for m in sorted(by_concat[i], key=lambda m: -m.start):  # right to left keeps the starts valid
            whole = len(node.input) == CHANNELS
            name = node.output[0] if whole else f"{m.products[0]}_vnsc"
            fused.append(helper.make_node(
                OP_TYPE, [m.source], [name], name=f"{OP_TYPE}_{m.source}".replace("/", "_").strip("_"),
                domain=DOMAIN, plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION,
            ))
            inputs[m.start:m.start + CHANNELS] = [name]
        new_nodes.extend(reversed(fused))
        if len(inputs) > 1 or inputs[0] != node.output[0]:
            concat = onnx.NodeProto()
            concat.CopyFrom(node)
            del concat.input[:]
            concat.input.extend(inputs)
            new_nodes.append(concat)
    new_nodes = _without_dead_nodes(new_nodes, {o.name for o in graph.output})
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for n in graph.node for name in n.input} | {o.name for o in graph.output}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    produced = {name for n in graph.node for name in n.output} | {i.name for i in graph.input}
    infos = [vi for vi in graph.value_info if vi.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(infos)
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, 1))
    return out, len(matches)


def _without_dead_nodes(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """Drop nodes none of whose outputs is read (ONNX ops have no side effects)."""
    while True:
        used = {name for n in nodes for name in n.input} | outputs
        kept = [n for n in nodes if any(o in used for o in n.output if o)]
        if len(kept) == len(nodes):
            return kept
        nodes = kept


def count_vnsc_nodes(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.op_type == OP_TYPE and n.domain == DOMAIN)
