"""The graph an ONNX Runtime CPU session runs: the bundle's float graph with its pixel
shuffles in the form ONNX Runtime computes fastest.

ONNX Runtime's CPU DepthToSpace is a six-dimensional transpose whose innermost copy strides
across whole planes. A CRD DepthToSpace of block r is also a ConvTranspose of stride r with
one group per output channel, r^2 inputs each and one-hot r x r kernels: every output value
is one input value times 1 plus r^2 - 1 products with 0, so the result is the same bits
(for finite inputs). PCARN-M's first pixel shuffle (256 channels of 180x320, block 2),
2 threads, ONNX Runtime 1.32, AMD EPYC (AVX2): DepthToSpace 108-110 ms, ConvTranspose
27-28 ms, outputs bit-identical. DCR DepthToSpace keeps its form: the channels of one output
channel are not contiguous there, so no grouped ConvTranspose computes it. OpenVINO, which
runs DepthToSpace natively, gets the bundle's graph unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from srexport.onnx_passes import GraphIndex, channel_counts, node_attributes


def one_hot_shuffle_kernel(channels: int, block: int) -> np.ndarray:
    """ConvTranspose weights (channels, 1, block, block) of a CRD pixel shuffle: input
    channel c * block^2 + i * block + j lands on tap (i, j) of output channel c."""
    weight = np.zeros((channels, 1, block, block), np.float32)
    for c in range(channels):
        tap = c % (block * block)
        weight[c, 0, tap // block, tap % block] = 1.0
    return weight


def shuffles_as_conv_transpose(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """A copy of `model` with every CRD DepthToSpace whose input channel count shape
    inference knows replaced by its one-hot grouped ConvTranspose; and how many were."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    channels = channel_counts(out)
    g = GraphIndex(out)
    replaced = 0
    for node in out.graph.node:
        if node.op_type != "DepthToSpace" or node.domain not in ("", "ai.onnx"):
            continue
        attrs = node_attributes(node)
        block = int(attrs["blocksize"])
        c = channels.get(node.input[0])
        if attrs.get("mode", b"DCR") != b"CRD" or c is None or c % (block * block):
            continue
        weight = g.add_initializer(f"{node.output[0]}_one_hot_kernel", one_hot_shuffle_kernel(c, block))
        node.CopyFrom(helper.make_node(
            "ConvTranspose", [node.input[0], weight], list(node.output), name=node.name or None,
            group=c // (block * block), kernel_shape=[block, block], strides=[block, block]))
        replaced += 1
    return out, replaced


def cpu_session_graph(graph: Path, precision: str) -> tuple[Path | bytes, int]:
    """What an ONNX Runtime CPU session of `precision` loads for the bundle graph `graph`,
    and how many shuffles were rewritten: the float graph (fp32) with its shuffles rewritten,
    as bytes, where it has any; else the path as it is (INT8 and FP16 graphs keep the form
    their builds verified)."""
    if precision != "fp32":
        return graph, 0
    model = onnx.load(str(graph))
    if not any(node.op_type == "DepthToSpace" for node in model.graph.node):
        return graph, 0  # no shape inference for graphs without a shuffle
    rewritten, replaced = shuffles_as_conv_transpose(model)
    return (rewritten.SerializeToString() if replaced else graph), replaced
