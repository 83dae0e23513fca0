"""The CPU peaks a profile is measured against: the matmul graphs compute what they say
(checked on ONNX Runtime and OpenVINO against NumPy), each precision's graph is measured
against a peak of its own precision, and bf16 is refused where the CPU has none."""

from __future__ import annotations

import numpy as np
import pytest

from srexport.errors import SrExportError
from srexport.profiling import peak
from srexport.runtime.backends.selection import available_backends

needs_openvino = pytest.mark.skipif(not available_backends()["openvino"],
                                    reason="openvino is not installed; CI installs it")


def numpy_reference(precision: str, a: np.ndarray, operand: np.ndarray) -> np.ndarray:
    if precision == "int8":  # QuantizeLinear to uint8: round half to even, saturate; scale 0.01, zero point 128
        a = (np.clip(np.rint(a / np.float32(0.01)) + 128, 0, 255) - 128) * np.float32(0.01)
    return a.astype(np.float64) @ operand.astype(np.float64)


def full_uint8_range(n: int, seed: int) -> np.ndarray:
    """Inputs that quantise to every uint8 code, 0 and 255 included: the largest products a
    saturating uint8 x int8 kernel (AVX2 without VNNI) would see."""
    return np.random.default_rng(seed).uniform(-1.30, 1.30, (n, n)).astype(np.float32)


def test_the_int8_operand_is_7_bit_multiples_of_the_scale():
    _, operand = peak.openvino_matmul_model("int8", 64)
    codes = operand / np.float32(0.01)
    np.testing.assert_allclose(codes, np.rint(codes), atol=1e-4)
    assert np.abs(np.rint(codes)).max() <= 64 and len(np.unique(np.rint(codes))) > 100


@pytest.mark.parametrize("precision", ["f32", "int8"])
def test_the_matmul_graphs_compute_a_times_b(precision):
    from srexport.ort import inference_session

    n = 48
    model, operand = peak.openvino_matmul_model(precision, n)
    a = full_uint8_range(n, 5)
    want = numpy_reference(precision, a, operand)
    got = inference_session(model.SerializeToString()).run(None, {"a": a})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_openvino
def test_openvino_computes_the_int8_matmul_it_is_timed_on():
    from srexport.runtime.backends.openvino import core

    n = 64
    model, operand = peak.openvino_matmul_model("int8", n)
    compiled = core().compile_model(core().read_model(model.SerializeToString(), b""), "CPU")
    a = full_uint8_range(n, 6)
    got = compiled.create_infer_request().infer({"a": a})[0]
    np.testing.assert_allclose(got, numpy_reference("int8", a, operand), rtol=1e-4, atol=1e-3)


@needs_openvino
def test_each_precision_is_measured_against_its_own_peak(monkeypatch):
    quick = {}

    def fast(precision, threads, n=2048, seconds=1.0):
        quick[precision] = n
        return original(precision, threads, n=128, seconds=0.01)

    original = peak.openvino_matmul_peak
    monkeypatch.setattr(peak, "openvino_matmul_peak", fast)
    record = peak.measure_cpu_peak("int8", "openvino", 1)
    assert record["kind"].startswith("int8 OpenVINO MatMul 128x128, 1 threads") and record["gflops"] > 0
    assert record["source"] == "measured" and record["calls"] >= 3 and record["median_gflops"] <= record["gflops"]
    monkeypatch.setattr(peak, "measure_matmul_peak", lambda threads: {"kind": "fp32 torch.matmul"})
    assert peak.measure_cpu_peak("int8", "onnxruntime", 1)["kind"].startswith("fp32")
    assert peak.measure_cpu_peak("fp32", "openvino", 1)["kind"].startswith("fp32")
    assert list(quick) == ["int8"]


@needs_openvino
def test_bf16_is_refused_where_the_cpu_has_none(monkeypatch):
    from srexport.runtime.backends import openvino

    monkeypatch.setattr(openvino, "cpu_capabilities", lambda *a: {"FP32", "INT8"})
    with pytest.raises(SrExportError, match="no bf16 peak"):
        peak.openvino_matmul_peak("bf16", 1, n=64, seconds=0.01)
    with pytest.raises(SrExportError, match="no OpenVINO matmul peak for 'fp16'"):
        peak.openvino_matmul_peak("fp16", 1)
