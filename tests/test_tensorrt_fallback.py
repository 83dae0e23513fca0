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
from srexport.kernels.cuda import CudaUnavailable as KernelsCudaUnavailable
from srexport.runtime.backends import open_session
from srexport import lazy
from srexport.tensorrt.builder import build_engines, default_precisions, qdq_incompatibility
from srexport.lazy import CudaError, CudaUnavailable, EngineUnavailable, TensorRTUnavailable

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


@pytest.mark.parametrize("error", [
    CudaError("cudaMalloc failed: cudaErrorMemoryAllocation (2)"),
    KernelsCudaUnavailable("cannot load the kernels: no nvcc; cuda-python is not installed"),
], ids=["cuda-call", "kernels"])
def test_any_gpu_failure_opening_tensorrt_is_one_line_or_a_fallback(monkeypatch, no_openvino, bundle, error):
    """Every GPU-side error (TensorRT, cuda-python, the kernels) shares one base, so
    `--backend tensorrt` turns it into one line and `auto` falls back to ONNX Runtime."""
    import srexport.runtime.backends.tensorrt as trt_backend

    class Failing:
        def __init__(self, *args, **kwargs):
            raise error

    monkeypatch.setattr(trt_backend, "TrtSession", Failing)
    with pytest.raises(EngineUnavailable) as info:
        open_session(bundle, "tensorrt")
    assert str(info.value) == f"the tensorrt backend cannot run here: {error} (use --backend onnxruntime or auto)"
    session = open_session(bundle, "auto")
    assert session.name == "onnxruntime"
    assert session.selection_note.startswith(f"auto: TensorRT not used: {error}; ")


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
