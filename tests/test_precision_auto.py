"""`--precision auto`: the fastest precision the bundle holds that the machine runs, within
the accuracy gate recorded at build time; fp32 where nothing faster pays or passes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from srexport.bundle import PrecisionInfo
from srexport.calib.options import PrecisionOptions
from srexport.errors import SessionClosed
from srexport.export.build import export_bundle
from srexport.runtime.backends import open_session
from srexport.runtime.backends import precision_auto as pa
from srexport.runtime.backends.selection import available_backends
from test_calib_units import TinySR, write_images

FP32 = PrecisionInfo("model.fp32.onnx", max_abs_error_vs_torch=1e-6)
FP16 = PrecisionInfo("model.fp16.onnx", psnr_vs_fp32_db=74.5)
INT8 = PrecisionInfo("model.int8.onnx", psnr_vs_fp32_db=38.0,
                     notes={"selection": {"met": True}, "psnr_y_loss_vs_fp32_db": 0.087})
BF16 = PrecisionInfo("model.fp32.onnx", psnr_vs_fp32_db=53.1, notes={"psnr_y_loss_vs_fp32_db": 0.0035})
ALL = {"fp32": FP32, "fp16": FP16, "bf16": BF16, "int8": INT8}


def machine(backend="auto", gpu=False, openvino=True, caps=("FP32", "INT8"), flags=("avx2", "fma")):
    return pa.Machine(backend, gpu, openvino, frozenset(caps), frozenset(flags))


AMX = dict(caps=("FP32", "INT8", "BF16"), flags=("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8"))


def test_an_amx_cpu_runs_int8_then_bf16():
    assert pa.choose_precision(ALL, machine(**AMX)).precision == "int8"
    assert pa.choose_precision({"fp32": FP32, "bf16": BF16}, machine(**AMX)).precision == "bf16"
    assert pa.choose_precision({"fp32": FP32, "fp16": FP16}, machine(**AMX)).precision == "fp32"


MIXED_INT8 = PrecisionInfo("model.int8.onnx", psnr_vs_fp32_db=46.8,
                           notes={"selection": {"met": True}, "psnr_y_loss_vs_fp32_db": 0.088,
                                  "excluded_nodes": ["/Analysis/conv1/Conv", "/Synthesis/conv4/Conv"]})


def test_a_mixed_int8_graph_comes_after_bf16_on_a_bf16_cpu():
    """Layers kept in float make int8 slower than bf16 where bf16 runs (G-MGBP on AMX)."""
    mixed = {"fp32": FP32, "bf16": BF16, "int8": MIXED_INT8}
    choice = pa.choose_precision(mixed, machine(**AMX))
    assert choice.precision == "bf16"
    assert "int8 graph keeps layers in float, slower than bf16 here" in choice.reason
    # without bf16 in the bundle the mixed graph is still the fastest there is
    assert pa.choose_precision({"fp32": FP32, "int8": MIXED_INT8}, machine(**AMX)).precision == "int8"
    # on a VNNI CPU without BF16 nothing changes: the float layers run in f32 either way
    assert pa.choose_precision(mixed, machine(flags=("avx2", "avx_vnni"))).precision == "int8"
    # an all-int8 graph keeps its place first
    assert pa.choose_precision(ALL, machine(**AMX)).precision == "int8"


def test_frame_streams_keep_a_mixed_int8_graph_first_on_a_bf16_cpu():
    """Frames of one size compile static, where the mixed graph beats bf16 (G-MGBP on AMX):
    the images of a folder run bf16, the frames of a stream int8, each saying why."""
    mixed = {"fp32": FP32, "bf16": BF16, "int8": MIXED_INT8}
    images = pa.choose_precision(mixed, machine(**AMX))
    frames = pa.choose_precision(mixed, machine(**AMX), repeating=True)
    assert (images.precision, frames.precision) == ("bf16", "int8")
    assert "on images of many sizes (frame streams run it)" in images.reason
    assert "frames of one size: this bundle's int8 graph keeps layers in float" in frames.reason
    # elsewhere (but on AVX2 alone, below) a stream changes nothing: int8 already first, or no bf16 to put it behind
    for recorded, where in ((ALL, machine(**AMX)), ({"fp32": FP32, "int8": MIXED_INT8}, machine(**AMX)),
                            (mixed, machine(flags=("avx2", "avx_vnni"))), (mixed, machine(gpu=True)),
                            ({"fp32": FP32, "bf16": BF16}, machine(**AMX)), (mixed, machine(caps=("FP32",)))):
        assert pa.choose_precision(recorded, where, repeating=True) == pa.choose_precision(recorded, where)


def test_float_layers_only_at_the_image_space_ends_keep_int8_first():
    """What counts is where the float layers sit, as the build records it: the image-space
    ends (PCARN-M) keep int8 first, whole modules inside the network (G-MGBP) move it after bf16."""
    ends = PrecisionInfo("model.int8.onnx", psnr_vs_fp32_db=45.9,
                         notes={"selection": {"met": True}, "excluded_nodes": ["/entry/Conv"], "float_in_trunk": False})
    trunk = PrecisionInfo("model.int8.onnx", psnr_vs_fp32_db=46.7,
                          notes={"selection": {"met": True}, "excluded_nodes": ["/entry/Conv"], "float_in_trunk": True})
    assert pa.choose_precision({"fp32": FP32, "bf16": BF16, "int8": ends}, machine(**AMX)).precision == "int8"
    assert pa.choose_precision({"fp32": FP32, "bf16": BF16, "int8": trunk}, machine(**AMX)).precision == "bf16"


def test_an_avx2_cpu_without_vnni_or_bf16_runs_fp32_for_images_and_int8_for_frames():
    """OpenVINO's AVX2 int8 kernels beat fp32 on frames compiled static, not on images of many
    sizes (AMD EPYC, AVX2 alone: `precision_auto.AVX2_INT8_NOTE`)."""
    images = pa.choose_precision(ALL, machine())
    frames = pa.choose_precision(ALL, machine(), repeating=True)
    assert (images.precision, frames.precision) == ("fp32", "int8")
    assert "int8 on AVX2 alone (no VNNI or BF16)" in images.reason and "AVX2 alone" in frames.reason
    assert pa.choose_precision({"fp32": FP32, "bf16": BF16, "fp16": FP16}, machine(), repeating=True).precision == "fp32"
    # a CPU whose OpenVINO offers no INT8 kernels runs fp32 either way
    for repeating in (False, True):
        choice = pa.choose_precision(ALL, machine(caps=("FP32",)), repeating=repeating)
        assert choice.precision == "fp32" and "no BF16 or VNNI" in choice.reason


def test_vnni_without_bf16_runs_int8():
    assert pa.choose_precision(ALL, machine(flags=("avx2", "avx_vnni"))).precision == "int8"


def test_a_gpu_runs_int8_then_fp16():
    assert pa.choose_precision(ALL, machine(gpu=True)).precision == "int8"
    assert pa.choose_precision({"fp32": FP32, "fp16": FP16}, machine(gpu=True)).precision == "fp16"


def test_cpu_backends_without_openvino_run_fp32():
    for m in (machine(backend="onnxruntime", **AMX), machine(backend="torch", **AMX), machine(openvino=False, **AMX)):
        assert pa.choose_precision(ALL, m).precision == "fp32"


def test_a_precision_outside_its_gate_is_passed_over_and_said_so():
    lossy_int8 = PrecisionInfo("model.int8.onnx", notes={"selection": {"met": False}, "psnr_y_loss_vs_fp32_db": 1.065})
    lossy_bf16 = PrecisionInfo("model.fp32.onnx", notes={"psnr_y_loss_vs_fp32_db": 0.06})
    choice = pa.choose_precision({"fp32": FP32, "int8": lossy_int8, "bf16": BF16}, machine(**AMX))
    assert choice.precision == "bf16" and "int8: outside its gate, PSNR-Y loss 1.065 dB" in choice.reason
    choice = pa.choose_precision({"fp32": FP32, "int8": lossy_int8, "bf16": lossy_bf16}, machine(**AMX))
    assert choice.precision == "fp32"
    noisy_fp16 = PrecisionInfo("model.fp16.onnx", psnr_vs_fp32_db=42.0)
    assert pa.choose_precision({"fp32": FP32, "fp16": noisy_fp16}, machine(gpu=True)).precision == "fp32"


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_int8 avx512_vnni\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert pa.cpu_flags(info) == {"fpu", "avx2", "amx_int8", "avx512_vnni"}
    assert pa.cpu_flags(tmp_path / "absent") == frozenset()


def tiny_int8_bundle(root: Path):
    options = PrecisionOptions(int8=True, calib_dir=write_images(root / "calib", 3, seed=0), calib_patches=4, seed=1)
    return export_bundle(TinySR(), root / "bundle", {"model": "tiny", "variant": "t", "scale": 2, "task": "sr"},
                         precision=options)


def as_mixed_int8_bundle(bundle, root: Path) -> Path:
    """A copy of an int8 bundle whose manifest records bf16 and an int8 graph with layers kept
    in float inside the network (as G-MGBP's build does)."""
    shutil.copytree(bundle.root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["precisions"]["int8"]["notes"]["float_in_trunk"] = True
    manifest["precisions"]["bf16"] = {"file": "model.fp32.onnx", "psnr_vs_fp32_db": 60.0,
                                      "notes": {"runs_on": "openvino", "inference_precision": "bf16"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    return tiny_int8_bundle(tmp_path_factory.mktemp("auto"))


def test_auto_opens_the_chosen_precision_and_says_why(int8_bundle, monkeypatch):
    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend, openvino=False))
    session = open_session(int8_bundle, "onnxruntime", "auto")
    assert session.precision == "fp32" and "precision auto: fp32" in session.selection_note
    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend, gpu=True, openvino=False))
    session = open_session(int8_bundle, "onnxruntime", "auto")  # as on a GPU: the int8 graph
    assert session.precision == "int8" and "precision auto: int8" in session.selection_note
    feed = {"image": np.random.default_rng(0).random((1, 3, 24, 24), dtype=np.float32)}
    from srexport.runtime.backends.onnxruntime import OrtSession

    assert np.array_equal(session.run(feed), OrtSession(int8_bundle, "int8").run(feed))
    assert not np.array_equal(session.run(feed), OrtSession(int8_bundle, "fp32").run(feed))


def test_frames_run_on_the_frames_session_opened_on_first_use(int8_bundle):
    """`Upscaler.for_frames`: frames go to the session of the frames' precision (opened once,
    when the first frame comes, closed with the Upscaler), images stay on their own."""
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.upscaler import Upscaler

    opened = []

    def frames_session():
        opened.append(OrtSession(int8_bundle, "int8"))
        return opened[-1]

    up = Upscaler(int8_bundle, OrtSession(int8_bundle, "fp32"), frames_session=frames_session)
    as_int8 = Upscaler(int8_bundle, OrtSession(int8_bundle, "int8"))
    as_fp32 = Upscaler(int8_bundle, OrtSession(int8_bundle, "fp32"))
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (20, 26, 3), dtype=np.uint8) for _ in range(3)]
    assert not np.array_equal(as_int8.upscale(frames[0]), as_fp32.upscale(frames[0]))  # the two can be told apart
    assert np.array_equal(up.upscale(frames[0]), as_fp32.upscale(frames[0])) and not opened
    for _ in range(2):
        for frame, out in zip(frames, up.upscale_frames(frames)):
            assert np.array_equal(out, as_int8.upscale(frame))
    assert len(opened) == 1 and up.for_frames().session is opened[0]
    assert np.array_equal(up.upscale(frames[1]), as_fp32.upscale(frames[1]))
    up.close()
    with pytest.raises(SessionClosed):
        opened[0].run({"image": np.zeros((1, 3, 8, 8), np.float32)})
    assert as_fp32.for_frames() is as_fp32  # no other precision for frames: itself


@pytest.mark.skipif(not available_backends()["openvino"], reason="openvino is not installed; CI installs it")
def test_auto_on_a_vnni_cpu_runs_int8_on_openvino(int8_bundle, monkeypatch):
    monkeypatch.setattr(pa, "cpu_flags", lambda: frozenset({"avx2", "avx_vnni"}))
    session = open_session(int8_bundle, "auto", "auto")
    assert session.name == "openvino" and session.precision == "int8"


@pytest.mark.skipif(not available_backends()["openvino"], reason="openvino is not installed; CI installs it")
def test_load_on_an_avx2_cpu_runs_images_in_fp32_and_frames_in_int8(int8_bundle, monkeypatch):
    """The whole path on an AVX2-only CPU (the machine's answers stand in where this one has
    VNNI or BF16): images open fp32, the frames of a stream int8 on OpenVINO, each as asked."""
    import srexport

    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend))
    rng = np.random.default_rng(5)
    frames = [rng.integers(0, 256, (20, 16, 3), dtype=np.uint8) for _ in range(2)]
    with srexport.load(int8_bundle.root) as up, srexport.load(int8_bundle.root, precision="int8") as int8, \
            srexport.load(int8_bundle.root, precision="fp32") as fp32:
        assert up.session.precision == "fp32" and "AVX2 alone" in up.session.selection_note
        assert (up.for_frames().session.name, up.for_frames().session.precision) == ("openvino", "int8")
        assert np.array_equal(up.upscale(frames[0]), fp32.upscale(frames[0]))
        streamed = list(up.upscale_frames(frames))
        assert all(np.array_equal(a, b) for a, b in zip(streamed, int8.upscale_frames(frames)))
        assert not np.array_equal(streamed[0], fp32.upscale(frames[0]))


def _bf16_cpu() -> bool:
    if not available_backends()["openvino"]:
        return False
    from srexport.runtime.backends.openvino import cpu_capabilities

    return "BF16" in cpu_capabilities()


@pytest.mark.skipif(not _bf16_cpu(), reason="needs OpenVINO on a CPU with BF16 (AVX512-BF16 or AMX); "
                    "test_frames_run_on_the_frames_session_opened_on_first_use covers the switch anywhere")
def test_load_runs_frames_of_a_mixed_int8_bundle_in_int8_and_images_in_bf16(int8_bundle, tmp_path):
    """The whole path on a BF16 CPU: a bundle recording bf16 and an int8 graph with layers kept
    in float (as G-MGBP's build does) opens bf16 for images and int8 for frame streams."""
    import srexport

    root = as_mixed_int8_bundle(int8_bundle, tmp_path / "mixed")
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, (22, 18, 3), dtype=np.uint8) for _ in range(2)]
    with srexport.load(root) as up, srexport.load(root, precision="int8") as int8, \
            srexport.load(root, precision="bf16") as bf16:
        assert up.session.precision == "bf16" and up.for_frames().session.precision == "int8"
        assert "frames of one size" in up.for_frames().session.selection_note
        assert np.array_equal(up.upscale(frames[0]), bf16.upscale(frames[0]))
        streamed = list(up.upscale_frames(frames))
        assert all(np.array_equal(a, b) for a, b in zip(streamed, int8.upscale_frames(frames)))


def test_ray_jobs_resolve_auto_on_the_driver_for_images_and_for_frames(int8_bundle, tmp_path, monkeypatch):
    """A Ray job's "auto" is resolved once, on the driver; a video job (`repeating`) chooses as
    `Upscaler.for_frames` does, and the workers' run line says why."""
    from srexport.distributed.ray_run import LoadOptions, driver_job

    root = as_mixed_int8_bundle(int8_bundle, tmp_path / "mixed")
    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend, **AMX))
    images = driver_job(root, "auto", "auto", LoadOptions())
    frames = driver_job(root, "auto", "auto", LoadOptions(), repeating=True)
    assert (images.precision, frames.precision) == ("bf16", "int8")
    assert images.precision_reason.startswith("precision auto: bf16")
    assert frames.precision_reason.startswith("precision auto: int8") and "frames of one size" in frames.precision_reason
    asked = driver_job(root, "auto", "int8", LoadOptions(), repeating=True)
    assert (asked.precision, asked.precision_reason) == ("int8", "")
