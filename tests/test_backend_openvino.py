"""The OpenVINO backend against ONNX Runtime FP32 (the reference runtime), and BF16 accuracy.

fp32 must match ONNX Runtime to 1e-4; bf16 and int8 must stay within 1 dB of the PSNR vs
FP32 recorded for them (the figure a bundle's manifest holds); unsupported precisions are
refused in one line.
"""

from __future__ import annotations

import dataclasses
import sys
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srexport.bundle import Bundle, PrecisionInfo
from srexport.calib import accuracy as acc
from srexport.calib.bf16 import emulate_bf16, measure_bf16, round_bf16
from srexport.errors import SrExportError
from srexport.export.build import export_bundle
from srexport.models.base import NoiseInput, ShapeRules, SRModel
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.backends.selection import available_backends
from srexport.runtime.upscaler import Upscaler

HAVE_OPENVINO = available_backends()["openvino"]
needs_openvino = pytest.mark.skipif(
    not HAVE_OPENVINO, reason="openvino is not installed (pip install 'sr-export[openvino]'); CI installs it"
)
ACCURACY_MARGIN_DB = 1.0


class ConvNet(SRModel):
    """A small x2 conv net with a noise input (the shape of G-MGBP's interface)."""

    scale = 2
    input_kind = "lr"
    noise_inputs = (NoiseInput("noise0", 1, 1, 0),)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 12, 3, padding=1)

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(min_size=4, output_scale=2, halo=3)

    def recommended_patch(self) -> int:
        return 32

    def forward(self, image, noise):
        x = F.relu(self.conv1(torch.cat([image, noise], 1)))
        x = F.relu(self.conv2(x))
        return F.pixel_shuffle(self.conv3(x), 2) + F.interpolate(image, scale_factor=2.0, mode="nearest")


def _inputs(batch: int, size: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.random((batch, 3, size, size), dtype=np.float32),
        "noise0": 0.1 * rng.standard_normal((batch, 1, size, size)).astype(np.float32),
    }


def _psnr_vs(reference: np.ndarray, test: np.ndarray) -> float:
    return acc.psnr(np.clip(reference, 0, 1), np.clip(test, 0, 1))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ov") / "convnet"
    return export_bundle(ConvNet(), root, {"model": "convnet", "variant": "t", "scale": 2, "task": "sr"})


@pytest.fixture(scope="module")
def int8_bundle(bundle, tmp_path_factory) -> Bundle:
    """The bundle plus a QDQ graph made by the precision code (calib/int8.py, CPU scheme),
    with its PSNR vs FP32 measured on ONNX Runtime and recorded as the build records it."""
    from srexport.calib.int8 import calibrate, quantize

    work = tmp_path_factory.mktemp("int8")
    samples = [{k: v[:1] for k, v in _inputs(1, 32, seed).items()} for seed in range(8)]
    fp32 = bundle.graph_path("fp32")
    cache = calibrate(fp32, samples, "minmax", work / "ranges.json", work)
    quantize(fp32, bundle.root / "model.int8.onnx", cache, "minmax")
    manifest = dataclasses.replace(
        bundle.manifest,
        precisions={**bundle.manifest.precisions, "int8": PrecisionInfo(file="model.int8.onnx")},
    )
    with_int8 = Bundle(bundle.root, manifest)
    feed = _inputs(2, 32, seed=99)
    recorded = _psnr_vs(OrtSession(with_int8, "fp32").run(feed), OrtSession(with_int8, "int8").run(feed))
    manifest.precisions["int8"].psnr_vs_fp32_db = recorded
    return with_int8


@pytest.fixture
def ov():
    if not HAVE_OPENVINO:
        pytest.skip("openvino is not installed (pip install 'sr-export[openvino]'); CI installs it")
    from srexport.runtime.backends import openvino

    return openvino


# -- fp32 parity ---------------------------------------------------------------------------
@needs_openvino
@pytest.mark.parametrize("batch", [1, 3])
def test_fp32_matches_onnxruntime_to_1e4(ov, bundle, batch):
    feed = _inputs(batch)
    expected = OrtSession(bundle).run(feed)
    got = ov.OvSession(bundle, "fp32", threads=2).run(feed)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-4


@needs_openvino
def test_latency_and_throughput_modes_give_the_same_batch(ov, bundle):
    feed = _inputs(5, seed=3)
    latency = ov.OvSession(bundle, threads=2)
    throughput = ov.OvSession(bundle, threads=2, batch=4)
    assert latency.mode(1) == "LATENCY" and latency.mode(5) == "THROUGHPUT"
    assert throughput.mode(1) == "THROUGHPUT"
    one_by_one = np.concatenate([latency.run({k: v[i : i + 1] for k, v in feed.items()}) for i in range(5)])
    assert np.abs(throughput.run(feed) - one_by_one).max() < 1e-5
    assert np.abs(latency.run(feed) - one_by_one).max() < 1e-5


@needs_openvino
def test_tiled_upscale_matches_onnxruntime_end_to_end(ov, bundle):
    planes = np.random.default_rng(5).random((3, 50, 70), dtype=np.float32)
    reference = Upscaler(bundle, OrtSession(bundle), patch=(32, 32), overlap=8, batch=2, noise=0.1, seed=7)
    tested = Upscaler(bundle, ov.OvSession(bundle, batch=2), patch=(32, 32), overlap=8, batch=2, noise=0.1, seed=7)
    expected = reference.upscale_planes(planes)
    got = tested.upscale_planes(planes)
    assert got.shape == expected.shape == (3, 100, 140)
    assert np.abs(got - expected).max() < 1e-4


@needs_openvino
def test_session_describes_itself(ov, bundle):
    session = ov.OvSession(bundle)
    assert (session.name, session.device) == ("openvino", "cpu")
    assert session.providers == ["CPU (f32)"]
    assert session.input_names == ["image", "noise0"]


# -- compiled-model cache ------------------------------------------------------------------
@needs_openvino
def test_compiled_models_are_cached_per_bundle_precision_and_shape(ov, bundle):
    ov.clear_cache()
    first = ov.OvSession(bundle, threads=2, shapes="static")
    first.run(_inputs(1, 24))
    first.run(_inputs(1, 24, seed=1))
    assert ov.cached_models() == 1
    ov.OvSession(bundle, threads=2, shapes="static").run(_inputs(1, 24))  # reopened bundle: same compiled model
    assert ov.cached_models() == 1
    first.run(_inputs(1, 20))  # another patch shape: one more static compile
    assert ov.cached_models() == 2


@needs_openvino
def test_closing_the_last_session_on_a_graph_frees_its_compiled_models(ov, tmp_path):
    torch.manual_seed(5)  # a graph of its own: no session of another test is open on it
    bundle = export_bundle(ConvNet(), tmp_path / "own", {"model": "convnet", "variant": "t", "scale": 2, "task": "sr"})
    ov.clear_cache()
    first, second = ov.OvSession(bundle, threads=2), ov.OvSession(bundle, threads=2)
    expected = first.run(_inputs(1, 24))
    second.run(_inputs(2, 24))  # a batch: the THROUGHPUT compile beside the LATENCY one
    assert ov.cached_models() == 2
    first.close()
    first.close()  # a second close counts once
    assert ov.cached_models() == 2  # the other session still runs them
    second.close()
    assert ov.cached_models() == 0
    third = ov.OvSession(bundle, threads=2)  # reopened: compiled again, the same numbers
    np.testing.assert_allclose(third.run(_inputs(1, 24)), expected, rtol=0, atol=1e-6)
    assert ov.cached_models() == 1
    third.close()


@needs_openvino
def test_a_network_with_a_halo_compiles_one_dynamic_model_for_every_size(ov, bundle):
    ov.clear_cache()
    session = ov.OvSession(bundle, threads=2)
    assert session.shapes == "dynamic"  # ConvNet has a finite halo
    for size in (24, 20, 37, 9):
        session.run(_inputs(1, size, seed=size))
    assert ov.cached_models() == 1


@needs_openvino
def test_the_dynamic_model_computes_what_the_static_ones_do(ov, bundle):
    rng = np.random.default_rng(21)
    dynamic = ov.OvSession(bundle, threads=2, shapes="dynamic")
    static = ov.OvSession(bundle, threads=2, shapes="static")
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(4, 70, size=2))
        feed = {"image": rng.random((1, 3, h, w), dtype=np.float32),
                "noise0": 0.1 * rng.standard_normal((1, 1, h, w)).astype(np.float32)}
        expected = OrtSession(bundle).run(feed)
        got, reference = dynamic.run(feed), static.run(feed)
        assert got.shape == (1, 3, 2 * h, 2 * w)
        assert np.abs(got - reference).max() <= 1e-6, (h, w)
        assert np.abs(got - expected).max() < 1e-4, (h, w)


def _is_static(entry) -> bool:
    return all(port.get_partial_shape().is_static for port in entry.model.inputs)


@needs_openvino
def test_repeating_shapes_compile_static_on_that_thread_only(ov, bundle):
    ov.clear_cache()
    session = ov.OvSession(bundle, threads=2)
    shapes = {"image": (1, 3, 24, 24), "noise0": (1, 1, 24, 24)}
    assert not _is_static(session.compiled(shapes, "LATENCY"))
    elsewhere = {}
    with session.repeating_shapes():
        inside = session.compiled(shapes, "LATENCY")
        other = threading.Thread(target=lambda: elsewhere.update(entry=session.compiled(shapes, "LATENCY")))
        other.start()
        other.join()
    assert _is_static(inside) and not _is_static(elsewhere["entry"])
    assert not _is_static(session.compiled(shapes, "LATENCY"))  # the scope has ended
    # shapes asked for explicitly are kept
    forced = ov.OvSession(bundle, threads=2, shapes="dynamic")
    with forced.repeating_shapes():
        assert not _is_static(forced.compiled(shapes, "LATENCY"))
    # and the static model computes what the dynamic one does
    feed = _inputs(1, 24, seed=4)
    with session.repeating_shapes():
        repeated = session.run(feed)
    assert np.abs(repeated - session.run(feed)).max() <= 1e-6


@needs_openvino
def test_upscale_frames_compiles_the_frame_size_static(ov, bundle):
    ov.clear_cache()
    up = Upscaler(bundle, ov.OvSession(bundle, threads=2), patch="auto")
    frame = np.random.default_rng(8).integers(0, 256, (20, 26, 3), dtype=np.uint8)
    frames = list(up.upscale_frames([frame] * 3))
    assert ov.cached_models() == 1  # one static model for the frames' one size
    single = up.upscale(frame)  # one image: the dynamic model
    assert ov.cached_models() == 2
    assert all(np.abs(f.astype(int) - single.astype(int)).max() <= 1 for f in frames)


@needs_openvino
def test_the_tiles_of_a_frame_on_several_streams_compile_static_too(ov, bundle):
    """A tiled frame's tiles run on worker threads (one per stream): the frame stream's scope
    goes with them."""
    ov.clear_cache()
    session = ov.OvSession(bundle, threads=2, streams=2)
    up = Upscaler(bundle, session, patch=(16, 16))
    assert up.concurrency == 2
    frame = np.random.default_rng(9).integers(0, 256, (30, 34, 3), dtype=np.uint8)
    assert len(up.plan(30, 34).tiles) > 1
    with session.repeating_shapes():
        framed = up.upscale(frame)
    assert ov.cached_models() == 1  # the tiles' one static shape
    single = up.upscale(frame)  # outside the scope: the dynamic model
    assert ov.cached_models() == 2
    assert np.abs(framed.astype(int) - single.astype(int)).max() <= 1


@needs_openvino
def test_unknown_shapes_mode_is_refused_in_one_line(ov, bundle):
    with pytest.raises(SrExportError, match="unknown input shapes 'bucket'"):
        ov.OvSession(bundle, shapes="bucket")


# -- int8 ----------------------------------------------------------------------------------
@needs_openvino
def test_int8_stays_within_its_recorded_accuracy(ov, int8_bundle):
    feed = _inputs(2, 32, seed=99)
    reference = OrtSession(int8_bundle, "fp32").run(feed)
    got = ov.OvSession(int8_bundle, "int8", threads=2).run(feed)
    recorded = int8_bundle.manifest.precisions["int8"].psnr_vs_fp32_db
    measured = _psnr_vs(reference, got)
    assert np.isfinite(measured)
    assert measured >= recorded - ACCURACY_MARGIN_DB, (measured, recorded)


@needs_openvino
def test_int8_without_an_int8_graph_names_what_the_bundle_has(ov, bundle):
    with pytest.raises(SrExportError, match="has no int8 graph"):
        ov.OvSession(bundle, "int8")


# -- bf16 ----------------------------------------------------------------------------------
@needs_openvino
def test_bf16_is_refused_in_one_line_where_the_cpu_lacks_it(ov, bundle):
    if "BF16" in ov.cpu_capabilities():
        pytest.skip("this CPU computes bf16 (the refusal is for CPUs without AVX512-BF16/AMX)")
    with pytest.raises(SrExportError) as info:
        ov.OvSession(bundle, "bf16")
    message = str(info.value)
    assert "\n" not in message and "bf16" in message and "fp32 or int8" in message


@needs_openvino
def test_bf16_stays_within_its_recorded_accuracy(ov, bundle):
    if "BF16" not in ov.cpu_capabilities():
        pytest.skip(f"{ov.cpu_name()} has no BF16 (AVX512-BF16 or AMX): bf16 parity needs such a CPU")
    feed = _inputs(2, 32, seed=11)
    reference = OrtSession(bundle).run(feed)
    emulated = OrtSession(_emulated_bundle(bundle)).run(feed)
    recorded = _psnr_vs(reference, emulated)  # what measure_bf16 records where no BF16 CPU is at hand
    got = ov.OvSession(bundle, "bf16", threads=2).run(feed)
    assert _psnr_vs(reference, got) >= recorded - ACCURACY_MARGIN_DB


@needs_openvino
def test_bf16_compile_check_compares_openvino_types_not_their_printed_form(ov):
    """The compiled model's INFERENCE_PRECISION_HINT is an openvino.Type whose str() changed
    between releases (2026.4 prints <Type: 'bfloat16'>): the library's own Type objects stand
    in for the property here, so this runs on every CPU, BF16 or not."""
    import openvino

    ov.require_bf16_compile(openvino.Type.bf16, "model.fp32.onnx")
    assert "bf16" not in str(openvino.Type.bf16)  # the printed form that broke a string check
    for other in (openvino.Type.f32, openvino.Type.f16, openvino.Type.i8):
        with pytest.raises(SrExportError) as info:
            ov.require_bf16_compile(other, "model.fp32.onnx")
        assert f"in {other.get_type_name()}, not bf16" in str(info.value)
    with pytest.raises(SrExportError, match="not a type"):
        ov.require_bf16_compile("bf16", "model.fp32.onnx")


@needs_openvino
def test_bf16_compile_on_a_cpu_without_bf16_is_refused_after_compiling(ov, bundle, monkeypatch):
    """Past the capability check (told the CPU has BF16), OpenVINO compiles in f32 on a CPU
    without it, and the compiled model's own property refuses the session in one line."""
    if "BF16" in ov.cpu_capabilities():
        pytest.skip("this CPU computes bf16: the compile is accepted (test_bf16_stays_within_its_recorded_accuracy)")
    monkeypatch.setattr(ov, "cpu_capabilities", lambda: {"FP32", "INT8", "BF16"})
    with pytest.raises(SrExportError) as info:
        ov.OvSession(bundle, "bf16", threads=1).run(_inputs(1, 16))
    message = str(info.value)
    assert "\n" not in message and "not bf16" in message and "in f32" in message


def test_check_precision_follows_the_cpu_capabilities():
    from srexport.runtime.backends.openvino import check_precision

    check_precision("bf16", {"FP32", "INT8", "BF16"})
    check_precision("int8", {"FP32", "INT8"})
    with pytest.raises(SrExportError, match="AVX512-BF16 or AMX"):
        check_precision("bf16", {"FP32", "INT8"})


def test_fp16_and_unknown_precisions_are_refused_clearly():
    from srexport.runtime.backends.openvino import check_precision

    with pytest.raises(SrExportError, match="not fp16"):
        check_precision("fp16")
    with pytest.raises(SrExportError, match="unknown precision 'fp64'"):
        check_precision("fp64")


def test_missing_openvino_says_how_to_install_it(monkeypatch):
    from srexport.runtime.backends import openvino

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    monkeypatch.setattr(openvino, "_core", None)
    with pytest.raises(SrExportError, match=r"pip install 'sr-export\[openvino\]'"):
        openvino.core()


# -- BF16 accuracy measurement (works on every CPU: emulated where BF16 is missing) -----------
def _emulated_bundle(bundle: Bundle) -> Bundle:
    import onnx

    path = bundle.root / "model.bf16-emulated.onnx"
    if not path.exists():
        onnx.save(emulate_bf16(onnx.load(str(bundle.graph_path("fp32")))), str(path))
    return Bundle(bundle.root, dataclasses.replace(
        bundle.manifest, precisions={"fp32": PrecisionInfo(file=path.name)}))


def test_round_bf16_is_round_to_nearest_even_like_torch():
    values = np.concatenate([
        np.random.default_rng(0).standard_normal(10000).astype(np.float32),
        np.float32([1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 0.0, np.inf, -np.inf]),
    ])
    expected = torch.from_numpy(values).bfloat16().float().numpy()
    assert np.array_equal(round_bf16(values), expected)


def test_emulated_bf16_graph_stores_bfloat16_and_stays_close(bundle):
    feed = _inputs(1, 24, seed=2)
    reference = OrtSession(bundle).run(feed)
    got = OrtSession(_emulated_bundle(bundle)).run(feed)
    assert np.array_equal(round_bf16(got), got)  # the output is a bfloat16 value
    assert 30.0 < _psnr_vs(reference, got) < 90.0  # rounded, and only by bfloat16's 8 bits


def _upscale(bundle: Bundle, lr: np.ndarray) -> np.ndarray:
    return Upscaler(bundle, OrtSession(bundle)).upscale_planes(lr.transpose(2, 0, 1)).transpose(1, 2, 0)


def _psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    def y(rgb8: np.ndarray) -> np.ndarray:
        return 16.0 + rgb8.astype(np.float64) / 255.0 @ np.array([65.481, 128.553, 24.966])

    sr8 = np.rint(np.clip(sr.astype(np.float64), 0, 1) * 255.0)
    a, b = y(hr)[shave:-shave, shave:-shave], y(sr8)[shave:-shave, shave:-shave]
    return 10.0 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2))


def test_measure_bf16_gives_the_manifest_entry(bundle):
    rng = np.random.default_rng(4)
    images = []
    for i in range(2):
        hr = (rng.random((48, 56, 3)) * 255).astype(np.uint8)
        lr, hr8 = acc.lr_from_hr(hr, 2)
        images.append(acc.EvalImage(f"img{i}", lr, hr8))
    info = measure_bf16(bundle, images, method="emulated", description="2 random pictures")
    assert info.file == "model.fp32.onnx"
    assert info.notes["runs_on"] == "openvino" and info.notes["inference_precision"] == "bf16"
    assert info.notes["backend"] == "onnxruntime"  # the emulation ran on ONNX Runtime
    assert info.notes["method"] == "emulated" and info.notes["accuracy_images"] == "2 random pictures"
    assert 30.0 < info.psnr_vs_fp32_db < 90.0
    # PSNR-Y re-derived here: BT.601 Y of both 8-bit images, `scale` pixels shaved, peak 255,
    # on the FP32 graph's and the emulated graph's outputs through the same tiled runtime
    fp32_y = np.mean([_psnr_y(_upscale(bundle, i.lr), i.hr, 2) for i in images])
    bf16_y = np.mean([_psnr_y(_upscale(_emulated_bundle(bundle), i.lr), i.hr, 2) for i in images])
    assert info.notes["psnr_y_fp32_db"] == pytest.approx(fp32_y, abs=1e-3)
    assert info.psnr_y_db == pytest.approx(bf16_y, abs=1e-3)
    loss = info.notes["psnr_y_loss_vs_fp32_db"]
    assert loss == pytest.approx(fp32_y - bf16_y, abs=1e-4)
    # random pictures and an untrained toy: bfloat16 moves PSNR-Y by far less than the 0.05 dB gate
    assert abs(fp32_y - bf16_y) < 0.05
    assert info.notes["gate"] == {"psnr_y_loss_vs_fp32_db_max": 0.05, "met": True}
    json_ready = dataclasses.asdict(info)  # what write_manifest serialises
    assert json_ready["notes"]["psnr_y_per_image_db"].keys() == {"img0", "img1"}


# -- auto selection and profiling ------------------------------------------------------------
_GPU_BACKEND = available_backends()["tensorrt"] or available_backends()["onnxruntime-cuda"]
cpu_machine = pytest.mark.skipif(_GPU_BACKEND, reason="a GPU backend is present: auto picks it, not a CPU backend")


@cpu_machine
@needs_openvino
def test_auto_opens_openvino_for_fp32_and_int8_and_says_why(ov, int8_bundle):
    from srexport.runtime.backends import open_session

    for precision in ("fp32", "int8"):
        session = open_session(int8_bundle, "auto", precision)
        assert session.name == "openvino", session.selection_note
        assert session.selection_note.startswith("auto: TensorRT not used: ")
        assert f"OpenVINO is the fastest CPU backend for {precision}" in session.selection_note
    feed = _inputs(1, 24)
    auto = open_session(int8_bundle, "auto").run(feed)
    assert np.abs(auto - OrtSession(int8_bundle, "fp32").run(feed)).max() < 1e-4


@cpu_machine
def test_auto_without_openvino_is_onnxruntime(no_openvino, bundle):
    from srexport.runtime.backends import open_session

    session = open_session(bundle, "auto")
    assert session.name == "onnxruntime"
    assert session.selection_note.endswith("no GPU backend and no OpenVINO: ONNX Runtime (CPU), the default that always works")
    with pytest.raises(SrExportError, match="bf16 runs on the openvino backend only"):
        open_session(bundle, "auto", "bf16")


@needs_openvino
def test_auto_bf16_on_a_cpu_without_bf16_is_one_clear_error(ov, bundle):
    from srexport.runtime.backends import open_session

    if "BF16" in ov.cpu_capabilities():
        assert open_session(bundle, "auto", "bf16").name == "openvino"
        return
    with pytest.raises(SrExportError) as info:
        open_session(bundle, "auto", "bf16")
    assert "\n" not in str(info.value) and "use --precision fp32 or int8" in str(info.value)


@needs_openvino
def test_per_operator_profile_names_the_convolutions(ov, bundle):
    session = ov.OvSession(bundle, threads=1)
    table = session.profile_ops(_inputs(1, 24), runs=2)
    assert table and all(ms >= 0 for ms in table.values())
    assert "Convolution" in table, sorted(table)
    assert max(table, key=table.get) in ("Convolution", "Subgraph", "Eltwise", "Reorder"), table
    # the session still runs other shapes afterwards
    assert session.run(_inputs(1, 20)).shape == (1, 3, 40, 40)
