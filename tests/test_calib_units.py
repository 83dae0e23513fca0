"""Reduced precision, piece by piece: metrics, calibration patches, FP16 overflow fallback,
INT8 QDQ structure and calibration determinism (issue "Precision", items 1, 2 and 6).

Everything runs on tiny toy networks and generated images: a few seconds each."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from srexport.calib import accuracy as acc
from srexport.calib.fp16 import convert_fp16, emulate_fp16, extremes, stress_inputs, to_fp16
from srexport.calib.int8 import (
    calibrate,
    conv_layers,
    exclusion_candidates,
    feature_to_image_convs,
    image_space_nodes,
    qdq_structure,
    quantize,
)
from srexport.calib.patches import CalibrationError, sample_patches, synthetic_image, synthetic_set
from srexport.errors import SrExportError
from srexport.export.onnx_export import save_onnx, to_onnx_model
from srexport.ort import inference_session
from srexport.models.base import NoiseInput, ShapeRules, SRModel


# -- toy networks ------------------------------------------------------------------------
class TinySR(SRModel):
    """x2: conv 3->8, ReLU, conv 8->8 (+ skip), ReLU, conv 8->12, pixel shuffle, + bicubic-ish
    nearest skip of the image. Three convolutions, one of them image-space on each side."""

    scale = 2
    input_kind = "lr"

    def __init__(self, noisy: bool = False):
        super().__init__()
        torch.manual_seed(1)
        self.head = nn.Conv2d(3 + noisy, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.tail = nn.Conv2d(8, 12, 3, padding=1)
        self.noise_inputs = (NoiseInput("noise0", 1, 1, 0),) if noisy else ()
        with torch.no_grad():
            for conv in (self.head, self.body, self.tail):
                conv.weight.mul_(0.5)

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(output_scale=2, halo=3)

    def recommended_patch(self) -> int:
        return 32

    def forward(self, image, *noise):
        x = torch.cat([image, *noise], 1) if noise else image
        h = torch.relu(self.head(x))
        h = torch.relu(self.body(h) + h)
        up = F.interpolate(image, scale_factor=2, mode="nearest")
        return F.pixel_shuffle(self.tail(h), 2) * 0.1 + up


class Overflowing(SRModel):
    """A network whose middle activation (~1e5) exceeds float16 (65504) while its output is
    ordinary: FP16 must keep those layers in FP32."""

    scale = 2
    input_kind = "lr"

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 12, 1)
        self.c = nn.Conv2d(12, 12, 1)
        with torch.no_grad():
            self.a.weight.fill_(4e4)
            self.a.bias.zero_()
            self.b.weight.fill_(1.25e-5)
            self.b.bias.zero_()
            self.c.weight.copy_(torch.eye(12).view(12, 12, 1, 1))
            self.c.bias.zero_()

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(output_scale=2, halo=0)

    def forward(self, image):
        return F.pixel_shuffle(self.c(self.b(torch.relu(self.a(image)))), 2)


def write_images(folder: Path, count: int = 3, size: tuple[int, int] = (64, 72), seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rgb = synthetic_image(*size, seed=seed + i)
        Image.fromarray(np.rint(rgb * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return write_images(tmp_path_factory.mktemp("calib") / "images")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = TinySR().eval()
    path = tmp_path_factory.mktemp("tiny") / "model.fp32.onnx"
    save_onnx(to_onnx_model(model), path)
    return model, path


# -- metrics -------------------------------------------------------------------------------
def test_psnr_known_values():
    a = np.zeros((8, 8, 3))
    assert acc.psnr(a, a) == math.inf
    b = a + 0.1  # MSE 0.01 -> 20 dB at peak 1
    assert acc.psnr(a, b) == pytest.approx(20.0)
    assert acc.psnr(a * 255, b * 255, peak=255.0) == pytest.approx(20.0)


def test_rgb_to_y_range_and_psnr_y_shave():
    white, black = np.ones((4, 4, 3)), np.zeros((4, 4, 3))
    assert acc.rgb_to_y(white) == pytest.approx(np.full((4, 4), 235.0), abs=1e-3)
    assert acc.rgb_to_y(black) == pytest.approx(np.full((4, 4), 16.0))
    assert acc.rgb_to_y(np.full((2, 2, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0, abs=1e-3)
    hr = np.full((10, 10, 3), 0.5)
    sr = hr.copy()
    sr[0, :] = 0.0  # damage confined to the border row: shaved away
    assert acc.psnr_y(sr, hr, shave=2) == math.inf
    assert acc.psnr_y(sr, hr, shave=0) < 40


def test_lr_from_hr_crops_to_scale_multiple():
    hr = synthetic_image(67, 50, seed=3)
    lr, hr8 = acc.lr_from_hr(hr, 4)
    assert hr8.shape == (64, 48, 3) and hr8.dtype == np.uint8
    assert lr.shape == (16, 12, 3) and lr.dtype == np.float32


# -- calibration patches ----------------------------------------------------------------------
def test_patches_are_reproducible_for_a_seed(images):
    model = TinySR()
    one = sample_patches(images, model, 6, seed=5)
    two = sample_patches(images, model, 6, seed=5)
    other = sample_patches(images, model, 6, seed=6)
    assert one.origins == two.origins
    for a, b in zip(one.inputs, two.inputs):
        assert np.array_equal(a["image"], b["image"])
    assert one.origins != other.origins
    assert len(one.inputs) == 6
    size = one.patch[0]
    assert all(p["image"].shape == (1, 3, size, size) for p in one.inputs)  # one fixed size
    # LR of 64x72 images at x2 is 32x36: the patch fits the smallest LR image
    assert size == 32
    # ground truth of every patch: the HR pixels under its output
    assert all(t.shape == (2 * size, 2 * size, 3) for t in one.targets)
    summary = one.summary()
    assert summary["image_count"] == 3 and summary["patches"] == 6 and summary["seed"] == 5


def test_flat_patches_are_down_weighted(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(np.full((96, 96, 3), 128, np.uint8)).save(folder / "flat.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(folder / "busy.png")
    picked = sample_patches(folder, TinySR(), 40, seed=0, patch=16)
    flat = sum(name == "flat.png" for name, _, _ in picked.origins)
    # equal areas: uniform sampling would give ~20 flat patches; the rejection keeps ~10%
    assert flat <= 8
    assert picked.flat_patches == flat


def test_noise_inputs_get_zeros_and_upscaled_models_get_upscaled_patches(images):
    noisy = sample_patches(images, TinySR(noisy=True), 2, seed=0)
    assert set(noisy.inputs[0]) == {"image", "noise0"}
    assert not noisy.inputs[0]["noise0"].any()

    class Upscaled(TinySR):
        input_kind = "upscaled"

        def recommended_patch(self) -> int:
            return 96

    up = sample_patches(images, Upscaled(), 2, seed=0)
    # the runtime feeds bicubic-upscaled LR: the picture has the HR size (64x72),
    # so the patch is larger than any LR image (32x36) could give
    assert up.patch[0] > 36
    assert up.targets[0].shape == (up.patch[0], up.patch[0], 3)


def test_bad_calibration_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="no images"):
        sample_patches(empty, TinySR(), 4)
    assert issubclass(CalibrationError, SrExportError)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationError, match="could be read"):
        sample_patches(broken, TinySR(), 4)
    write_images(broken, count=1)
    warnings: list[str] = []
    ok = sample_patches(broken, TinySR(), 2, warn=warnings.append)
    assert ok.images == ["img0.png"] and ok.skipped == ["bad.png"]
    assert any("bad.png" in w for w in warnings)


# -- FP16 -----------------------------------------------------------------------------------
def test_fp16_keeps_io_float32_and_computes_in_float16(tiny):
    model, path = tiny
    fp32 = onnx.load(str(path))
    probes = synthetic_set(model, 2).inputs + stress_inputs(model, 16)
    half, report = convert_fp16(fp32, probes)
    assert report.blocked == {} and report.finite
    assert [i.type.tensor_type.elem_type for i in half.graph.input] == [onnx.TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in half.graph.output] == [onnx.TensorProto.FLOAT]
    weights = [i for i in half.graph.initializer if i.name.endswith("weight")]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    x = probes[0]
    a, b = inference_session(fp32).run(None, x)[0], inference_session(half).run(None, x)[0]
    assert acc.psnr(np.clip(a, 0, 1), np.clip(b, 0, 1)) > 50


@pytest.mark.parametrize("threshold", [None, math.inf], ids=["fp32-magnitude", "fp16-run"])
def test_fp16_overflow_falls_back_to_fp32(threshold):
    model = Overflowing().eval()
    fp32 = to_onnx_model(model)
    probes = stress_inputs(model, 8)
    # the model really overflows in float16: its emulation without fallback is not finite
    plain = extremes(emulate_fp16(fp32, set()), probes)
    assert any(not e.finite for e in plain.values())
    kwargs = {} if threshold is None else {"threshold": threshold}
    half, report = convert_fp16(fp32, probes, **kwargs)
    notes = report.notes()
    blocked = notes["fp32_blocked_nodes"]
    assert {"/a/Conv", "/Relu", "/b/Conv"} <= set(blocked)  # the producer and its readers
    assert "/c/Conv" not in blocked  # ordinary layers stay in float16
    assert all(reason for reason in notes["fp32_blocked_reasons"].values())
    assert notes["finite_on_probes"] and notes["largest_fp32_activation"]["max_abs"] > 65504
    # the written graph: finite and close to FP32, also under faithful float16 storage
    x = probes[0]
    ref = inference_session(fp32).run(None, x)[0]
    for graph in (half, emulate_fp16(fp32, report.blocked)):
        out = inference_session(graph).run(None, x)[0]
        assert np.isfinite(out).all()
        assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
    assert all(e.finite for e in extremes(emulate_fp16(fp32, report.blocked), probes).values())
    types = {n.name: n for n in half.graph.node}
    assert "/a/Conv" in types and "/c/Conv" in types


def test_fp16_block_list_is_honoured_by_the_written_graph():
    model = Overflowing().eval()
    fp32 = to_onnx_model(model)
    half = to_fp16(fp32, ["/a/Conv", "/Relu", "/b/Conv"])
    inits = {i.name: i.data_type for i in half.graph.initializer}
    assert inits["a.weight"] == onnx.TensorProto.FLOAT
    assert inits["c.weight"] == onnx.TensorProto.FLOAT16
    # no float16 round trip left between the FP32 layers
    casts = [n for n in half.graph.node if n.op_type == "Cast"]
    producers = {o: n for n in half.graph.node for o in n.output}
    for node in half.graph.node:
        if node.name in ("/Relu", "/b/Conv"):
            src = producers.get(node.input[0])
            assert src is None or src.op_type != "Cast", node.name
    assert casts


# -- INT8 -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calibrated(tiny, images, tmp_path_factory):
    model, path = tiny
    work = tmp_path_factory.mktemp("int8")
    calib = sample_patches(images, model, 4, seed=0)
    cache = calibrate(path, calib.inputs, "percentile", work / "ranges.json", work)
    return model, path, calib, cache, work


def test_qdq_structure_every_conv_per_channel(calibrated):
    model, path, calib, cache, work = calibrated
    fp32 = onnx.load(str(path))
    graph = quantize(path, work / "all.onnx", cache, "percentile", [])
    infos = qdq_structure(graph)
    assert len(infos) == len(conv_layers(fp32)) == 3
    assert all(i.weight_quantized and i.per_channel for i in infos)
    assert all(i.weight_qmax <= 64 for i in infos)  # reduce_range: 7-bit weights
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # exclusions are deliberate, listed, and exactly the FP32 convolutions
    image = image_space_nodes(fp32)
    assert "/head/Conv" in image  # reads the picture
    assert "/tail/Conv" in image  # writes the 12 sub-pixel channels the pixel shuffle turns into the picture
    excluded = ["/head/Conv"]
    partial = qdq_structure(quantize(path, work / "part.onnx", cache, "percentile", excluded))
    assert [i.name for i in partial if not i.weight_quantized] == excluded
    assert all(i.per_channel for i in partial if i.weight_quantized)
    # the TensorRT form: symmetric int8 activations, zero points 0, float biases
    trt = quantize(path, work / "trt.onnx", cache, "percentile", excluded, scheme="tensorrt")
    inits = {i.name: i for i in trt.graph.initializer}
    for node in trt.graph.node:
        if node.op_type == "QuantizeLinear":
            zp = onnx.numpy_helper.to_array(inits[node.input[2]])
            assert zp.dtype == np.int8 and not zp.any()
    assert all(i.per_channel for i in qdq_structure(trt) if i.weight_quantized)


def test_calibration_is_deterministic_for_a_seed(tiny, images, tmp_path):
    model, path = tiny
    ranges = []
    for run, seed in enumerate((3, 3, 4)):
        calib = sample_patches(images, model, 4, seed=seed)
        cache = calibrate(path, calib.inputs, "percentile", tmp_path / f"r{run}.json", tmp_path)
        ranges.append(json.loads(cache.read_text())["data"])
    assert ranges[0] == ranges[1]
    assert ranges[0] != ranges[2]
    q1 = quantize(path, tmp_path / "q1.onnx", tmp_path / "r0.json", "percentile", [])
    q2 = quantize(path, tmp_path / "q2.onnx", tmp_path / "r1.json", "percentile", [])
    scales = lambda g: {i.name: onnx.numpy_helper.to_array(i).tolist() for i in g.graph.initializer  # noqa: E731
                        if i.name.endswith("_scale")}
    assert scales(q1) == scales(q2)


@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_other_calibration_methods(calibrated, method):
    model, path, calib, _, work = calibrated
    cache = calibrate(path, calib.inputs, method, work / f"{method}.json", work)
    graph = quantize(path, work / f"{method}.onnx", cache, method, [])
    assert all(i.per_channel for i in qdq_structure(graph))
    out = inference_session(graph).run(None, calib.inputs[0])[0]
    assert np.isfinite(out).all()


def test_percentile_is_within_minmax(calibrated):
    model, path, calib, cache, work = calibrated
    mm = calibrate(path, calib.inputs, "minmax", work / "mm.json", work)
    p = json.loads(cache.read_text())["data"]
    m = json.loads(mm.read_text())["data"]
    value = lambda v: float(v["data"] if isinstance(v, dict) else v)  # noqa: E731
    for name in m:
        assert value(m[name]["lowest"]) - 1e-6 <= value(p[name]["lowest"])
        assert value(p[name]["highest"]) <= value(m[name]["highest"]) + 1e-6


def test_exclusion_candidates_and_module_groups(tiny):
    model, path = tiny
    fp32 = onnx.load(str(path))
    (none, outputs, image), groups = exclusion_candidates(fp32)
    assert none.label == "none" and none.excluded == () and none.float_outputs == ()
    assert image.label == "image-space layers" and "/head/Conv" in image.excluded and "/tail/Conv" in image.excluded
    # the tail reads features and writes the picture's sub-pixels: it moves from the float
    # layers to int8 with a float output; the head reads the picture and stays in float
    assert feature_to_image_convs(fp32) == ["/tail/Conv"]
    assert outputs.label == "image-space outputs in float" and outputs.float_outputs == ("/tail/Conv",)
    assert set(outputs.excluded) == set(image.excluded) - {"/tail/Conv"} and "/head/Conv" in outputs.excluded
    # the groups never repeat an image-space node and each holds a convolution (the tail's one
    # convolution writes the picture's sub-pixels: image-space, so "tail" is no group)
    assert set(groups) == {"body"}
    assert not set(image.excluded) & {n for names in groups.values() for n in names}


def test_a_float_output_convolution_computes_int8_inputs_in_float(calibrated):
    """int8 in, float out: the tail convolution reads a dequantized input and dequantized
    weights, and its output reaches the pixel shuffle without an 8-bit rounding; its value is
    the float convolution of those dequantized tensors (checked with torch's conv2d)."""
    from onnx import numpy_helper

    model, path, calib, cache, work = calibrated
    (_, outputs, _), _ = exclusion_candidates(onnx.load(str(path)))  # the other image-space layers in float
    excluded = list(outputs.excluded)
    graph = quantize(path, work / "float_tail.onnx", cache, "percentile", excluded, float_outputs=["/tail/Conv"])
    nodes = {n.name: n for n in graph.graph.node}
    producer = {o: n for n in graph.graph.node for o in n.output}
    tail = nodes["/tail/Conv"]
    readers = [n for n in graph.graph.node if tail.output[0] in n.input]
    assert [r.op_type for r in readers] == ["DepthToSpace"]
    assert producer[tail.input[0]].op_type == "DequantizeLinear"
    assert producer[tail.input[1]].op_type == "DequantizeLinear"
    assert next(i for i in qdq_structure(graph) if i.name == "/tail/Conv").weight_quantized
    # the all-int8 graph keeps the 8-bit rounding there
    rounded = quantize(path, work / "int8_tail.onnx", cache, "percentile", excluded)
    tail_rounded = next(n for n in rounded.graph.node if n.name == "/tail/Conv")
    assert [n.op_type for n in rounded.graph.node if tail_rounded.output[0] in n.input] == ["QuantizeLinear"]
    # expose the tail's input and output, and recompute the output from the dequantized tensors
    probe = onnx.ModelProto.FromString(graph.SerializeToString())
    for name in (tail.input[0], tail.output[0]):
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    run = inference_session(probe).run(None, calib.inputs[0])
    x, y = run[1], run[2]
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    w_dq = producer[tail.input[1]]
    w = (inits[w_dq.input[0]].astype(np.float32) - inits[w_dq.input[2]].astype(np.float32)[:, None, None, None]) \
        * inits[w_dq.input[1]][:, None, None, None]
    b_dq = producer[tail.input[2]]
    b = inits[b_dq.input[0]].astype(np.float32) * inits[b_dq.input[1]]
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    assert np.abs(y - expected).max() < 1e-5
    # and the picture is nearer the FP32 one without the 8-bit sub-pixels
    fp32_out = inference_session(path).run(None, calib.inputs[0])[0]
    err = lambda g: np.abs(inference_session(g).run(None, calib.inputs[0])[0] - fp32_out).mean()  # noqa: E731
    assert err(graph) < err(rounded)


def test_pixel_shuffle_moves_to_the_uint8_side_exactly():
    from onnx import TensorProto, helper

    from srexport.calib.int8 import commute_dequantize

    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DepthToSpace", ["xd"], ["y"], blocksize=2, mode="CRD"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 10, 12])],
        [onnx.numpy_helper.from_array(np.array(0.02, np.float32), "s"),
         onnx.numpy_helper.from_array(np.array(3, np.uint8), "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = {"x": np.random.default_rng(0).random((1, 8, 5, 6), dtype=np.float32)}
    before = inference_session(model).run(None, x)[0]
    assert commute_dequantize(model) == 1
    onnx.checker.check_model(model)
    d2s = next(n for n in model.graph.node if n.op_type == "DepthToSpace")
    assert d2s.input[0] == "xq"
    assert np.array_equal(inference_session(model).run(None, x)[0], before)


def test_a_float_output_that_is_the_graph_output_keeps_its_name():
    """Conv -> Q -> DQ -> graph output "y", the DQ's tensor also read by a Relu: without the
    pair the convolution itself writes "y", in float, and the Relu reads it (checked against
    torch's conv2d of the same weights)."""
    from onnx import TensorProto, helper

    from srexport.calib.int8 import keep_outputs_float

    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="tail", pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "s", "z"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "s", "z"], ["y"]),
        helper.make_node("Relu", ["y"], ["r"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 6]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 3, 5, 6])],
        [onnx.numpy_helper.from_array(w, "w"), onnx.numpy_helper.from_array(b, "b"),
         onnx.numpy_helper.from_array(np.array(0.25, np.float32), "s"),
         onnx.numpy_helper.from_array(np.array(128, np.uint8), "z")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((1, 4, 5, 6)).astype(np.float32)
    rounded_y = inference_session(model).run(["y"], {"x": x})[0]
    assert keep_outputs_float(model, ["tail"]) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"]
    assert model.graph.node[0].output[0] == "y" and list(model.graph.node[1].input) == ["y"]
    y, r = inference_session(model).run(["y", "r"], {"x": x})
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), padding=1).numpy()
    assert np.abs(y - expected).max() < 1e-5
    assert np.array_equal(r, np.maximum(y, 0))
    assert np.abs(rounded_y - expected).max() > 1e-3  # the pair did round to steps of 0.25
    # a node whose output is itself a graph output, or has no pair, is left as it is
    assert keep_outputs_float(model, ["tail"]) == 0


# -- the options, checked when made ---------------------------------------------------------
def test_precision_options_refuse_bad_requests_with_the_flag_users_typed(tmp_path):
    from srexport.calib.options import PrecisionOptions

    cases = [
        (dict(int8=True), "--int8 needs --calib-dir DIR (a folder of representative images)"),
        (dict(calib_dir=tmp_path / "missing"), f"--calib-dir {tmp_path / 'missing'} is not a folder"),
        (dict(eval_dir=tmp_path / "nope"), f"--eval-dir {tmp_path / 'nope'} is not a folder"),
        (dict(calib_method="magic"), "--calib-method must be one of entropy, percentile, minmax, got 'magic'"),
        (dict(calib_patches=0), "--calib-patches must be >= 1"),
    ]
    for fields, message in cases:
        with pytest.raises(CalibrationError) as info:
            PrecisionOptions(**fields)
        assert str(info.value) == message
    assert PrecisionOptions(int8=True, calib_dir=tmp_path).calib_dir == tmp_path
