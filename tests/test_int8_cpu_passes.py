"""The "cpu" INT8 scheme's dense-block passes (srexport.calib.int8_cpu_passes): each against
NumPy or against the graph before it, and the scheme end to end on a toy dense block."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from srexport.calib.int8 import calibrate, cpu_passes, quantize
from srexport.calib.int8_cpu_passes import (
    bias_adds_to_depthwise,
    concat_range_groups,
    integer_concats,
    share_concat_ranges,
)
from srexport.export.onnx_export import save_onnx, to_onnx_model
from srexport.models.base import ShapeRules, SRModel
from srexport.ort import inference_session

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _float(name: str, channels: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, channels, 5, 6])


# -- bias_adds_to_depthwise --------------------------------------------------------------------
def _bias_graph():
    """x (4) -> conv -> c; c + b1 (c also read by the Concat); concat(c, y) + b2; a conv read
    only by its bias Add (c2 + b3); the input y + b4; a one-channel mean + b1 (broadcast)."""
    inits = {
        "w": RNG.standard_normal((4, 4, 3, 3)).astype(np.float32),
        "w2": RNG.standard_normal((2, 4, 1, 1)).astype(np.float32),
        **{f"b{i}": RNG.standard_normal((1, c, 1, 1)).astype(np.float32) for i, c in ((1, 4), (2, 6), (3, 2), (4, 2))},
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c", "b1"], ["a1"], name="add_conv_shared"),
        helper.make_node("Concat", ["c", "y"], ["cat"], name="cat", axis=1),
        helper.make_node("Add", ["b2", "cat"], ["a2"], name="add_concat"),
        helper.make_node("Conv", ["x", "w2"], ["c2"], name="conv_own"),
        helper.make_node("Add", ["c2", "b3"], ["a3"], name="add_conv_own"),
        helper.make_node("Add", ["y", "b4"], ["a4"], name="add_input"),
        helper.make_node("Concat", ["y", "y"], ["cat_y"], axis=1),
        helper.make_node("ReduceMean", ["cat_y"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Add", ["m", "b1"], ["a5"], name="add_broadcast"),  # 1 channel + 4 biases
    ]
    outputs = [_float("a1", 4), _float("a2", 6), _float("a3", 2), _float("a4", 2), _float("a5", 4)]
    return _model(nodes, [_float("x", 4), _float("y", 2)], outputs, inits), inits


def test_bias_adds_after_a_concat_or_a_shared_convolution_become_depthwise_convolutions():
    model, inits = _bias_graph()
    feeds = {"x": RNG.standard_normal((1, 4, 5, 6)).astype(np.float32),
             "y": RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)}
    c = inference_session(model).run(["a1"], feeds)[0] - inits["b1"]  # the convolution's output
    assert bias_adds_to_depthwise(model) == 2
    onnx.checker.check_model(model)
    by_name = {n.name: n for n in model.graph.node}
    for name, channels in (("add_conv_shared", 4), ("add_concat", 6)):
        node = by_name[name]
        assert node.op_type == "Conv"
        assert {a.name: helper.get_attribute_value(a) for a in node.attribute}["group"] == channels
    assert [by_name[n].op_type for n in ("add_conv_own", "add_input", "add_broadcast")] == ["Add"] * 3
    a1, a2 = inference_session(model).run(["a1", "a2"], feeds)
    np.testing.assert_allclose(a1, c + inits["b1"], rtol=0, atol=1e-5)
    concat = np.concatenate([c, feeds["y"]], axis=1)
    np.testing.assert_allclose(a2, concat + inits["b2"], rtol=0, atol=1e-6)
    assert {t.name for t in model.graph.initializer} == {
        "w", "w2", "b1", "b3", "b4", *(f"{o}__srx_dw_{k}" for o in ("a1", "a2") for k in ("weight", "bias"))}


def test_bias_adds_to_depthwise_is_exact_in_float():
    """x * 1 + b is x + b: the depthwise form computes the Add's floats bit for bit."""
    model, _ = _bias_graph()
    feeds = {"x": RNG.standard_normal((1, 4, 5, 6)).astype(np.float32),
             "y": RNG.standard_normal((1, 2, 5, 6)).astype(np.float32)}
    before = inference_session(model).run(None, feeds)
    bias_adds_to_depthwise(model)
    after = inference_session(model).run(None, feeds)
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


# -- share_concat_ranges -----------------------------------------------------------------------
def _concat_graph():
    """A dense chain cat2 = concat(concat(t1, t2), t3), and t4 read by two Concats."""
    nodes = [
        helper.make_node("Concat", ["t1", "t2"], ["cat1"], axis=1),
        helper.make_node("Concat", ["cat1", "t3"], ["cat2"], axis=1),
        helper.make_node("Concat", ["t4", "t5"], ["cat3"], axis=1),
        helper.make_node("Concat", ["t4", "t6"], ["cat4"], axis=1),
    ]
    inputs = [_float(f"t{i}", 1) for i in range(1, 7)]
    outputs = [_float("cat2", 3), _float("cat3", 2), _float("cat4", 2)]
    return _model(nodes, inputs, outputs, {})


def test_concat_range_groups_join_chains_and_leave_tensors_two_concats_read():
    assert sorted(concat_range_groups(_concat_graph())) == [
        ["cat1", "cat2", "t1", "t2", "t3"], ["cat3", "t5"], ["cat4", "t6"]]


def test_share_concat_ranges_writes_the_union_of_each_group(tmp_path):
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData, save_tensors_data

    names = ["t1", "t2", "t3", "t4", "t5", "t6", "cat1", "cat2", "cat3", "cat4"]
    lows = dict(zip(names, -RNG.random(len(names)) * 4))
    highs = dict(zip(names, RNG.random(len(names)) * 4))
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
        n: (np.array(lows[n], np.float32), np.array(highs[n], np.float32)) for n in names}), tmp_path / "in.json")
    widened = share_concat_ranges(_concat_graph(), tmp_path / "in.json", tmp_path / "out.json")
    written = json.loads((tmp_path / "out.json").read_text())["data"]
    got = {n: (written[n]["lowest"]["data"], written[n]["highest"]["data"]) for n in names}
    chain = ["t1", "t2", "t3", "cat1", "cat2"]
    expected = {n: (lows[n], highs[n]) for n in names}
    for group in (chain, ["t5", "cat3"], ["t6", "cat4"]):
        union = (min(np.float32(lows[n]) for n in group), max(np.float32(highs[n]) for n in group))
        expected.update({n: union for n in group})
    for n in names:
        np.testing.assert_allclose(got[n], expected[n], rtol=1e-6)
    assert got["t4"] == pytest.approx((lows["t4"], highs["t4"]), rel=1e-6)
    assert widened == sum(got[n] != pytest.approx((lows[n], highs[n]), rel=1e-6) for n in names)
    assert widened >= 6  # at most one member of each group already held the union


# -- integer_concats ---------------------------------------------------------------------------
def _quantize(x, scale, zero):
    return np.clip(np.rint(x / scale) + zero, 0, 255).astype(np.uint8)  # rint: half to even, as ONNX


def _dequantize(q, scale, zero):
    return ((q.astype(np.int32) - zero) * np.float32(scale)).astype(np.float32)


def test_a_concat_between_matching_quantizers_concatenates_the_integers():
    """x1 through (s, z), x2 through (s2, z2), the Concat read through (s, z): the Concat
    reads x1's integers and x2's requantized to (s, z); the output is what NumPy's
    quantize / dequantize of the same chain gives."""
    s, z, s2, z2 = np.float32(0.05), np.uint8(100), np.float32(0.02), np.uint8(7)
    inits = {"s": s, "z": z, "s2": s2, "z2": z2}
    nodes = [
        helper.make_node("QuantizeLinear", ["x1", "s", "z"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["d1"]),
        helper.make_node("QuantizeLinear", ["x2", "s2", "z2"], ["q2"]),
        helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["d2"]),
        helper.make_node("Concat", ["d1", "d2"], ["cat"], name="cat", axis=1),
        helper.make_node("QuantizeLinear", ["cat", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
    ]
    model = _model(nodes, [_float("x1", 3), _float("x2", 2)], [_float("y", 5)], inits)
    feeds = {"x1": RNG.standard_normal((1, 3, 5, 6)).astype(np.float32) * 2,
             "x2": RNG.random((1, 2, 5, 6)).astype(np.float32) * 4}
    before = inference_session(model).run(None, feeds)[0]
    assert integer_concats(model) == 1
    onnx.checker.check_model(model)
    cat = next(n for n in model.graph.node if n.op_type == "Concat")
    assert cat.input[0] == "q1" and cat.input[1] != "q2"
    producers = {out: n for n in model.graph.node for out in n.output}
    assert [producers[i].op_type for i in cat.input] == ["QuantizeLinear", "QuantizeLinear"]
    assert [n.op_type for n in model.graph.node].count("QuantizeLinear") == 3  # q1, q2, x2's requantizer
    after = inference_session(model).run(None, feeds)[0]
    assert np.array_equal(after, before)
    d1 = _dequantize(_quantize(feeds["x1"], s, z), s, z)
    d2 = _dequantize(_quantize(feeds["x2"], s2, z2), s2, z2)
    expected = _dequantize(_quantize(np.concatenate([d1, d2], 1), s, z), s, z)
    np.testing.assert_allclose(after, expected, rtol=0, atol=1e-6)


def test_a_concat_read_in_float_or_between_different_quantizers_is_left_alone():
    s, z, s2 = np.float32(0.05), np.uint8(100), np.float32(0.04)
    nodes = [
        helper.make_node("QuantizeLinear", ["x1", "s", "z"], ["q1"]),
        helper.make_node("DequantizeLinear", ["q1", "s", "z"], ["d1"]),
        helper.make_node("Concat", ["d1", "d1"], ["cat"], axis=1),
        helper.make_node("QuantizeLinear", ["cat", "s", "z"], ["cq"]),
        helper.make_node("QuantizeLinear", ["cat", "s2", "z"], ["cq2"]),
        helper.make_node("Concat", ["d1", "d1"], ["cat_float"], axis=1),
        helper.make_node("Relu", ["cat_float"], ["r"]),
    ]
    outputs = [helper.make_tensor_value_info(n, TensorProto.UINT8, [1, 6, 5, 6]) for n in ("cq", "cq2")]
    model = _model(nodes, [_float("x1", 3)], [*outputs, _float("r", 6)], {"s": s, "z": z, "s2": s2})
    assert integer_concats(model) == 0


# -- the scheme end to end ---------------------------------------------------------------------
class DenseToy(SRModel):
    """Two dense layers in G-MGBP's form: Act (per-channel bias, ReLU) of the concatenation,
    1x1 conv, Act, 3x3 conv to 4 new channels; a transition Act + 1x1; a 3x3 to RGB."""

    scale = 1
    input_kind = "lr"

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.bias = nn.ParameterList([nn.Parameter(torch.randn(1, c, 1, 1) * 0.3) for c in (8, 12, 16)])
        self.squeeze = nn.ModuleList([nn.Conv2d(c, 8, 1) for c in (8, 12)])
        self.grow = nn.ModuleList([nn.Conv2d(8, 4, 3, padding=1, bias=False) for _ in range(2)])
        self.transition = nn.Conv2d(16, 8, 1, bias=False)
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(output_scale=1, halo=6)

    def forward(self, image):
        x = self.head(image)
        for bias, squeeze, grow in zip(self.bias, self.squeeze, self.grow):
            x = torch.cat([x, grow(torch.relu(squeeze(torch.relu(x + bias))))], 1)
        return self.tail(self.transition(torch.relu(x + self.bias[2]))) * 0.1 + image


@pytest.fixture(scope="module")
def dense_int8(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    fp32 = root / "model.fp32.onnx"
    save_onnx(to_onnx_model(DenseToy().eval()), fp32)
    rng = np.random.default_rng(5)
    samples = [{"image": rng.random((1, 3, 24, 24), dtype=np.float32)} for _ in range(6)]
    cache = calibrate(fp32, samples, "minmax", root / "ranges.json", root)
    graphs = {scheme: quantize(fp32, root / f"{scheme}.onnx", cache, "minmax", scheme=scheme)
              for scheme in ("cpu", "tensorrt")}
    return fp32, graphs, samples


def test_the_cpu_scheme_concatenates_uint8_and_records_its_passes(dense_int8):
    _, graphs, _ = dense_int8
    cpu = graphs["cpu"]
    assert cpu_passes(cpu) == {"bias_adds_to_depthwise": 3, "share_concat_ranges": cpu_passes(cpu)["share_concat_ranges"],
                               "commute_dequantize": 0, "integer_concats": 2}
    assert cpu_passes(cpu)["share_concat_ranges"] > 0
    producers = {out: n for n in cpu.graph.node for out in n.output}
    concats = [n for n in cpu.graph.node if n.op_type == "Concat"]
    assert len(concats) == 2
    # the first reads two quantizers' integers, the second the first's and one more
    assert [producers[i].op_type for i in concats[0].input] == ["QuantizeLinear", "QuantizeLinear"]
    assert [producers[i].op_type for i in concats[1].input] == ["Concat", "QuantizeLinear"]
    ops = [n.op_type for n in cpu.graph.node]
    assert ops.count("Add") == 1  # the residual; the three bias Adds are depthwise convolutions
    # the metadata ONNX Runtime's tools wrote is kept next to the record
    assert any(p.key == "onnx.infer" for p in cpu.metadata_props)
    # the TensorRT scheme is quantized as before: its bias Adds and float Concats stay
    assert cpu_passes(graphs["tensorrt"]) == {}
    assert [n.op_type for n in graphs["tensorrt"].graph.node].count("Add") == 4


def test_the_cpu_scheme_stays_near_fp32(dense_int8):
    fp32, graphs, samples = dense_int8
    reference = inference_session(fp32)
    int8 = inference_session(graphs["cpu"])
    for sample in samples[:3]:
        want = reference.run(None, sample)[0]
        got = int8.run(None, sample)[0]
        assert np.abs(got - want).max() < 0.02  # ~ a few uint8 steps of the output's range
        assert np.abs(got - want).mean() < 0.004


def test_openvino_runs_the_integer_concats_as_onnx_runtime_does(dense_int8):
    """OpenVINO (the backend that runs `model.int8.onnx`) reads the uint8 Concats and gives
    ONNX Runtime's result to within the rounding of its float remainder."""
    import openvino as ov

    _, graphs, samples = dense_int8
    compiled = ov.Core().compile_model(ov.Core().read_model(graphs["cpu"].SerializeToString(), b""), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    ort = inference_session(graphs["cpu"])
    for sample in samples[:2]:
        want = ort.run(None, sample)[0]
        got = compiled(sample)[0]
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 0.01


def test_the_cpu_scheme_writes_the_same_bytes_twice(dense_int8, tmp_path):
    fp32, graphs, _ = dense_int8
    cache = fp32.parent / "ranges.json"
    quantize(fp32, tmp_path / "again.onnx", cache, "minmax", scheme="cpu")
    assert (tmp_path / "again.onnx").read_bytes() == (fp32.parent / "cpu.onnx").read_bytes()
