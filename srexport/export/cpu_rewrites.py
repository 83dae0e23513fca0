"""ONNX graph passes that remove work the CPU should not pay for, applied at build time.

Each pass is exact in real arithmetic; in float32 it only reassociates sums. The build
checks the rewritten graph against the exported FP32 graph on random inputs (`check_rewrite`,
max |diff| <= `REWRITE_TOLERANCE`) and records the passes and the figure in the manifest.

- `fold_trailing_1x1`: a convolution followed by a 1x1 convolution (PCARN's add-mean shift
  after its exit convolution) becomes one convolution, W' = W1 W, b' = W1 b + b1. The reverse
  (PCARN's sub-mean shift into its entry convolution) is not exact: the entry convolution
  zero-pads the shifted image, so the border would see -mean instead of 0;
- `identity_1x1_to_add`: a 1x1 convolution whose weight is the identity (PCARN's sub-mean
  shift) becomes an Add of its bias (a per-channel add instead of a convolution);
- `split_concat_conv`: a 1x1 convolution of a channel concatenation (CARN's cascading
  blocks, chains of Concat feeding Concat) becomes a sum of 1x1 convolutions of the
  concatenated tensors, one weight slice each. OpenVINO runs those concatenations with its
  reference kernel (they feed several consumers, so they cannot be laid out in place),
  while it fuses the Adds into the convolutions as sum post-ops;
- `conv_before_depth_to_space`: a convolution right after a pixel shuffle (CRD
  DepthToSpace of block r) with fewer than C / r^2 outputs (PCARN's exit convolution to
  RGB) moves before the shuffle, on the coarse grid, with r^2 times its outputs; the
  shuffle then moves 12 channels instead of 64. Zero padding maps exactly: a fine pixel
  outside the image lies in a coarse pixel outside it. r^2 = 4x that convolution's
  multiply-adds, yet PCARN-M x4 at 320x180, 2 threads (AMX Xeon): bf16 0.104 -> 0.085 s,
  fp32 0.322-0.333 -> 0.309-0.314 s (the shuffle of 64 channels at 1280x720 was 24% of a
  bf16 frame);
- `split_sparse_taps`: a convolution most of whose (output, tap) kernels are zero becomes a
  1x1 convolution to one channel per non-zero tap, a depthwise convolution that shifts each
  by its tap and a 1x1 sum: the coarse exit above reads 2x2 of its 3x3 taps per sub-pixel,
  so 4/9 of its multiply-adds remain, in a 1x1 of 48 outputs that AMX and AVX-512 run at
  full width. PCARN-M-L1 x4, 320x180, 2 threads (AMX Xeon): the exit 15.9 -> 11.7 ms in bf16
  (frames 103-109 -> 99-102 ms end to end), ONNX Runtime fp32 327 -> 292-298 ms a frame,
  CSet14 folder run 1.21 -> 1.13 s. A grouped convolution of 4 inputs per output for the
  shift-and-sum ran slower (8.9 ms against 2.3 + 3.3). INT8 is quantized without it
  (`FLOAT_ONLY_PASSES`);
- `unshare_conv_bias`: a bias shared by several convolutions (G-MGBP and MGBP apply one
  block, one set of weights, at several grid levels) gets one copy per convolution.
  OpenVINO fuses a convolution's bias and the activation after it into the convolution
  only where the bias constant has that one consumer; shared, the two stay a separate
  elementwise subgraph over the whole activation. G-MGBP BOE-R1 x4, 128x128, fp32, 2
  threads (AMX Xeon): elementwise subgraphs 224 -> 149 ms, the inference 0.898 -> 0.862 s.

Grouped convolutions are kept grouped: on PCARN-M (4 groups of 16 channels) the dense
block-diagonal form costs 4x the FLOPs, and the whole network ran at 0.66x the speed of the
grouped one on OpenVINO's AVX2 kernels (160x90 input, LATENCY, 2 threads, one loaded run);
with AMX (Xeon, 180x180 input, LATENCY, 2 threads, sum of OpenVINO's per-node times) bf16
took 60.0 ms dense against 47.7-48.3 ms grouped, f32 290 ms against 175-181 ms. The int8 graph
keeps them grouped too: with its 20 grouped convolutions made block-diagonal (the int8 weights
padded with zeros, outputs bit-identical), AMX-INT8 ran them in 53 ms against 44 ms grouped
(320x180 input, LATENCY, 2 threads, per-node sums; the frame 105-106 ms against 97 ms).

G-MGBP's dense layers keep their concatenations. Each feeds a per-channel bias and ReLU
(the pre-activation) and then a 1x1 convolution, which can be split per part like
`split_concat_conv` (bias and ReLU per part, every Concat gone, max difference 1e-6): at
128x128, fp32, 2 threads (AMX Xeon), static shapes ran 1.06-1.10 s against 1.12-1.16 s, but
the compile took 0.8-0.9 s against 0.4 s, and with the dynamic shapes a folder run compiles,
the five CSet5 sizes took 3.9-4.0 s against 3.1-3.2 s (326 small 1x1 convolutions with sum
post-ops cost more than the copies saved); in bf16 it lost too (409 against 391 ms). Nor can
the copies be made in place: OpenVINO's CPU plugin lays channel concatenations in place only
in planar or blocked layouts, and its convolutions here run channels-last (brgconv); forcing
the blocked jit_avx512 kernels (PrimitivesPriority) left 64 of the 98 Concats copying and
made the convolutions slower (1.65 s against 1.17 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx
from onnx import helper

from srexport.onnx_passes import GraphIndex, node_attributes

REWRITE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class RewriteCount:
    name: str
    count: int


def _dense_stride_1(node: onnx.NodeProto, a: dict, g: GraphIndex) -> bool:
    """Group 1, strides and dilations 1, explicit pads, and a constant bias if any."""
    return (a.get("group", 1) == 1 and all(x == 1 for x in a.get("strides", [1, 1]))
            and all(x == 1 for x in a.get("dilations", [1, 1]))
            and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            and not (len(node.input) >= 3 and node.input[2] and g.array(node.input[2]) is None))


def _plain_1x1(node: onnx.NodeProto, g: GraphIndex) -> bool:
    """A dense 1x1, stride-1, unpadded convolution with constant weights."""
    if node.op_type != "Conv" or g.array(node.input[1]) is None:
        return False
    a = node_attributes(node)
    weight = g.array(node.input[1])
    return (weight.ndim == 4 and weight.shape[2:] == (1, 1) and all(p == 0 for p in a.get("pads", [0, 0, 0, 0]))
            and _dense_stride_1(node, a, g))


def _bias(node: onnx.NodeProto, g: GraphIndex, channels: int) -> np.ndarray:
    if len(node.input) >= 3 and node.input[2]:
        return g.array(node.input[2]).astype(np.float64)
    return np.zeros(channels, np.float64)


def _replace(g: GraphIndex, old: onnx.NodeProto, new: list[onnx.NodeProto]) -> None:
    nodes = list(g.graph.node)
    at = nodes.index(old)
    del g.graph.node[:]
    g.graph.node.extend(nodes[:at] + new + nodes[at + 1:])


def _remove(g: GraphIndex, node: onnx.NodeProto) -> None:
    # by value: rebuilding the node list (`_replace`) copies the messages
    nodes = [n for n in g.graph.node if n != node]
    del g.graph.node[:]
    g.graph.node.extend(nodes)


def _rewrite_until_done(model: onnx.ModelProto, rewrite_one: Callable[[GraphIndex, onnx.NodeProto], bool]) -> int:
    """Offers the nodes to `rewrite_one` in order until it rewrites one (True), rebuilds the
    graph's views and starts again, until no node is rewritten; returns how many were."""
    count = 0
    while True:
        g = GraphIndex(model)
        if not any(rewrite_one(g, node) for node in g.graph.node):  # stops at the first rewrite
            return count
        count += 1


def _fold_into_previous(g: GraphIndex, second: onnx.NodeProto) -> bool:
    if not _plain_1x1(second, g):
        return False
    first = g.producer.get(second.input[0])
    if first is None or first.op_type != "Conv" or g.array(first.input[1]) is None:
        return False
    if node_attributes(first).get("group", 1) != 1 or len(g.consumers[first.output[0]]) != 1:
        return False
    if first.output[0] in g.outputs or (len(first.input) >= 3 and g.array(first.input[2]) is None):
        return False
    w1 = g.array(second.input[1])[:, :, 0, 0].astype(np.float64)
    w = g.array(first.input[1]).astype(np.float64)
    b = _bias(first, g, w.shape[0])
    weight = np.einsum("pk,kchw->pchw", w1, w)
    bias = w1 @ b + _bias(second, g, w1.shape[0])
    wn = g.add_initializer(f"{first.name or 'conv'}.folded.weight", weight)
    bn = g.add_initializer(f"{first.name or 'conv'}.folded.bias", bias)
    fused = helper.make_node("Conv", [first.input[0], wn, bn], list(second.output), name=g.fresh(f"{first.name}_folded"))
    fused.attribute.extend(first.attribute)
    _replace(g, second, [fused])
    _remove(g, first)
    return True


def fold_trailing_1x1(model: onnx.ModelProto) -> int:
    """Conv (group 1) -> dense 1x1 Conv, the first's output used only there: one Conv."""
    return _rewrite_until_done(model, _fold_into_previous)


def _identity_to_add(g: GraphIndex, node: onnx.NodeProto) -> bool:
    if not _plain_1x1(node, g) or len(node.input) < 3 or not node.input[2]:
        return False
    w = g.array(node.input[1])[:, :, 0, 0]
    if w.shape[0] != w.shape[1] or not np.array_equal(w, np.eye(w.shape[0], dtype=w.dtype)):
        return False
    # (C, 1, 1), not (1, C, 1, 1): OpenCV DNN 4.6 (libsrexport) fails on the latter at batch > 1
    bias = g.array(node.input[2]).reshape(-1, 1, 1)
    bn = g.add_initializer(f"{node.name or 'shift'}.bias4d", bias)
    add = helper.make_node("Add", [node.input[0], bn], list(node.output), name=g.fresh(f"{node.name}_add"))
    _replace(g, node, [add])
    return True


def identity_1x1_to_add(model: onnx.ModelProto) -> int:
    """A 1x1 Conv with identity weight and a bias -> Add(x, bias)."""
    return _rewrite_until_done(model, _identity_to_add)


def _concat_leaves(name: str, g: GraphIndex, rewritten: set[str]) -> list[str] | None:
    """The tensors a channel Concat joins, nested channel Concats expanded, in order."""
    node = g.producer.get(name)
    if node is None or node.op_type != "Concat" or node_attributes(node).get("axis") not in (1, -3):
        return None
    leaves = []
    for part in node.input:
        inner = _concat_leaves(part, g, rewritten)
        if inner is None:
            leaves.append(part)
        else:
            leaves.extend(inner)
    return leaves


def _channels(name: str, g: GraphIndex, memo: dict[str, int]) -> int | None:
    """Channel count of a tensor produced by a Conv or a channel Concat of such tensors."""
    if name in memo:
        return memo[name]
    node = g.producer.get(name)
    found = None
    if node is None:
        found = None
    elif node.op_type == "Conv" and g.array(node.input[1]) is not None:
        found = int(g.array(node.input[1]).shape[0])
    elif node.op_type in ("Relu", "LeakyRelu", "Add", "Mul", "Sigmoid", "Clip", "PRelu") and node.input:
        found = _channels(node.input[0], g, memo)
    elif node.op_type == "Concat" and node_attributes(node).get("axis") in (1, -3):
        parts = [_channels(p, g, memo) for p in node.input]
        found = None if any(p is None for p in parts) else sum(parts)
    memo[name] = found
    return found


def split_concat_conv(model: onnx.ModelProto) -> int:
    """1x1 Conv of a channel Concat -> sum of 1x1 Convs of its (flattened) parts."""
    count = 0
    g = GraphIndex(model)
    memo: dict[str, int] = {}
    for conv in list(g.graph.node):
        if not _plain_1x1(conv, g):
            continue
        leaves = _concat_leaves(conv.input[0], g, set())
        if leaves is None or len(leaves) < 2:
            continue
        widths = [_channels(leaf, g, memo) for leaf in leaves]
        w = g.array(conv.input[1])
        if any(c is None for c in widths) or sum(widths) != w.shape[1]:
            continue
        bias = _bias(conv, g, w.shape[0])
        new, start, total = [], 0, None
        for k, (leaf, width) in enumerate(zip(leaves, widths)):
            wn = g.add_initializer(f"{conv.name}.part{k}.weight", w[:, start:start + width])
            start += width
            inputs = [leaf, wn]
            if k == 0:
                inputs.append(g.add_initializer(f"{conv.name}.part0.bias", bias))
            part = g.fresh(f"{conv.output[0]}_part{k}")
            node = helper.make_node("Conv", inputs, [part], name=g.fresh(f"{conv.name}_part{k}"))
            node.attribute.extend(conv.attribute)
            new.append(node)
            if total is None:
                total = part
                continue
            out = conv.output[0] if k == len(leaves) - 1 else g.fresh(f"{conv.output[0]}_sum{k}")
            new.append(helper.make_node("Add", [total, part], [out], name=g.fresh(f"{conv.name}_sum{k}")))
            total = out
        _replace(g, conv, new)
        count += 1
    if count:
        _drop_dead(model)
    return count


def _depth_to_space_kernel(weight: np.ndarray, block: int, pad: int) -> tuple[np.ndarray, int, int]:
    """The coarse-grid weight of a (stride 1, `pad`-padded) convolution applied after a CRD
    DepthToSpace of `block`, and the coarse kernel's padding before and after.

    Output sub-pixel (a, b) of coarse pixel (i, j) reads fine pixel (block i + a + dy - pad,
    ...) = channel c * block^2 + p * block + q of coarse pixel (i + u, ...), where
    a + dy - pad = block u + p (0 <= p < block)."""
    out_c, in_c, kh, kw = weight.shape
    low = -((pad + block - 1) // block)  # floor(-pad / block)
    high = (block - 1 + kh - 1 - pad) // block
    size = high - low + 1
    folded = np.zeros((out_c * block * block, in_c * block * block, size, size))
    for a in range(block):
        for b in range(block):
            rows = np.arange(out_c) * block * block + a * block + b
            for dy in range(kh):
                u, p = divmod(a + dy - pad, block)
                for dx in range(kw):
                    v, q = divmod(b + dx - pad, block)
                    cols = np.arange(in_c) * block * block + p * block + q
                    folded[np.ix_(rows, cols, [u - low], [v - low])] += weight[:, :, dy, dx][:, :, None, None]
    return folded, -low, high


def _move_before_shuffle(g: GraphIndex, conv: onnx.NodeProto) -> bool:
    shuffle = g.producer.get(conv.input[0]) if conv.op_type == "Conv" else None
    if shuffle is None or shuffle.op_type != "DepthToSpace" or len(g.consumers[shuffle.output[0]]) != 1:
        return False
    a, sa = node_attributes(conv), node_attributes(shuffle)
    weight = g.array(conv.input[1])
    block = int(sa.get("blocksize", 0))
    if (weight is None or weight.ndim != 4 or sa.get("mode", b"DCR") not in (b"CRD", "CRD") or block < 2
            or not _dense_stride_1(conv, a, g)):
        return False
    kh, kw = weight.shape[2:]
    pads = a.get("pads", [0, 0, 0, 0])
    if kh != kw or kh % 2 != 1 or any(x != kh // 2 for x in pads) or weight.shape[0] * block * block >= weight.shape[1]:
        return False
    folded, before, after = _depth_to_space_kernel(weight.astype(np.float64), block, kh // 2)
    bias = np.repeat(_bias(conv, g, weight.shape[0]), block * block)
    wn = g.add_initializer(f"{conv.name}.coarse.weight", folded)
    bn = g.add_initializer(f"{conv.name}.coarse.bias", bias)
    coarse = g.fresh(f"{conv.output[0]}_coarse")
    node = helper.make_node("Conv", [shuffle.input[0], wn, bn], [coarse], name=g.fresh(f"{conv.name}_coarse"),
                            kernel_shape=list(folded.shape[2:]), pads=[before, before, after, after])
    out = helper.make_node("DepthToSpace", [coarse], list(conv.output), name=g.fresh(f"{shuffle.name}_after"),
                           blocksize=block, mode="CRD")
    _replace(g, conv, [node, out])
    _remove(g, shuffle)
    return True


def conv_before_depth_to_space(model: onnx.ModelProto) -> int:
    """DepthToSpace (CRD, block r) -> Conv with fewer than C / r^2 outputs (PCARN's exit
    convolution to RGB after its pixel shuffle) becomes a Conv on the coarse grid to
    outputs x r^2 channels -> DepthToSpace of those: r^2 times the multiply-adds of that
    convolution, but the large DepthToSpace of C channels becomes one of outputs x r^2."""
    return _rewrite_until_done(model, _move_before_shuffle)


SPARSE_TAPS_SHARE = 0.5  # split a kernel where at most this share of its (output, tap) pairs is non-zero


def _split_taps(g: GraphIndex, conv: onnx.NodeProto) -> bool:
    weight = g.array(conv.input[1]) if conv.op_type == "Conv" else None
    if weight is None or weight.ndim != 4 or weight.shape[2] * weight.shape[3] == 1:
        return False
    a = node_attributes(conv)
    if not _dense_stride_1(conv, a, g):
        return False
    out_c, _, kh, kw = weight.shape
    taps = np.argwhere(np.any(weight != 0, axis=1))  # (output, row, column) of every non-zero tap
    if len(taps) > SPARSE_TAPS_SHARE * out_c * kh * kw:
        return False
    gather = np.stack([weight[o, :, u, v] for o, u, v in taps])[:, :, None, None]
    shift = np.zeros((len(taps), 1, kh, kw))
    shift[np.arange(len(taps)), 0, taps[:, 1], taps[:, 2]] = 1.0
    total = np.zeros((out_c, len(taps), 1, 1))
    total[taps[:, 0], np.arange(len(taps))] = 1.0
    gathered, shifted = g.fresh(f"{conv.output[0]}_taps"), g.fresh(f"{conv.output[0]}_shifted")
    nodes = [
        helper.make_node("Conv", [conv.input[0], g.add_initializer(f"{conv.name}.taps.weight", gather)], [gathered],
                         name=g.fresh(f"{conv.name}_taps"), kernel_shape=[1, 1]),
        helper.make_node("Conv", [gathered, g.add_initializer(f"{conv.name}.shift.weight", shift)], [shifted],
                         name=g.fresh(f"{conv.name}_shift"), kernel_shape=[kh, kw], group=len(taps),
                         pads=list(a.get("pads", [0, 0, 0, 0]))),
        helper.make_node("Conv", [shifted, g.add_initializer(f"{conv.name}.sum.weight", total),
                                  g.add_initializer(f"{conv.name}.sum.bias", _bias(conv, g, out_c))],
                         list(conv.output), name=g.fresh(f"{conv.name}_sum"), kernel_shape=[1, 1]),
    ]
    _replace(g, conv, nodes)
    return True


def split_sparse_taps(model: onnx.ModelProto) -> int:
    """A convolution most of whose (output, tap) kernels are zero (the coarse-grid exit that
    `conv_before_depth_to_space` writes: each sub-pixel reads 2x2 of its 3x3 taps) becomes
    a 1x1 convolution to one channel per non-zero tap, a depthwise convolution that shifts
    each channel by its tap, and a 1x1 convolution that sums each output's taps (with the
    bias): the multiply-adds of the zero taps are gone."""
    return _rewrite_until_done(model, _split_taps)


def unshare_conv_bias(model: onnx.ModelProto) -> int:
    """A bias initializer shared by several Conv / ConvTranspose nodes -> one copy per node
    (the first keeps the original); returns the copies made."""
    g = GraphIndex(model)
    copies = 0
    seen: set[str] = set()
    for node in g.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 3 or not node.input[2]:
            continue
        name = node.input[2]
        if g.array(name) is None:
            continue
        if name in seen:
            node.input[2] = g.add_initializer(f"{name}.{node.name or 'conv'}", g.array(name))
            copies += 1
        seen.add(name)
    return copies


def _drop_dead(model: onnx.ModelProto) -> None:
    """Remove nodes whose outputs nothing uses, then unused initializers."""
    graph = model.graph
    while True:
        used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        alive = [n for n in graph.node if any(o in used for o in n.output)]
        if len(alive) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(alive)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


PASSES: dict[str, Callable[[onnx.ModelProto], int]] = {
    "fold_trailing_1x1": fold_trailing_1x1,
    "identity_1x1_to_add": identity_1x1_to_add,
    "split_concat_conv": split_concat_conv,
    "unshare_conv_bias": unshare_conv_bias,
    "conv_before_depth_to_space": conv_before_depth_to_space,
    "split_sparse_taps": split_sparse_taps,
}
DEFAULT_PASSES = ("fold_trailing_1x1", "identity_1x1_to_add", "split_concat_conv", "unshare_conv_bias",
                  "conv_before_depth_to_space", "split_sparse_taps")
# Passes whose gain is the float kernels': the INT8 graph is quantized from the graph before
# them. Split, PCARN-M's exit put one 8-bit scale on 48 tap channels (PSNR-Y loss 0.131
# against 0.101 dB on CSet5 patches) and the frame ran slower (AMX-INT8, 320x180: 67.9
# against 64.8 ms), the three small convolutions costing more than the int8 one they replace.
FLOAT_ONLY_PASSES = ("split_sparse_taps",)


def rewrite_for_cpu(model: onnx.ModelProto, passes: tuple[str, ...] = DEFAULT_PASSES
                    ) -> tuple[onnx.ModelProto, list[RewriteCount]]:
    """A rewritten copy of `model` and how often each pass applied (passes that found
    nothing are left out)."""
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    counts = []
    for name in passes:
        count = PASSES[name](rewritten)
        if count:
            counts.append(RewriteCount(name, count))
    if counts:
        _drop_dead(rewritten)
        onnx.checker.check_model(rewritten, full_check=True)
    return rewritten, counts


def check_rewrite(original: onnx.ModelProto, rewritten: onnx.ModelProto,
                  feeds: list[dict[str, np.ndarray]]) -> float:
    """Max |diff| of the two graphs' outputs over `feeds` on ONNX Runtime's CPU provider."""
    from srexport.ort import inference_session

    a, b = inference_session(original, threads=1), inference_session(rewritten, threads=1)
    takes = lambda session, feed: {i.name: feed[i.name] for i in session.get_inputs()}  # noqa: E731
    worst = 0.0
    for feed in feeds:
        ya, yb = a.run(None, takes(a, feed))[0], b.run(None, takes(b, feed))[0]
        worst = max(worst, float(np.max(np.abs(ya.astype(np.float64) - yb))))
    return worst


@dataclass(frozen=True)
class RewriteRecord:
    """What the manifest records of the rewrites (`Manifest.graph_rewrites`)."""

    passes: list[RewriteCount]
    max_abs_diff_vs_export: float
    checked_sizes: list[tuple[int, int]]
    tolerance: float = REWRITE_TOLERANCE
    float_only: tuple[str, ...] = ()  # applied passes that the INT8 graph is quantized without

    def to_dict(self) -> dict:
        return {"passes": [{"name": p.name, "count": p.count} for p in self.passes],
                "max_abs_diff_vs_export": self.max_abs_diff_vs_export,
                "checked_sizes": [list(s) for s in self.checked_sizes], "tolerance": self.tolerance,
                "float_only": list(self.float_only)}


@dataclass(frozen=True)
class CpuGraphs:
    """The build's graphs: `fp32` after every pass (model.fp32.onnx); `quantizable`, the one
    INT8 quantizes, after every pass but FLOAT_ONLY_PASSES, or None where none of those
    applied (INT8 quantizes `fp32`); `record` is None where no pass applied (`fp32` is the
    export)."""

    fp32: onnx.ModelProto
    quantizable: onnx.ModelProto | None
    record: RewriteRecord | None


def verification_feeds(model, zero_noise: bool = False) -> tuple[list[dict[str, np.ndarray]], list[tuple[int, int]]]:
    """Random inputs of `model` (an SRModel) at its verification sizes, legal-padded, with
    its example noise (zeros with `zero_noise`), and those sizes."""
    from srexport.export.onnx_export import input_names
    from srexport.export.parity import verification_sizes
    from srexport.runtime.padding import pad_to_legal

    rules = model.shape_rules()
    names = input_names(model)
    feeds, sizes = [], []
    for height, width in verification_sizes(rules):
        rng = np.random.default_rng(height * 7919 + width)
        image = pad_to_legal(rng.random((1, 3, height, width), dtype=np.float32), rules)
        inputs = model.example_inputs(1, *image.shape[-2:])
        feed = {names[0]: image}
        for name, tensor in zip(names[1:], inputs[1:]):
            feed[name] = np.zeros_like(tensor.numpy()) if zero_noise else tensor.numpy()
        feeds.append(feed)
        sizes.append(tuple(image.shape[-2:]))
    return feeds, sizes


def rewrite_exported(model, exported: onnx.ModelProto) -> CpuGraphs:
    """The build's step: rewrite the exported FP32 graph of `model` (an SRModel) for the
    CPU and check both graphs against the export on the verification sizes; an
    `ExportError` when either differs by more than `REWRITE_TOLERANCE`."""
    from srexport.errors import ExportError

    quantizable, counts = rewrite_for_cpu(exported, tuple(p for p in DEFAULT_PASSES if p not in FLOAT_ONLY_PASSES))
    rewritten, float_counts = rewrite_for_cpu(quantizable, FLOAT_ONLY_PASSES)
    if not float_counts:
        rewritten, quantizable = quantizable, None
    counts += float_counts
    if not counts:
        return CpuGraphs(exported, None, None)
    feeds, sizes = verification_feeds(model)
    worst = max(check_rewrite(exported, graph, feeds) for graph in (rewritten, quantizable) if graph is not None)
    if not np.isfinite(worst) or worst > REWRITE_TOLERANCE:
        raise ExportError(f"the CPU graph rewrites ({', '.join(c.name for c in counts)}) change the output by "
                          f"{worst:.3g} (> {REWRITE_TOLERANCE:g}); bundle not written")
    record = RewriteRecord(counts, worst, sizes, float_only=tuple(c.name for c in float_counts))
    return CpuGraphs(rewritten, quantizable, record)
