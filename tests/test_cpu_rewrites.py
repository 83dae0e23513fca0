"""CPU graph rewrites: each pass against a NumPy convolution, and the build records them."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from srexport.export.build import export_bundle
from srexport.export.cpu_rewrites import (
    REWRITE_TOLERANCE,
    check_rewrite,
    fold_trailing_1x1,
    identity_1x1_to_add,
    rewrite_for_cpu,
    conv_before_depth_to_space,
    split_concat_conv,
    split_sparse_taps,
    unshare_conv_bias,
)
from srexport.ort import inference_session
from srexport.fsutil import sha256_file
from srexport.models.base import ShapeRules, SRModel
from srexport.models.pcarn import PCARNM


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, groups: int = 1) -> np.ndarray:
    """Direct NCHW convolution in float64 (stride 1, zero padding)."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, o, oh, ow))
    og = o // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                window = xp[:, g * cg:(g + 1) * cg, i:i + oh, j:j + ow]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", window, w[g * og:(g + 1) * og, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def _model(nodes, inits, channels_in=3, channels_out=3) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels_in, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels_out, None, None])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _conv(x, w, b, y, k, name, group=1):
    return helper.make_node("Conv", [x, w, b], [y], name=name, kernel_shape=[k, k], pads=[k // 2] * 4, group=group)


def _run(model, x):
    return inference_session(model, threads=1).run(None, {"x": x})[0]


RNG = np.random.default_rng(0)
X = RNG.random((1, 3, 9, 11), dtype=np.float32)


def test_a_trailing_1x1_folds_into_the_convolution_before_it():
    w, b = RNG.standard_normal((5, 3, 3, 3)), RNG.standard_normal(5)
    w1, b1 = RNG.standard_normal((3, 5, 1, 1)), RNG.standard_normal(3)
    model = _model([_conv("x", "w", "b", "t", 3, "c3"), _conv("t", "w1", "b1", "y", 1, "c1")],
                   {"w": w, "b": b, "w1": w1, "b1": b1})
    assert fold_trailing_1x1(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731 - the stored weights
    expected = conv2d(conv2d(X, f32(w), f32(b), 1), f32(w1), f32(b1), 0)
    assert np.max(np.abs(_run(model, X) - expected)) <= 1e-5


def test_a_convolution_used_twice_is_not_folded():
    w, b = RNG.standard_normal((3, 3, 3, 3)), RNG.standard_normal(3)
    model = _model([_conv("x", "w", "b", "t", 3, "c3"), _conv("t", "w1", "b", "u", 1, "c1"),
                    helper.make_node("Add", ["t", "u"], ["y"])],
                   {"w": w, "b": b, "w1": RNG.standard_normal((3, 3, 1, 1))})
    assert fold_trailing_1x1(model) == 0


def test_an_identity_1x1_becomes_an_add_of_its_bias_and_others_stay():
    bias = np.array([-0.4, -0.5, -0.3])
    model = _model([_conv("x", "eye", "bias", "t", 1, "shift"), _conv("t", "m", "bias", "y", 1, "mix")],
                   {"eye": np.eye(3).reshape(3, 3, 1, 1), "bias": bias, "m": RNG.standard_normal((3, 3, 1, 1))})
    assert identity_1x1_to_add(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Add", "Conv"]
    probe = _model([model.graph.node[0]], {i.name: numpy_helper.to_array(i) for i in model.graph.initializer})
    probe.graph.node[0].output[0] = "y"
    assert np.array_equal(_run(probe, X), X + bias.astype(np.float32).reshape(1, 3, 1, 1))


def test_a_1x1_of_nested_concats_becomes_a_sum_of_1x1s():
    ws = {f"w{k}": RNG.standard_normal((8, 3, 3, 3)) for k in range(3)}
    bs = {f"b{k}": RNG.standard_normal(8) for k in range(3)}
    w1, b1 = RNG.standard_normal((8, 24, 1, 1)), RNG.standard_normal(8)
    nodes = [_conv("x", f"w{k}", f"b{k}", f"a{k}", 3, f"c{k}") for k in range(3)]
    nodes += [helper.make_node("Concat", ["a0", "a1"], ["cat1"], axis=1),
              helper.make_node("Concat", ["cat1", "a2"], ["cat2"], axis=1),
              _conv("cat2", "wm", "bm", "y", 1, "mix")]
    model = _model(nodes, {**ws, **bs, "wm": w1, "bm": b1}, channels_out=8)
    reference = _run(model, X)
    assert split_concat_conv(model) == 1
    assert "Concat" not in [n.op_type for n in model.graph.node]
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    parts = [conv2d(X, f32(ws[f"w{k}"]), f32(bs[f"b{k}"]), 1) for k in range(3)]
    expected = conv2d(np.concatenate(parts, 1), f32(w1), f32(b1), 0)
    assert np.max(np.abs(_run(model, X) - expected)) <= 1e-5
    assert np.max(np.abs(_run(model, X) - reference)) <= 1e-5


def _shared_bias_chain() -> tuple[onnx.ModelProto, dict]:
    """x -> conv(w0, b) -> ReLU -> conv(w1, b) -> ReLU -> y: one bias for both (a block
    applied twice with one set of weights, as G-MGBP and PCARN-M do)."""
    inits = {"w0": RNG.standard_normal((3, 3, 3, 3)), "w1": RNG.standard_normal((3, 3, 3, 3)),
             "b": RNG.standard_normal(3)}
    nodes = [_conv("x", "w0", "b", "a", 3, "c0"), helper.make_node("Relu", ["a"], ["r"], name="r0"),
             _conv("r", "w1", "b", "z", 3, "c1"), helper.make_node("Relu", ["z"], ["y"], name="r1")]
    return _model(nodes, inits), inits


def test_unshare_conv_bias_gives_each_convolution_its_own_copy():
    model, inits = _shared_bias_chain()
    reference = _run(model, X)
    assert unshare_conv_bias(model) == 1
    biases = [n.input[2] for n in model.graph.node if n.op_type == "Conv"]
    assert biases[0] == "b" and biases[1] != "b"
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert np.array_equal(stored[biases[1]], inits["b"].astype(np.float32))
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    hidden = np.maximum(conv2d(X, f32(inits["w0"]), f32(inits["b"]), 1), 0)
    expected = np.maximum(conv2d(hidden, f32(inits["w1"]), f32(inits["b"]), 1), 0)
    assert np.max(np.abs(_run(model, X) - expected)) <= 1e-5
    assert np.array_equal(_run(model, X), reference)  # the same arithmetic, only the constant is copied
    assert unshare_conv_bias(model) == 0


def test_openvino_fuses_each_unshared_bias_and_activation_into_its_convolution():
    """Why the pass exists: with the bias shared, OpenVINO leaves a bias + ReLU apart from a
    convolution; with one copy each, every convolution absorbs both."""
    ov = pytest.importorskip("openvino")

    def layers(model):
        core = ov.Core()
        compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU",
                                      {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
        return [op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()
                if op.get_rt_info()["layerType"].astype(str) not in ("Input", "Output", "Const", "Reorder",
                                                                     "Reshape")]

    shared, _ = _shared_bias_chain()
    before = layers(shared)
    assert before.count("Convolution") == 2 and len(before) > 2, before
    unshare_conv_bias(shared)
    assert layers(shared) == ["Convolution", "Convolution"]


def _depth_to_space(x: np.ndarray, block: int) -> np.ndarray:
    """ONNX DepthToSpace, CRD mode (PyTorch's pixel shuffle), in NumPy."""
    n, c, h, w = x.shape
    out = x.reshape(n, c // block**2, block, block, h, w).transpose(0, 1, 4, 2, 5, 3)
    return out.reshape(n, c // block**2, h * block, w * block)


def _shuffle_then_exit(block: int, kernel: int, outputs: int):
    """DepthToSpace(block) -> Conv(16 fine channels -> outputs, kernel), its input and the
    NumPy output it must give."""
    fine = 16
    coarse = fine * block * block
    w, b = RNG.standard_normal((outputs, fine, kernel, kernel)), RNG.standard_normal(outputs)
    x = RNG.random((1, coarse, 7, 9), dtype=np.float32)
    nodes = [helper.make_node("DepthToSpace", ["x"], ["fine"], name="shuffle", blocksize=block, mode="CRD"),
             _conv("fine", "w", "b", "y", kernel, "exit")]
    model = _model(nodes, {"w": w, "b": b}, channels_in=coarse, channels_out=outputs)
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # noqa: E731
    expected = conv2d(_depth_to_space(x.astype(np.float64), block), f32(w), f32(b), kernel // 2)
    return model, x, expected


def _conv_groups(model: onnx.ModelProto) -> list[int]:
    return [next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node if n.op_type == "Conv"]


def _conv_layout(model: onnx.ModelProto) -> list[tuple[int, tuple[int, int]]]:
    """(group, weight's first two dimensions) of every Conv, in order."""
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    shapes = [weights[n.input[1]].shape[:2] for n in model.graph.node if n.op_type == "Conv"]
    return list(zip(_conv_groups(model), shapes))


@pytest.mark.parametrize("block,kernel,outputs", [(2, 3, 3), (3, 3, 1), (2, 5, 2)])
def test_conv_before_depth_to_space_equals_the_conv_after_it(block, kernel, outputs):
    model, x, expected = _shuffle_then_exit(block, kernel, outputs)
    assert conv_before_depth_to_space(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv", "DepthToSpace"]
    got = inference_session(model, threads=1).run(None, {"x": x})[0]
    assert got.shape == expected.shape == (1, outputs, 7 * block, 9 * block)
    assert np.max(np.abs(got - expected)) <= 1e-5


def test_conv_before_depth_to_space_leaves_convolutions_that_widen_alone():
    # 16 fine channels to 4 outputs x 2^2 = 16 coarse ones: the shuffle would move as much
    nodes = [helper.make_node("DepthToSpace", ["x"], ["fine"], name="shuffle", blocksize=2, mode="CRD"),
             _conv("fine", "w", "b", "y", 3, "exit")]
    model = _model(nodes, {"w": RNG.standard_normal((4, 16, 3, 3)), "b": RNG.standard_normal(4)},
                   channels_in=64, channels_out=4)
    assert conv_before_depth_to_space(model) == 0
    grouped = _model([helper.make_node("DepthToSpace", ["x"], ["fine"], blocksize=2, mode="CRD"),
                      _conv("fine", "w", "b", "y", 3, "exit", group=4)],
                     {"w": RNG.standard_normal((4, 4, 3, 3)), "b": RNG.standard_normal(4)}, channels_in=64,
                     channels_out=4)
    assert conv_before_depth_to_space(grouped) == 0


@pytest.mark.parametrize("block,outputs,nonzero", [(2, 3, 48), (3, 1, 25)])
def test_split_sparse_taps_equals_the_coarse_exit_and_drops_its_zero_taps(block, outputs, nonzero):
    """The coarse exit `conv_before_depth_to_space` writes (kernel 3), split. Block 2: each of
    the 3 x 4 sub-pixel outputs reads 2 x 2 of the 3 x 3 coarse taps (48 of 108 pairs).
    Block 3: 1 or 2 taps a row, (2 + 1 + 2)^2 = 25 of 81."""
    model, x, expected = _shuffle_then_exit(block, 3, outputs)
    assert conv_before_depth_to_space(model) == 1
    assert split_sparse_taps(model) == 1
    coarse = 16 * block * block
    assert _conv_layout(model) == [(1, (nonzero, coarse)), (nonzero, (nonzero, 1)),
                                   (1, (outputs * block * block, nonzero))]
    got = inference_session(model, threads=1).run(None, {"x": x})[0]
    assert np.max(np.abs(got - expected)) <= 1e-5


def test_split_sparse_taps_leaves_a_coarse_exit_that_reads_every_tap():
    # kernel 5 on block 2: every sub-pixel reads all 3 x 3 coarse taps (72 of 72 pairs)
    model, x, expected = _shuffle_then_exit(2, 5, 2)
    assert conv_before_depth_to_space(model) == 1
    assert split_sparse_taps(model) == 0
    assert _conv_layout(model) == [(1, (8, 64))]
    got = inference_session(model, threads=1).run(None, {"x": x})[0]
    assert np.max(np.abs(got - expected)) <= 1e-5


def test_split_sparse_taps_leaves_dense_and_grouped_kernels_alone():
    dense = _model([_conv("x", "w", "b", "y", 3, "c")], {"w": RNG.standard_normal((3, 3, 3, 3)),
                                                         "b": RNG.standard_normal(3)})
    assert split_sparse_taps(dense) == 0
    w = np.zeros((4, 1, 3, 3))
    w[:, :, 1, 1] = 1.0
    grouped = _model([_conv("x", "w", "b", "y", 3, "c", group=4)], {"w": w, "b": np.zeros(4)},
                     channels_in=4, channels_out=4)
    assert split_sparse_taps(grouped) == 0


def test_rewrites_are_deterministic():
    model = onnx.load_from_string(_pcarn_export().SerializeToString())
    first, counts = rewrite_for_cpu(model)
    second, _ = rewrite_for_cpu(model)
    assert first.SerializeToString() == second.SerializeToString()
    assert counts


def _pcarn_export() -> onnx.ModelProto:
    from srexport.export.onnx_export import to_onnx_model

    torch.manual_seed(0)
    return to_onnx_model(PCARNM(scale=2).eval())


@pytest.fixture(scope="module")
def pcarn_bundles(tmp_path_factory):
    torch.manual_seed(0)
    model = PCARNM(scale=2).eval()
    root = tmp_path_factory.mktemp("rewrites")
    identity = {"model": "pcarn-m", "variant": "m", "scale": 2, "task": "sr"}
    plain = export_bundle(model, root / "plain", identity, log=lambda m: None, cpu_rewrites=False)
    tuned = export_bundle(model, root / "tuned", identity, log=lambda m: None)
    again = export_bundle(model, root / "again", identity, log=lambda m: None)
    return plain, tuned, again


def test_pcarn_build_records_its_rewrites_and_matches_the_plain_graph(pcarn_bundles):
    plain, tuned, _ = pcarn_bundles
    assert plain.manifest.graph_rewrites is None
    record = tuned.manifest.graph_rewrites
    counts = {p["name"]: p["count"] for p in record["passes"]}
    # PCARN: add_mean after exit folds; sub_mean becomes an Add; 3 blocks x (3 inner + 1 outer)
    # 1x1 convolutions take a concatenation; each cascading block applies its one EResidual
    # block (3 biased convolutions) 3 times: 3 x 3 biases get 2 more copies each
    assert counts == {"fold_trailing_1x1": 1, "identity_1x1_to_add": 1, "split_concat_conv": 12,
                      "unshare_conv_bias": 18, "conv_before_depth_to_space": 1, "split_sparse_taps": 1}
    assert record["float_only"] == ["split_sparse_taps"]
    assert 0 < record["max_abs_diff_vs_export"] <= REWRITE_TOLERANCE
    original = onnx.load(str(plain.graph_path("fp32")))
    rewritten = onnx.load(str(tuned.graph_path("fp32")))
    ops = [n.op_type for n in rewritten.graph.node]
    assert "Concat" not in ops
    # the exit convolution runs before the last pixel shuffle, split into its taps (3 convolutions)
    assert ops[-4:] == ["Conv", "Conv", "Conv", "DepthToSpace"]
    # the two mean shifts go; the 12 concatenated 1x1s become 3 x (2 + 3 + 4) + (2 + 3 + 4) = 36
    assert sum(o == "Conv" for o in ops) == sum(n.op_type == "Conv" for n in original.graph.node) - 2 - 12 + 36 + 2
    rng = np.random.default_rng(7)
    feeds = [{"image": rng.random((1, 3, h, w), dtype=np.float32)} for h, w in ((17, 23), (40, 31))]
    assert check_rewrite(original, rewritten, feeds) <= REWRITE_TOLERANCE
    manifest = json.loads((tuned.root / "manifest.json").read_text())
    assert manifest["graph_rewrites"]["tolerance"] == REWRITE_TOLERANCE


def test_rewritten_builds_are_byte_identical(pcarn_bundles):
    _, tuned, again = pcarn_bundles
    for name in ("model.fp32.onnx", "manifest.json"):
        assert sha256_file(tuned.root / name) == sha256_file(again.root / name)


class TinyShuffleExit(SRModel):
    """x2: conv 3->16, ReLU, conv 16->64, ReLU, pixel shuffle, exit conv 16->3 (PCARN's tail
    in small: the exit moves before the shuffle and is split into its taps)."""

    scale = 2
    input_kind = "lr"

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.head = nn.Conv2d(3, 16, 3, padding=1)
        self.up = nn.Conv2d(16, 64, 3, padding=1)
        self.exit = nn.Conv2d(16, 3, 3, padding=1)

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(output_scale=2, halo=3)

    def recommended_patch(self) -> int:
        return 32

    def forward(self, image):
        features = torch.relu(self.up(torch.relu(self.head(image))))
        return self.exit(F.pixel_shuffle(features, 2)) + F.interpolate(image, scale_factor=2, mode="nearest")


def test_int8_is_quantized_from_the_graph_before_the_float_only_passes(tmp_path):
    from srexport.calib.options import PrecisionOptions
    from test_calib_units import write_images

    options = PrecisionOptions(int8=True, calib_dir=write_images(tmp_path / "calib", 2), calib_patches=4)
    bundle = export_bundle(TinyShuffleExit(), tmp_path / "bundle", {"model": "tiny", "variant": "t", "scale": 2,
                                                                    "task": "sr"},
                           log=lambda m: None, precision=options)
    record = bundle.manifest.graph_rewrites
    assert {p["name"] for p in record["passes"]} == {"conv_before_depth_to_space", "split_sparse_taps"}
    assert record["float_only"] == ["split_sparse_taps"]

    groups = lambda precision: _conv_groups(onnx.load(str(bundle.graph_path(precision))))  # noqa: E731
    # the FP32 graph: head, up, then the exit's taps, shift (one group per tap: 3 x 4 x 4) and sum
    assert groups("fp32") == [1, 1, 1, 48, 1]
    assert groups("int8") == [1, 1, 1]  # head, up and the coarse exit, unsplit
    notes = bundle.manifest.precisions["int8"].notes
    assert notes["quantized_from"] == "model.fp32.onnx before its float-only rewrites (srexport.export.cpu_rewrites)"
    assert bundle.manifest.precisions["int8"].psnr_vs_fp32_db > 30
