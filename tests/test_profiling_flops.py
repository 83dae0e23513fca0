"""The FLOP counter reads the exported graph: hand counts, forward hooks, and the papers.

Conventions (srexport/profiling/flops.py): one MAC = one multiply-add; Conv counts every
output element x C_in/groups x k^2; ConvTranspose counts every INPUT element x
C_out/groups x k^2 (the scatter, as models.md's BPP formula does); FLOPs = 2 MACs for
conv-like ops.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from srexport.models import build_model
from srexport.profiling.flops import count_flops


def _init(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(np.float32), name)


def _tiny_graph() -> onnx.ModelProto:
    """Conv (pad 1) -> Relu -> grouped strided Conv -> grouped ConvTranspose (stride 2,
    output_padding 1) -> InstanceNorm -> dilated Conv -> Add, with symbolic N, H, W."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=4, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node(
            "ConvTranspose", ["c2", "w3"], ["c3"], group=2, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]
        ),
        helper.make_node("InstanceNormalization", ["c3", "s", "t"], ["n"]),
        helper.make_node("Conv", ["n", "w4"], ["c4"], dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("Add", ["c4", "n"], ["y"]),
    ]
    inits = [
        _init("w1", (8, 3, 3, 3)), _init("b1", (8,)), _init("w2", (8, 2, 3, 3)),
        _init("w3", (8, 2, 3, 3)), _init("s", (4,)), _init("t", (4,)), _init("w4", (4, 4, 3, 3)),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H2", "W2"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _tiny_hand_count(n: int, h: int, w: int) -> dict:
    h2, w2 = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1  # strided conv, pad 1
    h3, w3 = 2 * h2, 2 * w2  # (h2-1)*2 - 2 + 3 + 1
    conv = n * 8 * h * w * 3 * 9 + n * 8 * h2 * w2 * (8 // 4) * 9 + n * 4 * h3 * w3 * 4 * 9
    convt = n * 8 * h2 * w2 * (4 // 2) * 9  # input elements x C_out/groups x k^2
    macs = conv + convt
    other = n * 8 * h * w + 7 * n * 4 * h3 * w3 + n * 4 * h3 * w3  # relu, instance norm, add
    return {"macs": macs, "flops": 2 * macs + other, "out": (n, 4, h3, w3), "convt": convt}


@pytest.mark.parametrize("n,h,w", [(1, 16, 16), (2, 21, 12), (3, 7, 30)])
def test_tiny_graph_counts_match_hand_counts(n, h, w):
    model = _tiny_graph()
    count = count_flops(model, {"x": (n, 3, h, w)})
    hand = _tiny_hand_count(n, h, w)
    assert count.output_shape == hand["out"]
    assert count.macs == hand["macs"]
    assert count.flops == hand["flops"]
    assert count.by_op_type["ConvTranspose"].macs == hand["convt"]
    assert count.by_op_type["Conv"].nodes == 3 and count.by_op_type["InstanceNormalization"].nodes == 1
    # The shapes the counter resolved are the ones ONNX Runtime produces.
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.zeros((n, 3, h, w), np.float32)})[0]
    assert out.shape == hand["out"]


def test_matmul_and_gemm_counts():
    nodes = [
        helper.make_node("MatMul", ["a", "b"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "g"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [_init("b", (7, 3)), numpy_helper.from_array(np.array([-1, 15], np.int64), "shape"), _init("g", (2, 15))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    count = count_flops(model, {"a": (4, 5, 7)})
    assert count.by_op_type["MatMul"].macs == 4 * 5 * 7 * 3
    assert count.by_op_type["Gemm"].macs == 4 * 15 * 2
    assert count.flops == 2 * count.macs


class _TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4),
            nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, groups=2),
            nn.Conv2d(4, 3, 5, padding=2, bias=False),
        )

    def forward(self, x):
        return self.body(x)


def _hook_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """The models.md method: forward hooks on the conv and transposed-conv modules (works
    on the meta device too: no memory, no arithmetic)."""
    total = 0

    def hook(module, args, output):
        nonlocal total
        k = int(np.prod(module.kernel_size))
        if isinstance(module, nn.ConvTranspose2d):
            total += args[0].numel() * module.out_channels // module.groups * k
        else:
            total += output.numel() * module.in_channels // module.groups * k

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def test_torch_exported_net_matches_forward_hooks():
    model = _TinyNet().eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.rand(1, 3, 16, 16),), buffer, dynamo=False, opset_version=17,
            input_names=["image"], output_names=["output"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"}},
        )
    graph = onnx.load_from_string(buffer.getvalue())
    for n, h, w in [(1, 24, 40), (2, 17, 9)]:
        count = count_flops(graph, {"image": (n, 3, h, w)})
        assert count.macs == _hook_macs(model, torch.rand(n, 3, h, w))
        assert count.output_shape == tuple(model(torch.rand(n, 3, h, w)).shape)


def test_missing_input_shape_is_a_clear_error():
    with pytest.raises(Exception, match="no shape given for graph input 'x'"):
        count_flops(_tiny_graph(), {})


# ---------------------------------------------------------------- the zoo vs the papers
def test_pcarn_m_x4_720p_matches_the_paper_multadds():
    """PCARN paper Tables 4/5: PCARN-M 4x, 1280x720 output, 32.5 G MultAdds.

    Tolerance 0.05 G: the paper prints one decimal (32.45 .. 32.55 G all print as 32.5 G);
    models.md's "about 35,300 MAC per output pixel" is the same figure per pixel (50 MAC/px
    tolerance, its last rounded digit). The graph counts 32.49 G: every conv, including
    the frozen mean shifts and the grouped upsampler.
    """
    count = count_flops(_export(build_model("pcarn-m", "m", 4)), {"image": (1, 3, 180, 320)})  # -> 1280x720
    assert count.output_shape == (1, 3, 720, 1280)
    assert abs(count.macs - 32.5e9) <= 0.05e9
    assert abs(count.macs / (1280 * 720) - 35_300) <= 50
    assert set(count.by_op_type) >= {"Conv", "DepthToSpace"}
    assert count.by_op_type.get("ConvTranspose") is None


def _export(model) -> onnx.ModelProto:
    """The model traced to ONNX as the exporter does (opset, names, dynamic axes), at its
    smallest legal size and without onnxsim: the same Conv/ConvTranspose nodes as the
    bundle's graph (test_profiling_profile.py counts a real bundle's), in seconds less."""
    from srexport.export.onnx_export import OPSET, _dynamic_axes, input_names

    model = model.eval()
    rules = model.shape_rules()
    size = rules.legal_at_least(rules.min_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, model.example_inputs(1, size, size), buffer, dynamo=False, opset_version=OPSET,
            input_names=input_names(model), output_names=["output"], dynamic_axes=_dynamic_axes(model),
        )
    return onnx.load_from_string(buffer.getvalue())


def _zoo_inputs(model, h: int, w: int) -> dict:
    shapes = {"image": (1, 3, h, w)}
    for noise in model.noise_inputs:
        shapes[noise.name] = noise.shape(1, h, w)
    return shapes


def test_gmgbp_macs_per_output_pixel_match_models_md():
    """models.md: G-MGBP 4x at a 64x64 LR input (4 px reflection padding included):
    432,921 MAC per output pixel, counted with forward hooks on nn.Conv2d/ConvTranspose2d
    modules. The graph also holds the learned ClassicUpscale (a functional depthwise
    9x9 transposed conv, stride 2, 3 groups, on the replicate-padded image), which module
    hooks cannot see: 3 * 81 * ((72 + 2)^2 + (144 + 2)^2) MACs for the two 2x levels
    (99.3 MAC per output pixel). Tolerance 0.5 MAC/px: models.md rounds to an integer."""
    model = build_model("gmgbp", None, 4).eval()
    count = count_flops(_export(model), _zoo_inputs(model, 64, 64))
    assert count.output_shape == (1, 3, 256, 256)
    classic = 3 * 81 * ((72 + 2) ** 2 + (144 + 2) ** 2)
    per_px = (count.macs - classic) / (256 * 256)
    assert abs(per_px - 432_921) <= 0.5
    with torch.device("meta"):
        meta = build_model("gmgbp", None, 4).eval()
        hooks = _hook_macs(meta, *(torch.empty(s) for s in _zoo_inputs(meta, 64, 64).values()))
    assert count.macs - classic == hooks


def test_mgbpv2_macs_per_output_pixel_match_models_md():
    """models.md: MGBPv2 AIM-2019 16x at 256x256 (padded to 271x271, border 8/7):
    230,306 MAC per output pixel of the 256x256 image, counted with hooks, which include
    the top-level AnalysisN (1x1, 3 -> 1) that the recursion never reads. The exported
    graph drops that dead branch: 3 * 271^2 MACs (3.4 MAC/px) fewer. Tolerance 0.5 MAC/px
    (models.md rounds to an integer)."""
    model = build_model("mgbpv2", "aim2019-16x", 16).eval()
    assert model.valid_padding(256) == (271, 8, 7)
    count = count_flops(_export(model), _zoo_inputs(model, 271, 271))
    dead = 3 * 271 * 271
    assert abs((count.macs + dead) / (256 * 256) - 230_306) <= 0.5


def test_bpp_hook_count_matches_models_md_formula():
    """models.md: BPP flux units cost 27/4 (48*64 + 64*128/4 + 128*256/16) * 16 MAC per
    output pixel at any size (774,144); with analysis (2,052) and synthesis (1,296) the
    conv layers hold 777,492 (bpp.py). Counted on the meta device at 192x192; the graph
    count (which adds about 80 MAC/px for the three 9x9 depthwise scalers, functional
    convs) was checked by hand at 777,571.7 MAC/px, too slow to export here (~15 s)."""
    flux = 27 / 4 * (48 * 64 + 64 * 128 / 4 + 128 * 256 / 16) * 16
    assert flux == 774_144
    with torch.device("meta"):
        model = build_model("bpp", "x4", 4).eval()
        hooks = _hook_macs(model, torch.empty(1, 3, 192, 192))
    assert hooks / 192**2 == 777_492
