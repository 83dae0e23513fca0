"""Engine building and the TensorRT backend on a simulated GPU (tests/trt_stubs/fake.py).

The simulation speaks only the recorded TensorRT 11.4 / cuda-python API (any other name or
call fails the test) and runs each "engine" with ONNX Runtime on the bytes it finds in
"device" memory, so the TensorRT session must reproduce the ONNX Runtime session: that
checks the plumbing (profiles, pinned and device buffers, copies, streams, chunking,
dtype conversion, engine selection and rebuilds) without a GPU. Real engines are the
`gpu`-marked tests in test_tensorrt_gpu.py.
"""

from __future__ import annotations

import numpy as np
import pytest

import srexport
from srexport.bundle import PrecisionInfo, load_bundle, write_manifest
from srexport.errors import ShapeError
from srexport.runtime.backends import open_session
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.backends.tensorrt import EngineUnavailable, TrtSession
from srexport.tensorrt import builder as trt_builder
from srexport.tensorrt.builder import build_engines
from srexport.tensorrt.keys import TIMING_CACHE, EngineKey, list_engines
from srexport.tensorrt.profiles import manifest_input_shapes, profile_for_manifest

from trt_stubs.bundles import toy_bundle
from trt_stubs.fake import FakeMachine, installed_machine, plan_record


@pytest.fixture
def machine(monkeypatch, tmp_path):
    yield from installed_machine(monkeypatch, tmp_path)


@pytest.fixture
def bundle(tmp_path_factory, tmp_path):
    return toy_bundle(tmp_path_factory, tmp_path / "bundle")


def _inputs(n: int, h: int = 32, w: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.random((n, 3, h, w), dtype=np.float32),
            "noise0": rng.standard_normal((n, 1, 2 * h, 2 * w), dtype=np.float32)}


def _session(bundle, **kwargs) -> TrtSession:
    return TrtSession(bundle, "fp32", log=print, **kwargs)


# -- building ------------------------------------------------------------------------------
def test_build_writes_a_keyed_plan_and_the_timing_cache(machine, bundle):
    logs = []
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], opt_level=2, log=logs.append)
    profile = profile_for_manifest(bundle.manifest)
    key = EngineKey.for_device("fp32", (8, 6), "11.4.0.106", profile, bundle.manifest.files["model.fp32.onnx"])
    assert result.status == "built" and result.path == bundle.root / "engines" / key.filename
    assert result.line().startswith(f"fp32 engine built: engines/{key.filename} (")
    assert key.filename == f"fp32_sm86_trt11.4.0_b1-8-16_s1-32-32_g{bundle.manifest.files['model.fp32.onnx'][:8]}.plan"
    assert (bundle.root / "engines" / TIMING_CACHE).read_bytes() == b"timing-cache:1"
    record = plan_record(result.path)
    expected = {name: [list(s) for s in shapes] for name, shapes in manifest_input_shapes(bundle.manifest, profile).items()}
    assert record["shapes"] == expected
    assert record["flags"] == 1 << int(machine.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert machine.state.opt_levels == [2]
    assert logs == ["building the fp32 TensorRT engine for Simulated RTX (sm86, batch 1..16 (opt 8), "
                    "patch 1..32 px (opt 32)); this takes minutes"]
    (again,) = build_engines(bundle.root, bundle.manifest, ["fp32"], log=pytest.fail)
    assert again.status == "cached" and again.line() == f"fp32 engine up to date: engines/{key.filename}"
    assert len(machine.state.builds) == 1


def test_the_timing_cache_carries_over_to_the_next_build(machine, bundle):
    build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], max_patch=48, log=print)
    assert result.status == "built" and "_s1-32-48_" in result.path.name
    assert machine.state.builds[0]["timing_cache"] == ""
    assert machine.state.builds[1]["timing_cache"] == "timing-cache:1"


def test_a_parser_error_fails_that_engine_only(machine, bundle):
    machine.state.parse_errors = ["In node 3 (Conv): UNSUPPORTED_NODE"]
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    assert (result.status, result.line()) == (
        "failed", "fp32 engine failed: TensorRT's ONNX parser rejected model.fp32.onnx: In node 3 (Conv): UNSUPPORTED_NODE")
    machine.state.parse_errors = []
    machine.state.fail_build = True
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    assert result.status == "failed" and "TensorRT could not build an engine from model.fp32.onnx" in result.reason
    assert list_engines(bundle.root / "engines") == []


def test_int8_engines_come_from_the_tensorrt_qdq_variant(machine, bundle):
    import shutil

    root, manifest = bundle.root, bundle.manifest
    shutil.copyfile(root / "model.fp32.onnx", root / "model.int8.onnx")
    shutil.copyfile(root / "model.fp32.onnx", root / "model.int8.tensorrt.onnx")
    manifest.precisions["int8"] = PrecisionInfo("model.int8.onnx", notes={"tensorrt": {"file": "model.int8.tensorrt.onnx"}})
    (result,) = build_engines(root, manifest, None, log=print)  # default: the reduced-precision graphs
    assert result.precision == "int8" and result.status == "built"
    assert plan_record(result.path)["graph"].endswith("model.int8.tensorrt.onnx")


def test_an_int8_graph_tensorrt_rejects_is_skipped_with_the_reason(machine, bundle, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    zero = numpy_helper.from_array(np.array(128, np.uint8), "zp")
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "sc")
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["image", "sc", "zp"], ["q"], name="q_in"),
         helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["output"], name="dq_in")],
        "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 3, "h", "w"])], [scale, zero])
    onnx.save(helper.make_model(graph), bundle.root / "model.int8.onnx")
    bundle.manifest.precisions["int8"] = PrecisionInfo("model.int8.onnx")
    (result,) = build_engines(bundle.root, bundle.manifest, ["int8"], log=pytest.fail)
    assert result.status == "skipped"
    assert result.reason.startswith("model.int8.onnx quantizes to uint8 (QuantizeLinear 'q_in')")
    assert machine.state.builds == []


# -- running -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 16, 23])
def test_the_engine_computes_what_onnxruntime_computes(machine, bundle, n):
    session = _session(bundle)
    reference = OrtSession(bundle)
    inputs = _inputs(n, seed=n)
    out = session.run(inputs)
    assert out.dtype == np.float32 and out.shape == (n, 3, 64, 64)
    np.testing.assert_allclose(out, reference.run(inputs), rtol=0, atol=1e-6)
    session.close()


def test_buffers_are_allocated_once_per_patch_shape_and_batches_use_two_streams(machine, bundle):
    session = _session(bundle)
    gpu = machine.gpu
    session.run(_inputs(8))
    per_shape = gpu.mallocs
    assert per_shape == 2 * 3  # two streams x (image, noise0, output)
    assert machine.state.executions == 2  # 8 patches as two halves of 4, one per stream
    for seed in range(3):
        session.run(_inputs(8, seed=seed))
        session.run(_inputs(3, seed=seed))
    assert gpu.mallocs == per_shape
    session.run(_inputs(2, 20, 24))  # an image smaller than a patch: a new shape
    assert gpu.mallocs == 2 * per_shape
    uploads = [n for kind, n in gpu.copies if kind == "cudaMemcpyHostToDevice"]
    assert uploads[:2] == [4 * 3 * 32 * 32 * 4, 4 * 1 * 64 * 64 * 4]  # exact sizes, from pinned memory
    session.close()
    assert (gpu.live("device"), gpu.live("host"), gpu.streams) == (0, 0, set())


def test_float16_engine_io_is_converted(monkeypatch, bundle, tmp_path):
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "cache"))
    machine = FakeMachine(output_scale=2, io_dtype="float16").install(monkeypatch)
    session = _session(bundle)
    inputs = _inputs(3)
    out = session.run(inputs)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, OrtSession(bundle).run(inputs), atol=5e-3)
    device = session.run_to_device(inputs)
    assert (device.shape, device.dtype, device.stream) == ((3, 3, 64, 64), "float16", session.stream_handle)
    np.testing.assert_array_equal(machine.gpu.read(device.pointer, device.shape, np.float16).astype(np.float32), out)
    assert machine.violations == []


def test_the_tiled_runtime_on_tensorrt_matches_onnxruntime(machine, bundle):
    image = np.random.default_rng(3).random((45, 70, 3), dtype=np.float32)
    trt = srexport.load(bundle.root, backend="tensorrt", batch=3, noise=0.5, seed=7)
    ort = srexport.load(bundle.root, backend="onnxruntime", batch=3, noise=0.5, seed=7)
    assert trt.session.name == "tensorrt"
    np.testing.assert_allclose(trt.upscale(image), ort.upscale(image), atol=1e-6)


def test_auto_picks_tensorrt_and_says_which_engine(machine, bundle):
    session = open_session(bundle, "auto", log=print)
    assert session.name == "tensorrt"
    assert session.selection_note.startswith("auto: TensorRT and a GPU are available; engine fp32_sm86_trt11.4.0_")
    assert session.selection_note.endswith("built in 0 s on Simulated RTX (sm86), TensorRT 11.4.0.106")
    again = open_session(bundle, "auto")
    assert again.selection_note.endswith(f"engine {session.engine_path.name} on Simulated RTX (sm86), "
                                         "TensorRT 11.4.0.106")


# -- engines that do not fit ---------------------------------------------------------------
def _engine_from(bundle, monkeypatch, capability, version="11.4.0.106"):
    other = FakeMachine(output_scale=2, capability=capability, version=version).install(monkeypatch)
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    assert result.status == "built" and other.violations == []
    return result.path


def test_an_engine_for_another_gpu_is_rebuilt_with_a_message(monkeypatch, bundle, tmp_path):
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "cache"))
    foreign = _engine_from(bundle, monkeypatch, (8, 0), "11.3.0.1")
    machine = FakeMachine(output_scale=2).install(monkeypatch)
    with pytest.raises(EngineUnavailable) as info:
        TrtSession(bundle, "fp32", build=False)
    assert str(info.value) == (
        f"no fp32 TensorRT engine for Simulated RTX (sm86, TensorRT 11.4.0) in the bundle: {foreign.name}: "
        "built for sm80, this GPU is sm86; built by TensorRT 11.3.0, this is TensorRT 11.4.0; "
        "build one with `sr-export build` on this machine")
    logs = []
    session = TrtSession(bundle, "fp32", log=logs.append)
    assert logs[0].startswith(f"no matching fp32 TensorRT engine ({foreign.name}: built for sm80, this GPU is sm86; ")
    assert logs[0].endswith(f"- building {session.engine_path.name} for Simulated RTX; this takes minutes")
    assert session.engine_path.parent == bundle.root / "engines" and foreign.is_file()
    assert machine.violations == []


def test_auto_falls_back_when_no_engine_may_be_built(monkeypatch, no_openvino, bundle, tmp_path):
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "cache"))
    _engine_from(bundle, monkeypatch, (7, 5))
    FakeMachine(output_scale=2).install(monkeypatch)
    monkeypatch.setattr("srexport.runtime.backends.tensorrt._writable_engine_dir", lambda bundle: None)
    session = open_session(bundle, "auto")
    assert session.name == "onnxruntime"
    assert session.selection_note.startswith("auto: TensorRT not used: no fp32 TensorRT engine for Simulated RTX (sm86")
    assert "built for sm75, this GPU is sm86" in session.selection_note


def test_a_damaged_plan_is_a_clear_error(machine, bundle):
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    result.path.write_bytes(b"\x00" * 64)
    with pytest.raises(EngineUnavailable, match=r"TensorRT could not load .*\.plan \(damaged, or built by another "
                                                r"TensorRT\); delete it to rebuild"):
        TrtSession(bundle, "fp32")


def test_a_read_only_bundle_keeps_engines_in_the_user_cache(machine, bundle, tmp_path, monkeypatch):
    import srexport.runtime.backends.tensorrt as backend

    real_access = backend.os.access
    monkeypatch.setattr(backend.os, "access",
                        lambda path, mode: False if str(path).startswith(str(bundle.root)) else real_access(path, mode))
    first = TrtSession(bundle, "fp32", log=print)
    assert first.engine_path.parent == tmp_path / "user-cache" / "engines"
    assert not (bundle.root / "engines").exists()
    second = TrtSession(bundle, "fp32", log=pytest.fail)  # found there, not rebuilt
    assert second.engine_path == first.engine_path and len(machine.state.builds) == 1


def test_a_patch_beyond_the_profile_switches_to_a_bigger_engine(machine, bundle):
    logs = []
    session = TrtSession(bundle, "fp32", log=logs.append)
    inputs = _inputs(2, 40, 48)
    out = session.run(inputs)
    np.testing.assert_allclose(out, OrtSession(bundle).run(inputs), atol=1e-6)
    assert "patch 40x48 exceeds the engine's largest (32): switching to an engine for larger patches" in logs
    assert session.profile.max_edge == 48 and "_s1-32-48_" in session.engine_path.name
    strict = TrtSession(bundle, "fp32", build=False, patch=(32, 32))
    assert strict.profile.max_edge == 32  # the exact engine first
    with pytest.raises(ShapeError, match=r"patch 64x64 exceeds the TensorRT engine's largest patch \(32\); run "
                                         r"with --patch 32 or smaller, or rebuild with `sr-export build --max-patch 64`"):
        strict.run(_inputs(1, 64, 64))


def test_a_patch_hint_selects_the_profile_up_front(machine, bundle):
    session = TrtSession(bundle, "fp32", patch=(40, 36), batch=32, log=print)
    assert (session.profile.max_edge, session.profile.max_batch) == (40, 32)
    assert len(session.run(_inputs(32, 40, 36))) == 32


def test_a_hashed_timing_cache_is_never_rewritten(machine, bundle):
    build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    write_manifest(bundle.root, bundle.manifest)  # the engines and timing cache are now part of the bundle
    signed = load_bundle(bundle.root)
    cache = (bundle.root / "engines" / TIMING_CACHE).read_bytes()
    TrtSession(signed, "fp32", patch=64, log=print)  # needs a new engine: built beside the others
    assert (bundle.root / "engines" / TIMING_CACHE).read_bytes() == cache
    assert len(list_engines(bundle.root / "engines")) == 2
    load_bundle(bundle.root)  # still verifies


def test_engine_key_uses_the_recorded_graph_hash(machine, bundle, monkeypatch):
    calls = []
    monkeypatch.setattr(trt_builder, "sha256_file", lambda path: calls.append(path) or "0" * 64)
    build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    assert calls == []  # the manifest's own hash, no re-hashing of the graph


def test_without_the_cuda_kernels_blending_stays_on_the_cpu(machine, bundle):
    logs = []
    session = TrtSession(bundle, "fp32", log=logs.append)
    window = np.ones(64, np.float32)
    assert session.device_blender(3, 100, 100, window, window) is None  # no real driver for the kernels here
    assert logs[-1].startswith("blending on the CPU: ")


def test_an_exception_inside_tensorrt_is_a_failed_build(machine, bundle, monkeypatch, no_openvino):
    def broken(self, network, config):
        raise RuntimeError("out of memory during tactic selection")

    builder_class = machine.trt._attrs["Builder"]._cls
    monkeypatch.setattr(builder_class, "build_serialized_network", broken)
    (result,) = build_engines(bundle.root, bundle.manifest, ["fp32"], log=print)
    assert result.line() == ("fp32 engine failed: TensorRT failed on model.fp32.onnx: RuntimeError: out of memory "
                             "during tactic selection")
    session = open_session(bundle, "auto")
    assert session.name == "onnxruntime" and "out of memory during tactic selection" in session.selection_note
