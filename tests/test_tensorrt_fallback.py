"""Without TensorRT or a GPU: skipped builds with reasons, ONNX Runtime fallback with a
clear message, `doctor`, and no eager imports of the optional GPU packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from srexport.errors import SrExportError
from srexport.runtime.backends import BACKENDS, open_session
from srexport import lazy
from srexport.tensorrt.builder import build_engines, default_precisions, qdq_incompatibility
from srexport.lazy import CudaUnavailable, EngineUnavailable, TensorRTUnavailable

from trt_stubs.bundles import toy_bundle
from trt_stubs.fake import FakeMachine

NO_TRT = TensorRTUnavailable('TensorRT is not installed (pip install "sr-export[tensorrt]" on a machine with an NVIDIA GPU)')


@pytest.fixture
def no_tensorrt(monkeypatch):
    """This machine as CI sees it, whatever happens to be installed."""
    monkeypatch.setattr(lazy, "_cache", {"tensorrt": NO_TRT, "cudart": CudaUnavailable("cuda-python is not installed")})


@pytest.fixture
def bundle(tmp_path_factory, tmp_path):
    return toy_bundle(tmp_path_factory, tmp_path / "bundle")


def test_importing_srexport_imports_no_gpu_package():
    """No srexport module imports TensorRT, cuda-python or pycuda at import time (torch
    may probe `cuda.bindings` itself: only imports made by srexport code count)."""
    code = textwrap.dedent("""
        import sys, traceback
        GPU = ("tensorrt", "tensorrt_bindings", "pycuda", "cuda")
        seen = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in GPU:
                    frames = [f for f in traceback.extract_stack()[:-1] if not f.filename.startswith("<frozen")]
                    if frames and "/srexport/" in frames[-1].filename:
                        seen.append(f"{name} from {frames[-1].filename}:{frames[-1].lineno}")
                return None

        sys.meta_path.insert(0, Watch())
        import srexport, srexport.doctor, srexport.tensorrt.builder, srexport.tensorrt.device
        import srexport.tensorrt.keys, srexport.tensorrt.profiles
        import srexport.runtime.backends, srexport.runtime.backends.tensorrt, srexport.runtime.upscaler
        print(seen)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_tensorrt_is_a_backend_choice():
    assert "tensorrt" in BACKENDS


def test_build_skips_every_engine_with_the_reason(no_tensorrt, bundle):
    results = build_engines(bundle.root, bundle.manifest, ["fp32", "fp16"], log=pytest.fail)
    assert [(r.precision, r.status) for r in results] == [("fp16", "skipped"), ("fp32", "skipped")]
    assert results[0].line() == "fp16 engine skipped: the bundle has no fp16 graph (it has: fp32)"
    assert results[1].line() == f"fp32 engine skipped: {NO_TRT}"
    assert not (bundle.root / "engines").exists()


def test_build_on_cpu_request_skips_and_cuda_request_fails(no_tensorrt, bundle):
    (result,) = build_engines(bundle.root, bundle.manifest, None, device="cpu", log=pytest.fail)
    assert result.line() == "fp32 engine skipped: --device cpu: TensorRT engines not built"
    with pytest.raises(TensorRTUnavailable, match="TensorRT is not installed"):
        build_engines(bundle.root, bundle.manifest, None, device="cuda", log=pytest.fail)
    with pytest.raises(SrExportError, match="--opt-level must be between 0 and 5"):
        build_engines(bundle.root, bundle.manifest, None, opt_level=7)


def test_without_a_gpu_the_reason_is_the_driver(monkeypatch, bundle):
    machine = FakeMachine(output_scale=2, driver_error=35).install(monkeypatch)
    (result,) = build_engines(bundle.root, bundle.manifest, None, log=pytest.fail)
    assert result.status == "skipped"
    assert "no usable NVIDIA driver (cudaErrorInsufficientDriver (35)" in result.reason
    machine.gpu.driver_error = 100
    (result,) = build_engines(bundle.root, bundle.manifest, None, log=pytest.fail)
    assert "the NVIDIA driver sees no GPU (cudaErrorNoDevice)" in result.reason
    assert machine.violations == []


def test_default_precisions_are_the_reduced_graphs(bundle):
    assert default_precisions(bundle.manifest) == ["fp32"]  # none reduced: the fp32 engine
    manifest = bundle.manifest
    manifest.precisions["int8"] = manifest.precisions["fp32"]
    assert default_precisions(manifest) == ["int8"]


def test_backend_tensorrt_fails_with_one_clear_line(no_tensorrt, bundle):
    with pytest.raises(EngineUnavailable) as info:
        open_session(bundle, "tensorrt")
    message = str(info.value)
    assert message.startswith("the tensorrt backend cannot run here: TensorRT is not installed")
    assert message.endswith("(use --backend onnxruntime or auto)")
    assert "\n" not in message


def test_auto_falls_back_to_onnxruntime_and_says_why(no_tensorrt, no_openvino, bundle):
    session = open_session(bundle, "auto")
    assert session.name == "onnxruntime"
    assert session.selection_note == (f"auto: TensorRT not used: {NO_TRT}; no GPU backend and no OpenVINO: "
                                      "ONNX Runtime (CPU), the default that always works")
    assert open_session(bundle, "onnxruntime").selection_note == "requested"


def test_auto_without_a_driver_falls_back(monkeypatch, no_openvino, bundle):
    FakeMachine(output_scale=2, driver_error=35).install(monkeypatch)
    session = open_session(bundle, "auto")
    assert session.name == "onnxruntime"
    assert session.selection_note.startswith("auto: TensorRT not used: no usable NVIDIA driver")


def test_broken_tensorrt_install_is_reported_not_raised(monkeypatch):
    import importlib

    def broken(name, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("libnvinfer.so.11: cannot open shared object file: No such file or directory")
        return importlib.import_module(name, *args, **kwargs)

    monkeypatch.setattr(lazy, "_cache", {})
    monkeypatch.setattr(lazy.importlib, "import_module", broken)
    with pytest.raises(TensorRTUnavailable, match="bindings are installed but its libraries are not: libnvinfer"):
        lazy.import_tensorrt()


def test_old_tensorrt_is_refused(monkeypatch):
    class Old:
        __version__ = "10.13.0.35"

    monkeypatch.setattr(lazy, "_cache", {})
    monkeypatch.setattr(lazy, "_import_tensorrt_module", lambda: Old)
    with pytest.raises(TensorRTUnavailable, match=r"TensorRT 10.13.0.35 is too old: .* >= 11.0"):
        lazy.import_tensorrt()


# -- INT8 graphs TensorRT can take ---------------------------------------------------------
def _qdq_graph(path, zero_point: np.ndarray):
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq0")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
        [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(zero_point, "z")])
    onnx.save(helper.make_model(graph), path)
    return path


def test_qdq_check_accepts_symmetric_int8(tmp_path):
    assert qdq_incompatibility(_qdq_graph(tmp_path / "ok.onnx", np.array(0, np.int8))) is None


def test_qdq_check_names_what_tensorrt_rejects(tmp_path):
    why = qdq_incompatibility(_qdq_graph(tmp_path / "u8.onnx", np.array(128, np.uint8)))
    assert why.startswith("u8.onnx quantizes to uint8 (QuantizeLinear 'q0'); TensorRT takes symmetric int8")
    why = qdq_incompatibility(_qdq_graph(tmp_path / "zp.onnx", np.array(3, np.int8)))
    assert why.startswith("zp.onnx has non-zero zero points (QuantizeLinear 'q0')")


# -- doctor ------------------------------------------------------------------------------
def test_doctor_reports_each_component_with_a_reason(no_tensorrt, no_openvino, monkeypatch):
    from srexport import doctor

    monkeypatch.setattr(doctor.ctypes, "CDLL", lambda name: (_ for _ in ()).throw(OSError(f"{name}: not found")))
    checks = doctor.collect()
    assert [c.name for c in checks] == ["NVIDIA driver", "GPU", "CUDA runtime", "cuda-python", "TensorRT",
                                        "ONNX Runtime", "OpenVINO", "nvcc"]
    by_name = {c.name: c for c in checks}
    assert not by_name["NVIDIA driver"].present
    assert by_name["NVIDIA driver"].detail.startswith("libcuda.so.1 not found: no NVIDIA driver installed")
    assert not by_name["TensorRT"].present and by_name["TensorRT"].detail == str(NO_TRT)
    assert not by_name["GPU"].present and "cuda-python is not installed" in by_name["GPU"].detail
    assert by_name["ONNX Runtime"].present and "CPUExecutionProvider" in by_name["ONNX Runtime"].detail
    assert all(c.detail for c in checks)
    text = doctor.render(checks)
    assert text.splitlines()[0] == "sr-export doctor"
    assert "  [--] TensorRT" in text and "  [ok] ONNX Runtime" in text
    assert not by_name["OpenVINO"].present and "pip install 'sr-export[openvino]'" in by_name["OpenVINO"].detail
    assert text.splitlines()[-5:] == [
        "--backend auto here:",
        "  fp32: onnxruntime (no GPU backend and no OpenVINO: ONNX Runtime (CPU), the default that always works)",
        "  fp16: onnxruntime (no GPU backend: ONNX Runtime runs the fp16 graph on the CPU (upcast to fp32, no speed gain))",
        "  bf16: refused: bf16 runs on the openvino backend only, which is not installed: pip install "
        "'sr-export[openvino]', or use --precision fp32 or int8",
        "  int8: onnxruntime (no GPU backend and no OpenVINO: ONNX Runtime (CPU), the default that always works)",
    ]


def test_doctor_with_a_gpu_names_the_engine_key(monkeypatch):
    from srexport import doctor

    FakeMachine(output_scale=2).install(monkeypatch)
    by_name = {c.name: c for c in doctor.collect()}
    assert by_name["GPU"].present and by_name["GPU"].detail == "GPU 0: Simulated RTX (sm86, 24.0 GiB)"
    assert by_name["CUDA runtime"].detail == "CUDA 13.4 (cuda-python's cudart)"
    assert by_name["TensorRT"].detail == ("11.4.0.106 (strongly typed engines); engines for this GPU are named "
                                          "*_sm86_trt11.4.0_*")


def test_a_failing_probe_does_not_break_doctor(monkeypatch):
    from srexport import doctor

    def boom():
        raise RuntimeError("segfault avoided")

    monkeypatch.setattr(doctor, "PROBES", (("GPU", boom),))
    (check,) = doctor.collect()
    assert (check.present, check.detail) == (False, "probe failed: RuntimeError: segfault avoided")
