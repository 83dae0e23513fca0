"""Generic passes over ONNX graphs, in place: dead-node removal, topological ordering,
inserting nodes right after a tensor's producer; the channel counts shape inference
knows; a name-indexed view of a graph being rewritten (`GraphIndex`) and node attributes. The precision builds (FP16 conversion, INT8 QDQ placement, calibration probes) and
the build's graph passes are written on top of them."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def node_attributes(node: onnx.NodeProto) -> dict:
    """A node's attributes by name, as Python values (strings as bytes)."""
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class GraphIndex:
    """Name-indexed views of a graph being rewritten (rebuilt after each pass): initializers,
    consumers and producers of each tensor, and fresh names."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.graph = model.graph
        self.init = {t.name: t for t in self.graph.initializer}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.outputs = {o.name for o in self.graph.output}
        self._names = {n.name for n in self.graph.node} | set(self.init) | set(self.producer)

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.init.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def fresh(self, base: str) -> str:
        """A name not used in the graph, derived from `base` (deterministic)."""
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def add_initializer(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        tensor = numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
        self.graph.initializer.append(tensor)
        self.init[name] = tensor
        return name


def channel_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Channels of every rank-4 tensor whose channel count shape inference knows."""
    inferred = onnx.shape_inference.infer_shapes(model)
    chans = {}
    for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            chans[vi.name] = dims[1].dim_value
    return chans


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Every node reading each tensor, in graph order."""
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def per_channel(values: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A constant operand of an NCHW tensor of `channels` channels as one value per channel,
    where its shape is (C, 1, 1) or (1, C, 1, 1); else None."""
    if values is None or values.shape not in ((channels, 1, 1), (1, channels, 1, 1)):
        return None
    return values.reshape(-1)


def place_after_producers(graph: onnx.GraphProto, after: dict[str, list]) -> None:
    """Insert each list of nodes `after[tensor]` right after the node producing `tensor`
    (at the start for graph inputs), keeping the graph topologically ordered."""
    after = dict(after)
    inputs = {i.name for i in graph.input}
    ordered = [n for t in list(after) if t in inputs for n in after.pop(t)]
    for node in list(graph.node):
        ordered.append(node)
        for out in node.output:
            ordered.extend(after.pop(out, []))
    ordered.extend(n for nodes in after.values() for n in nodes)
    del graph.node[:]
    graph.node.extend(ordered)


def remove_dead_nodes(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers that no graph output depends on."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    unused = [i for i in graph.initializer if i.name not in needed]
    for init in unused:
        graph.initializer.remove(init)


def topological_sort(model: onnx.ModelProto) -> None:
    """Order the graph's nodes so every input is produced before it is read (the float16
    converter appends the casts around blocked nodes at the end); stable otherwise."""
    graph = model.graph
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in available for i in node.input):
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input if i not in available})
            raise ValueError(f"graph has a cycle or undefined inputs: {missing[:3]}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
