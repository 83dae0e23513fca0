"""FLOP and MAC counts read from an exported ONNX graph, never typed in.

The graph's symbolic dimensions (batch, height, width, noise sizes) are replaced by
concrete input shapes and ONNX shape inference (with data propagation) resolves every
intermediate shape; ONNX Runtime's symbolic shape inference is the fallback when ONNX's
own leaves a counted tensor unknown. Nothing is executed, so counting an 8K workload
costs the same as a 64 x 64 one.

What is counted (one MAC = one multiply-add; `flops` = FLOPs):

- Conv (and QLinearConv / ConvInteger), any groups, strides, dilations, pads:
  MACs = N * C_out * H_out * W_out * (C_in / groups) * kH * kW, every output position
  (positions over zero padding included), FLOPs = 2 MACs. The bias add is not counted.
- ConvTranspose: counted from its input, as the scatter it is:
  MACs = N * C_in * H_in * W_in * (C_out / groups) * kH * kW, FLOPs = 2 MACs. This is
  the convention of models.md (BPP's 27/4 C_k C_(k-1) per flux unit); counting from the
  output (as `thop` does) gives stride^2 times more for a strided transposed conv.
- MatMul / Gemm (and MatMulInteger / QLinearMatMul): MACs = batch * M * K * N,
  FLOPs = 2 MACs.
- InstanceNormalization, LayerNormalization, GroupNormalization: 7 FLOPs per element
  (statistics: sum and sum of squares, 3; normalise: subtract and scale, 2; affine, 2),
  no MACs. BatchNormalization (inference, a folded scale and shift): 2 FLOPs per element.
- Elementwise arithmetic and activations (Add, Sub, Mul, Div, Relu, LeakyRelu, PRelu,
  Clip, Sigmoid, Tanh, ...): 1 FLOP per output element, transcendentals not weighted.
  Reductions: 1 FLOP per input element. Softmax: 3 FLOPs per element.
- Data movement (Concat, Slice, Pad, DepthToSpace, Reshape, Transpose, Cast,
  QuantizeLinear, DequantizeLinear, Resize, ...): 0 FLOPs; they are listed per op type
  with their node count so nothing disappears silently.

`FlopCount.macs` sums the conv-like ops only (what the papers' "MultAdds" and the table
"Cost per output pixel" in models.md count); `FlopCount.flops` is 2 * macs plus the
normalisation and elementwise FLOPs above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import onnx
from srexport.errors import SrExportError

CONV_OPS = ("Conv", "ConvInteger", "QLinearConv")
CONV_TRANSPOSE_OPS = ("ConvTranspose",)
MATMUL_OPS = ("MatMul", "MatMulInteger", "QLinearMatMul", "Gemm")
NORM_FLOPS = {
    "InstanceNormalization": 7,
    "LayerNormalization": 7,
    "GroupNormalization": 7,
    "BatchNormalization": 2,
}
ELEMENTWISE_OPS = frozenset(
    "Add Sub Mul Div Pow Sqrt Reciprocal Neg Abs Exp Log Erf Relu LeakyRelu PRelu Elu Selu "
    "Celu Gelu HardSigmoid HardSwish Sigmoid Tanh Softplus Softsign Mish Clip Max Min Mean Sum "
    "Round Floor Ceil Sign Where Equal Less Greater LessOrEqual GreaterOrEqual Not And Or".split()
)
REDUCE_OPS = frozenset(
    "ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare "
    "GlobalAveragePool GlobalMaxPool".split()
)
SOFTMAX_FLOPS = {"Softmax": 3, "LogSoftmax": 3}


class FlopCountError(SrExportError):
    """A graph whose counted tensors have shapes that cannot be resolved."""


@dataclass
class OpTypeCount:
    nodes: int = 0
    macs: int = 0
    flops: int = 0


@dataclass
class FlopCount:
    """MACs and FLOPs of one run of a graph at concrete input shapes."""

    input_shapes: dict[str, tuple[int, ...]]
    output_shape: tuple[int, ...]
    macs: int = 0
    flops: int = 0
    by_op_type: dict[str, OpTypeCount] = field(default_factory=dict)

    @property
    def output_pixels(self) -> int:
        """N * H * W of the (first) graph output."""
        n, _, h, w = self.output_shape
        return n * h * w

    def per_output_pixel(self, pixels: int | None = None) -> tuple[float, float]:
        """(MACs, FLOPs) per output pixel; `pixels` overrides the graph output's pixel
        count (e.g. the uncropped image when the graph's output includes a valid-size
        border that is cropped away afterwards)."""
        pixels = pixels or self.output_pixels
        return self.macs / pixels, self.flops / pixels

    def to_dict(self) -> dict:
        return {
            "input_shapes": {k: list(v) for k, v in self.input_shapes.items()},
            "output_shape": list(self.output_shape),
            "macs": self.macs,
            "flops": self.flops,
            "by_op_type": {
                k: {"nodes": v.nodes, "macs": v.macs, "flops": v.flops}
                for k, v in sorted(self.by_op_type.items(), key=lambda kv: -kv[1].flops)
            },
        }


def _load(model: onnx.ModelProto | str | Path) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy
    return onnx.load(str(model))


def _fix_inputs(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]]) -> None:
    """Make every graph input concrete and drop stale intermediate/output shapes."""
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        if value.name not in shapes:
            raise FlopCountError(f"no shape given for graph input '{value.name}'")
        dims = value.type.tensor_type.shape.dim
        shape = tuple(int(s) for s in shapes[value.name])
        if len(dims) != len(shape):
            raise FlopCountError(f"input '{value.name}' has rank {len(dims)}, shape given {shape}")
        for dim, size in zip(dims, shape):
            if dim.HasField("dim_value") and dim.dim_value != size:
                raise FlopCountError(f"input '{value.name}' is fixed at {dim.dim_value}, not {size}")
            dim.Clear()
            dim.dim_value = size
    del model.graph.value_info[:]
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            dim.Clear()


def _shape_table(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    table: dict[str, tuple[int, ...] | None] = {}
    values = list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output)
    for value in values:
        if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
            table[value.name] = None
            continue
        dims = value.type.tensor_type.shape.dim
        table[value.name] = (
            tuple(d.dim_value for d in dims) if all(d.HasField("dim_value") for d in dims) else None
        )
    for init in model.graph.initializer:
        table[init.name] = tuple(init.dims)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    table[node.output[0]] = tuple(attr.t.dims)
    return table


def _needed(node: onnx.NodeProto) -> list[str]:
    """Tensors whose shapes a node's count needs."""
    if node.op_type in CONV_OPS:
        w = 3 if node.op_type == "QLinearConv" else 1
        return [node.output[0], node.input[w]]
    if node.op_type in CONV_TRANSPOSE_OPS:
        return [node.input[0], node.input[1]]
    if node.op_type in MATMUL_OPS:
        if node.op_type == "QLinearMatMul":
            return [node.input[0], node.input[3]]
        return [node.input[0], node.input[1]]
    if node.op_type in NORM_FLOPS or node.op_type in ELEMENTWISE_OPS or node.op_type in SOFTMAX_FLOPS:
        return [node.output[0]]
    if node.op_type in REDUCE_OPS:
        return [node.input[0]]
    return []


def _resolve(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    table = _shape_table(inferred)
    if all(table.get(name) for node in inferred.graph.node for name in _needed(node)):
        return table
    try:  # ONNX Runtime's symbolic inference knows more contrib/fused ops
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

        fallback = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
        if fallback is not None:
            more = _shape_table(fallback)
            table.update({k: v for k, v in more.items() if v is not None})
    except Exception:  # pragma: no cover - best effort
        pass
    return table


def _attr(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _count_node(node: onnx.NodeProto, shape) -> tuple[int, int]:
    """(MACs, FLOPs) of one node; `shape(name)` gives a resolved shape."""
    op = node.op_type
    if op in CONV_OPS:
        out = shape(node.output[0])
        weight = shape(node.input[3 if op == "QLinearConv" else 1])
        # weight: (C_out, C_in / groups, k...); every output element reads C_in/g * prod(k)
        macs = math.prod(out) * math.prod(weight[1:])
        return macs, 2 * macs
    if op in CONV_TRANSPOSE_OPS:
        inp = shape(node.input[0])
        weight = shape(node.input[1])
        # weight: (C_in, C_out / groups, k...); every input element scatters to C_out/g * prod(k)
        macs = math.prod(inp) * math.prod(weight[1:])
        return macs, 2 * macs
    if op in MATMUL_OPS:
        a = shape(node.input[0])
        b = shape(node.input[3 if op == "QLinearMatMul" else 1])
        if op == "Gemm":
            m = a[1] if _attr(node, "transA", 0) else a[0]
            k = a[0] if _attr(node, "transA", 0) else a[1]
            n = b[0] if _attr(node, "transB", 0) else b[1]
            macs = m * k * n
        else:
            a2 = (1, *a) if len(a) == 1 else a
            b2 = (*b, 1) if len(b) == 1 else b
            batch = math.prod(_broadcast(a2[:-2], b2[:-2]))
            macs = batch * a2[-2] * a2[-1] * b2[-1]
        return macs, 2 * macs
    if op in NORM_FLOPS:
        return 0, NORM_FLOPS[op] * math.prod(shape(node.output[0]))
    if op in SOFTMAX_FLOPS:
        return 0, SOFTMAX_FLOPS[op] * math.prod(shape(node.output[0]))
    if op in ELEMENTWISE_OPS:
        return 0, math.prod(shape(node.output[0]))
    if op in REDUCE_OPS:
        return 0, math.prod(shape(node.input[0]))
    return 0, 0


def _broadcast(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    return tuple(max(x, y) for x, y in zip(a, b))


def _resolved(model: onnx.ModelProto | str | Path, input_shapes: Mapping[str, Sequence[int]]):
    """(the graph with its inputs fixed to `input_shapes`, shape(name) of any tensor)."""
    proto = _load(model)
    _fix_inputs(proto, input_shapes)
    table = _resolve(proto)

    def shape(name: str) -> tuple[int, ...]:
        resolved = table.get(name)
        if not resolved:
            raise FlopCountError(f"cannot resolve the shape of tensor '{name}' at inputs {dict(input_shapes)}")
        return resolved

    return proto, shape


def count_flops(
    model: onnx.ModelProto | str | Path, input_shapes: Mapping[str, Sequence[int]]
) -> FlopCount:
    """Count MACs and FLOPs of `model` (a path or ModelProto) run once on inputs of
    `input_shapes` (graph input name -> concrete shape, every non-initializer input).

    Subgraphs (If/Loop bodies) are not entered; the zoo's graphs have none.
    """
    proto, shape = _resolved(model, input_shapes)

    result = FlopCount(
        input_shapes={k: tuple(int(s) for s in v) for k, v in input_shapes.items()},
        output_shape=shape(proto.graph.output[0].name),
    )
    for node in proto.graph.node:
        macs, flops = _count_node(node, shape)
        entry = result.by_op_type.setdefault(node.op_type, OpTypeCount())
        entry.nodes += 1
        entry.macs += macs
        entry.flops += flops
        result.macs += macs
        result.flops += flops
    return result


def node_macs(model: onnx.ModelProto | str | Path, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """MACs of each named node (convolutions, transposed convolutions, matrix products) of one
    run of `model` on inputs of `input_shapes`; nodes without MACs are left out."""
    proto, shape = _resolved(model, input_shapes)

    counted = {}
    for node in proto.graph.node:
        if node.op_type in CONV_OPS or node.op_type in CONV_TRANSPOSE_OPS or node.op_type in MATMUL_OPS:
            counted[node.name] = _count_node(node, shape)[0]
    return counted


def bundle_input_shapes(manifest, batch: int, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Graph input shapes of a bundle (image and noise maps) for one patch size."""
    shapes: dict[str, tuple[int, ...]] = {manifest.inputs[0]: (batch, 3, height, width)}
    for noise in manifest.noise_inputs:
        shapes[noise.name] = noise.shape(batch, height, width)
    return shapes


def count_bundle(bundle, height: int, width: int, precision: str = "fp32", batch: int = 1) -> FlopCount:
    """Count one run of a bundle's graph on a (height, width) patch (graph input pixels)."""
    return count_flops(bundle.graph_path(precision), bundle_input_shapes(bundle.manifest, batch, height, width))

