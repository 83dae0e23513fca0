"""The W = 0 graph: the FP32 graph without its noise inputs, for runs without noise.

G-MGBP concatenates a one-channel noise map to the input of every Upscaling call
(cat[r_l, correction, n_l], 97 channels), and its dense layers carry that channel through
their concatenations (97, 113, 129, 145 channels). At W = 0 the channel is zero; each dense
layer's bias and ReLU make it a constant, relu(b), and the 1x1 convolution that reads it
turns that constant into one per output channel: a bias. So the channel can go from every
tensor that carries it, each 1x1 convolution reading it taking its contribution into its
bias: exact in real arithmetic, the widths become multiples of 16 (96, 112, 128, 144), and
the graph has no noise inputs. G-MGBP BOE-R1 x4 on the CSet5 sizes, 2 threads (AMX Xeon,
OpenVINO 2026.4, sum of the five inferences): fp32 1.976 -> 1.885 s, bf16 0.781 -> 0.732 s.

`zero_noise_graph` refuses (returns None) wherever a carrying tensor reaches anything but a
channel Concat, a per-channel Add of a constant, a ReLU or an unpadded 1x1 convolution,
or a graph output: a padded convolution sees the constant only inside the image, so it
would not be a bias there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from srexport.export.cpu_rewrites import REWRITE_TOLERANCE, _drop_dead, _plain_1x1, check_rewrite, verification_feeds
from srexport.onnx_passes import GraphIndex, channel_counts, node_attributes, per_channel

W0_FILE = "model.fp32.w0.onnx"


@dataclass(frozen=True)
class ZeroNoiseRecord:
    """What the manifest records of the W = 0 graph (`Manifest.zero_noise_graph`)."""

    file: str
    dropped_inputs: list[str]
    constant_channels: int  # carrying (tensor, channel) pairs removed, over all tensors
    max_abs_diff_vs_fp32: float
    checked_sizes: list[tuple[int, int]]

    def to_dict(self) -> dict:
        return {"file": self.file, "dropped_inputs": list(self.dropped_inputs),
                "constant_channels": self.constant_channels, "max_abs_diff_vs_fp32": self.max_abs_diff_vs_fp32,
                "checked_sizes": [list(s) for s in self.checked_sizes]}


def zero_noise_graph(model: onnx.ModelProto, noise_inputs: list[str]) -> tuple[onnx.ModelProto, int] | None:
    """A copy of `model` with the zero inputs `noise_inputs` removed (see the module
    docstring) and how many constant (tensor, channel) pairs went; None where it cannot."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = GraphIndex(model)
    channels = channel_counts(model)
    # tensor -> {channel: the value it holds everywhere}
    constant: dict[str, dict[int, float]] = {name: {0: 0.0} for name in noise_inputs}
    if any(channels.get(name) != 1 for name in noise_inputs):
        return None
    edits: list[tuple[onnx.NodeProto, dict[int, float]]] = []
    for node in g.graph.node:
        carried = [constant.get(name) for name in node.input]
        if not any(carried):
            continue
        if node.op_type == "Concat" and node_attributes(node).get("axis") == 1:
            merged, offset = {}, 0
            for name, facts in zip(node.input, carried):
                if name not in channels:
                    return None
                merged.update({offset + k: v for k, v in (facts or {}).items()})
                offset += channels[name]
            constant[node.output[0]] = merged
            edits.append((node, {}))
        elif node.op_type == "Add" and len(node.input) == 2 and carried[0] and not carried[1]:
            bias = per_channel(g.array(node.input[1]), channels.get(node.input[0], -1))
            if bias is None:
                return None
            constant[node.output[0]] = {k: v + float(bias[k]) for k, v in carried[0].items()}
            edits.append((node, carried[0]))
        elif node.op_type == "Relu":
            constant[node.output[0]] = {k: max(v, 0.0) for k, v in carried[0].items()}
        elif _plain_1x1(node, g) and carried[0] and not any(carried[1:]):
            edits.append((node, carried[0]))
        else:
            return None
    if any(o.name in constant for o in g.graph.output):
        return None
    for node, facts in edits:
        if node.op_type == "Concat":
            kept = [name for name in node.input if name not in noise_inputs]
            del node.input[:]
            node.input.extend(kept)
            continue
        gone = sorted(facts)
        if node.op_type == "Add":
            bias = g.array(node.input[1])
            flat = np.delete(bias.reshape(-1), gone)
            node.input[1] = g.add_initializer(f"{node.name}.w0", flat.reshape((1, -1, 1, 1)[-bias.ndim:]))
            continue
        weight = g.array(node.input[1]).astype(np.float64)
        bias = g.array(node.input[2]).astype(np.float64) if len(node.input) >= 3 and node.input[2] else \
            np.zeros(weight.shape[0])
        bias = bias + sum(weight[:, k, 0, 0] * facts[k] for k in gone)
        node.input[1] = g.add_initializer(f"{node.name}.w0.weight", np.delete(weight, gone, axis=1))
        if len(node.input) >= 3:
            node.input[2] = g.add_initializer(f"{node.name}.w0.bias", bias)
        else:
            node.input.append(g.add_initializer(f"{node.name}.w0.bias", bias))
    kept_inputs = [i for i in g.graph.input if i.name not in noise_inputs]
    del g.graph.input[:]
    g.graph.input.extend(kept_inputs)
    del g.graph.value_info[:]  # channel counts changed
    _drop_dead(model)  # the replaced biases and weights
    onnx.checker.check_model(model, full_check=True)
    return model, sum(len(f) for f in constant.values())


def build_zero_noise(model, fp32: onnx.ModelProto) -> tuple[onnx.ModelProto, ZeroNoiseRecord] | None:
    """The build's step for `model` (an SRModel) with noise inputs: the W = 0 graph of its
    FP32 graph `fp32`, checked against it with zero noise on the verification sizes (an
    `ExportError` beyond `REWRITE_TOLERANCE`); None where the model has no noise inputs or
    the pass cannot remove them."""
    from srexport.errors import ExportError

    names = [spec.name for spec in model.noise_inputs]
    found = zero_noise_graph(fp32, names) if names else None
    if found is None:
        return None
    graph, channels = found
    feeds, sizes = verification_feeds(model, zero_noise=True)
    worst = check_rewrite(fp32, graph, feeds)
    if not np.isfinite(worst) or worst > REWRITE_TOLERANCE:
        raise ExportError(f"the W = 0 graph differs from the FP32 graph with zero noise by {worst:.3g} "
                          f"(> {REWRITE_TOLERANCE:g}); bundle not written")
    return graph, ZeroNoiseRecord(W0_FILE, names, channels, worst, sizes)
