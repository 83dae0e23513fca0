"""The W = 0 graph: the FP32 graph without its noise inputs, built into bundles whose noise
reaches only 1x1 convolutions (G-MGBP), and run when the noise is 0."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import srexport
from srexport.errors import OptionError
from srexport.export.build import export_bundle
from srexport.export.zero_noise import W0_FILE, build_zero_noise, zero_noise_graph
from srexport.models.base import NoiseInput, ShapeRules, SRModel
from srexport.ort import inference_session

RNG = np.random.default_rng(5)


def _graph(nodes, inits, inputs) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, c, "h", "w"]) for n, c in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, None, None])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _dense_pair(reader_kernel: int = 1) -> onnx.ModelProto:
    """x (4 ch) and noise n (1 ch): c0 = cat[x, n]; a dense layer c1 = cat[c0, conv(relu(c0 + b0))];
    y = conv_k(relu(c1 + b1)): the noise channel reaches two convolutions, the last of kernel k."""
    inits = {"b0": RNG.standard_normal((1, 5, 1, 1)), "w0": RNG.standard_normal((3, 5, 1, 1)),
             "b1": RNG.standard_normal((1, 8, 1, 1)), "w1": RNG.standard_normal((2, 8, reader_kernel, reader_kernel)),
             "c1b": RNG.standard_normal(2)}
    pad = reader_kernel // 2
    nodes = [helper.make_node("Concat", ["x", "n"], ["c0"], axis=1),
             helper.make_node("Add", ["c0", "b0"], ["a0"]), helper.make_node("Relu", ["a0"], ["r0"]),
             helper.make_node("Conv", ["r0", "w0"], ["new"], kernel_shape=[1, 1]),
             helper.make_node("Concat", ["c0", "new"], ["c1"], axis=1),
             helper.make_node("Add", ["c1", "b1"], ["a1"]), helper.make_node("Relu", ["a1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w1", "c1b"], ["y"], kernel_shape=[reader_kernel] * 2, pads=[pad] * 4)]
    return _graph(nodes, inits, [("x", 4), ("n", 1)])


def test_the_noise_channel_goes_and_its_constants_become_biases():
    model = _dense_pair()
    found = zero_noise_graph(model, ["n"])
    assert found is not None
    w0, channels = found
    assert [i.name for i in w0.graph.input] == ["x"]
    # n, c0, a0, r0 carry it at channel 4; c1, a1, r1 at channel 4 of 8
    assert channels == 7
    weights = {t.name: numpy_helper.to_array(t) for t in w0.graph.initializer}
    convs = [n for n in w0.graph.node if n.op_type == "Conv"]
    assert [weights[c.input[1]].shape[1] for c in convs] == [4, 7]
    x = RNG.random((1, 4, 6, 7), dtype=np.float32)
    full = inference_session(model, threads=1).run(None, {"x": x, "n": np.zeros((1, 1, 6, 7), np.float32)})[0]
    # the reference in NumPy: the same layers with the zero channel kept
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    c0 = np.concatenate([x.astype(np.float64), np.zeros((1, 1, 6, 7))], 1)
    new = np.einsum("nchw,oc->nohw", np.maximum(c0 + inits["b0"], 0), inits["w0"][:, :, 0, 0])
    c1 = np.concatenate([c0, new], 1)
    expected = np.einsum("nchw,oc->nohw", np.maximum(c1 + inits["b1"], 0), inits["w1"][:, :, 0, 0])
    expected += inits["c1b"].reshape(1, -1, 1, 1)
    got = inference_session(w0, threads=1).run(None, {"x": x})[0]
    assert np.max(np.abs(full - expected)) <= 1e-5 and np.max(np.abs(got - expected)) <= 1e-5


def test_a_padded_convolution_reading_the_channel_keeps_the_noise():
    # zero padding: the constant relu(b) is there inside the image only, not a bias
    assert zero_noise_graph(_dense_pair(reader_kernel=3), ["n"]) is None


def test_gmgbp_upscaling_widths_become_multiples_of_16():
    from srexport.export.onnx_export import to_onnx_model
    from srexport.models.gmgbp import FEATURES, GMGBP, GROWTH

    torch.manual_seed(0)
    model = GMGBP().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    exported = to_onnx_model(model)
    w0, record = build_zero_noise(model, exported)
    assert record.dropped_inputs == ["noise0", "noise1"] and record.max_abs_diff_vs_fp32 <= 1e-5
    assert [i.name for i in w0.graph.input] == ["image"]
    weights = {t.name: numpy_helper.to_array(t) for t in w0.graph.initializer}
    widths = {weights[n.input[1]].shape[1] for n in w0.graph.node
              if n.op_type == "Conv" and n.name.startswith("/Upscaling/pre_up/")}
    # cat[r_l, correction] = 2 x 48 channels, 16 more per dense layer: 96, 112, 128, 144 (the
    # 3x3 convolutions read the 64-channel bottleneck); with the noise they were 97 ... 145
    assert widths == {2 * FEATURES, 2 * FEATURES + GROWTH, 2 * FEATURES + 2 * GROWTH, 2 * FEATURES + 3 * GROWTH,
                      4 * GROWTH}


class TinyNoisy(SRModel):
    """x2: conv 3->8; cat[h, noise] -> bias, ReLU -> 1x1 to 12 -> pixel shuffle (+ nearest skip)."""

    scale = 2
    input_kind = "lr"
    noise_inputs = (NoiseInput("noise0", 1, 1, 0),)

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.bias = nn.Parameter(torch.randn(9) * 0.3)
        self.tail = nn.Conv2d(9, 12, 1)

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(output_scale=2, halo=1)

    def recommended_patch(self) -> int:
        return 32

    def forward(self, image, noise0):
        h = torch.cat([self.head(image), noise0], 1)
        out = self.tail(torch.relu(h + self.bias.view(1, -1, 1, 1)))
        return F.pixel_shuffle(out, 2) * 0.1 + F.interpolate(image, scale_factor=2, mode="nearest")


@pytest.fixture(scope="module")
def noisy_bundle(tmp_path_factory):
    return export_bundle(TinyNoisy().eval(), tmp_path_factory.mktemp("w0") / "bundle",
                         {"model": "tiny", "variant": "t", "scale": 2, "task": "sr"}, log=lambda m: None)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_noise_zero_runs_the_w0_graph_and_noise_the_full_one(noisy_bundle, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    assert noisy_bundle.manifest.zero_noise_graph["file"] == W0_FILE
    assert W0_FILE in noisy_bundle.manifest.files
    image = RNG.random((20, 26, 3), dtype=np.float32)
    with torch.no_grad():
        reference = TinyNoisy().eval()(torch.from_numpy(image.transpose(2, 0, 1).copy())[None],
                                       torch.zeros(1, 1, 20, 26))[0].numpy().transpose(1, 2, 0)
    with srexport.load(noisy_bundle.root, backend=backend) as up:
        assert up.session.zero_noise_graph
        assert np.max(np.abs(up.upscale(image) - reference)) <= 1e-5
        up.noise = 0.3
        with pytest.raises(OptionError, match="loaded with noise 0"):
            up.upscale(image)
    with srexport.load(noisy_bundle.root, backend=backend, noise=0.3) as up:
        assert not up.session.zero_noise_graph
        assert np.max(np.abs(up.upscale(image) - reference)) > 1e-3  # the noise is there


def test_a_model_whose_noise_meets_a_padded_convolution_gets_no_w0_graph(tmp_path):
    from test_calib_units import TinySR

    bundle = export_bundle(TinySR(noisy=True).eval(), tmp_path / "b", {"model": "tiny", "variant": "t", "scale": 2,
                                                                       "task": "sr"}, log=lambda m: None)
    assert bundle.manifest.zero_noise_graph is None and W0_FILE not in bundle.manifest.files
    with srexport.load(bundle.root, backend="onnxruntime") as up:
        assert not up.session.zero_noise_graph


def test_gmgbp_bundles_carry_the_w0_graph_and_verify_checks_it(bundle_factory):
    from srexport.export.verify_bundle import verify_bundle

    bundle = bundle_factory("gmgbp", None, 4)  # the shared session-wide build (its initialisation)
    assert bundle.manifest.zero_noise_graph["dropped_inputs"] == ["noise0", "noise1"]
    results = {r.precision: r for r in verify_bundle(bundle.root)}
    assert set(results) == {"fp32", "fp32 W = 0 graph"}
    assert all(r.ok for r in results.values()) and results["fp32 W = 0 graph"].value <= 1e-4
