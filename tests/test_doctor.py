"""`sr-export doctor`: every component with a reason, the GPU details from the driver, a
failing probe that does not break the report, and the auto choice per precision."""

from __future__ import annotations

import importlib.util

import pytest

from srexport import doctor
from srexport import lazy
from srexport.lazy import CudaUnavailable, TensorRTUnavailable

from machine import openvino_cpu_capabilities, ort_has_cuda
from trt_stubs.fake import FakeMachine

NO_TRT = TensorRTUnavailable('TensorRT is not installed (pip install "sr-export[tensorrt]" on a machine with an NVIDIA GPU)')
OV_CAPS = openvino_cpu_capabilities()


@pytest.fixture
def no_tensorrt(monkeypatch):
    """This machine as CI sees it, whatever happens to be installed."""
    monkeypatch.setattr(lazy, "_cache", {"tensorrt": NO_TRT, "cudart": CudaUnavailable("cuda-python is not installed")})


def test_doctor_reports_each_component_with_a_reason(no_tensorrt, no_openvino, monkeypatch):
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
    assert text.splitlines()[-1] == ("--precision auto here: fp32 (on the CPU through ONNX Runtime, reduced precision "
                                     "brings no speed; a bundle runs the first it holds within its recorded accuracy "
                                     "gate)")
    assert text.splitlines()[-6:-1] == [
        "--backend auto here:",
        "  fp32: onnxruntime (no GPU backend and no OpenVINO: ONNX Runtime (CPU), the default that always works)",
        "  fp16: onnxruntime (no GPU backend: ONNX Runtime runs the fp16 graph on the CPU (upcast to fp32, no speed gain))",
        "  bf16: refused: bf16 runs on the openvino backend only, which is not installed: pip install "
        "'sr-export[openvino]', or use --precision fp32 or int8",
        "  int8: onnxruntime (no GPU backend and no OpenVINO: ONNX Runtime (CPU), the default that always works)",
    ]


def test_doctor_with_a_gpu_names_the_engine_key(monkeypatch):
    FakeMachine(output_scale=2).install(monkeypatch)
    by_name = {c.name: c for c in doctor.collect()}
    assert by_name["GPU"].present and by_name["GPU"].detail == "GPU 0: Simulated RTX (sm86, 24.0 GiB)"
    assert by_name["CUDA runtime"].detail == "CUDA 13.4 (cuda-python's cudart)"
    assert by_name["TensorRT"].detail == ("11.4.0.106 (strongly typed engines); engines for this GPU are named "
                                          "*_sm86_trt11.4.0_*")


def test_a_failing_probe_does_not_break_doctor(monkeypatch):
    def boom():
        raise RuntimeError("segfault avoided")

    monkeypatch.setattr(doctor, "PROBES", (("GPU", boom),))
    (check,) = doctor.collect()
    assert (check.present, check.detail) == (False, "probe failed: RuntimeError: segfault avoided")


needs_openvino = pytest.mark.skipif(OV_CAPS is None, reason="openvino is not installed "
                                    "(pip install 'sr-export[openvino]'); CI installs it")
GPU_BACKEND = ort_has_cuda() or any(importlib.util.find_spec(n) is not None for n in ("tensorrt", "tensorrt_bindings"))


@needs_openvino
def test_doctor_names_openvino_and_its_bf16_choice():
    from srexport.runtime.backends.openvino import cpu_name

    (check,) = [c for c in doctor.collect() if c.name == "OpenVINO"]
    assert check.present and "FP32" in check.detail and cpu_name() in check.detail
    choices = doctor.auto_backends()
    assert list(choices)[:4] == ["fp32", "fp16", "bf16", "int8"]
    expected_bf16 = "openvino (" if "BF16" in OV_CAPS else "refused: bf16 needs a CPU"
    assert choices["bf16"].startswith(expected_bf16)


@needs_openvino
@pytest.mark.skipif(GPU_BACKEND, reason="a GPU backend is installed: auto prefers it to the CPU backends")
def test_doctor_on_a_cpu_machine_picks_openvino_where_it_offers_the_precision():
    choices = doctor.auto_backends()
    for precision, capability in (("fp32", "FP32"), ("int8", "INT8")):
        expected = "openvino (" if capability in OV_CAPS else "onnxruntime ("
        assert choices[precision].startswith(expected), choices[precision]
    assert choices["fp16"].startswith("onnxruntime (")  # OpenVINO is not offered fp16 on a CPU
    # PCARN-M's fp32 has a rule of its own (its grouped convolutions), listed after the precisions
    assert list(choices)[4:] == ["fp32 of pcarn-m"] and choices["fp32 of pcarn-m"].startswith("onnxruntime (")
