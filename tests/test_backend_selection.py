"""`--backend auto`: the rule of srexport.runtime.backends.selection, as a table (pure logic)."""

from __future__ import annotations

import builtins

import pytest

from srexport.errors import SrExportError
from srexport.runtime.backends.selection import available_backends, choose_backend, nvidia_gpu_present

AMX = {"FP32", "INT8", "BF16", "FP16", "EXPORT_IMPORT"}  # Sapphire Rapids and newer
AVX2 = {"FP32", "INT8", "BIN", "EXPORT_IMPORT"}  # no BF16
GPU_TRT = {"tensorrt": True, "onnxruntime-cuda": True, "openvino": True, "onnxruntime": True}
GPU_ORT = {"onnxruntime-cuda": True, "openvino": True, "onnxruntime": True}
CPU_OV = {"openvino": True, "onnxruntime": True}
CPU_ONLY = {"onnxruntime": True}


@pytest.mark.parametrize(
    "precision, available, caps, expected",
    [
        # a GPU backend first, for every precision it runs
        ("fp32", GPU_TRT, AMX, "tensorrt"),
        ("fp16", GPU_TRT, AMX, "tensorrt"),
        ("int8", GPU_TRT, AMX, "tensorrt"),
        ("fp32", GPU_ORT, AMX, "onnxruntime"),
        ("fp16", GPU_ORT, AVX2, "onnxruntime"),
        ("int8", GPU_ORT, AVX2, "onnxruntime"),
        # bf16 is a CPU (OpenVINO) precision, even on a GPU machine
        ("bf16", GPU_TRT, AMX, "openvino"),
        # CPU: OpenVINO where installed and the CPU offers the precision
        ("fp32", CPU_OV, AMX, "openvino"),
        ("int8", CPU_OV, AMX, "openvino"),
        ("bf16", CPU_OV, AMX, "openvino"),
        ("fp32", CPU_OV, AVX2, "openvino"),
        ("int8", CPU_OV, AVX2, "openvino"),
        # fp16 on a CPU: ONNX Runtime (OpenVINO refuses it)
        ("fp16", CPU_OV, AMX, "onnxruntime"),
        # no OpenVINO, or a plugin that lacks the precision: the default
        ("fp32", CPU_ONLY, set(), "onnxruntime"),
        ("int8", CPU_ONLY, set(), "onnxruntime"),
        ("int8", CPU_OV, {"FP32"}, "onnxruntime"),
        ("fp32", {}, set(), "onnxruntime"),
    ],
)
def test_auto_rule(precision, available, caps, expected):
    backend, reason = choose_backend(precision, available, caps)
    assert backend == expected
    assert reason and "\n" not in reason


@pytest.mark.parametrize(
    "model, precision, available, caps, expected",
    [
        # PCARN-M's fp32 runs faster on ONNX Runtime than on OpenVINO (grouped convolutions)
        ("pcarn-m", "fp32", CPU_OV, AMX, "onnxruntime"),
        ("pcarn-m", "fp32", CPU_OV, AVX2, "onnxruntime"),
        # its other precisions, and every other model, keep OpenVINO
        ("pcarn-m", "int8", CPU_OV, AMX, "openvino"),
        ("pcarn-m", "bf16", CPU_OV, AMX, "openvino"),
        ("gmgbp", "fp32", CPU_OV, AMX, "openvino"),
        ("pcarn", "fp32", CPU_OV, AMX, "openvino"),
        ("bpp", "fp32", CPU_OV, AVX2, "openvino"),
        # a GPU backend still goes first; without ONNX Runtime, OpenVINO runs it
        ("pcarn-m", "fp32", GPU_TRT, AMX, "tensorrt"),
        ("pcarn-m", "fp32", {"openvino": True}, AMX, "openvino"),
    ],
)
def test_auto_rule_per_model(model, precision, available, caps, expected):
    backend, reason = choose_backend(precision, available, caps, model)
    assert backend == expected
    assert reason and "\n" not in reason


def test_reason_says_why():
    assert "TensorRT" in choose_backend("fp16", GPU_TRT, AMX)[1]
    assert "OpenVINO" in choose_backend("int8", CPU_OV, AMX)[1]
    assert "no OpenVINO" in choose_backend("fp32", CPU_ONLY, set())[1]
    assert "upcast" in choose_backend("fp16", CPU_ONLY, set())[1]
    assert "pcarn-m fp32 faster than OpenVINO" in choose_backend("fp32", CPU_OV, AMX, "pcarn-m")[1]


@pytest.mark.parametrize(
    "available, caps, says",
    [
        (CPU_OV, AVX2, "AVX512-BF16 or AMX"),  # OpenVINO there, the CPU lacks BF16
        (CPU_ONLY, set(), "pip install 'sr-export[openvino]'"),  # no OpenVINO
        (GPU_ORT | {"openvino": False}, set(), "openvino backend only"),
    ],
)
def test_bf16_without_a_way_to_run_it_is_one_clear_error(available, caps, says):
    with pytest.raises(SrExportError) as info:
        choose_backend("bf16", available, caps)
    message = str(info.value)
    assert says in message and "--precision fp32 or int8" in message and "\n" not in message


def test_unknown_precision_is_refused():
    with pytest.raises(SrExportError, match="unknown precision 'fp8'"):
        choose_backend("fp8", CPU_OV, AMX)


def test_available_backends_probes_without_importing_heavy_modules(monkeypatch):
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.split(".")[0] in ("openvino", "tensorrt", "onnxruntime"):
            raise AssertionError(f"available_backends imported {name}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", guarded)
    result = available_backends()
    assert set(result) >= {"tensorrt", "onnxruntime-cuda", "openvino", "onnxruntime"}
    assert all(isinstance(v, bool) for v in result.values())
    assert result["onnxruntime"]  # a dependency of sr-export: always there


def test_hidden_gpus_count_as_absent(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert not nvidia_gpu_present()
    assert available_backends()["tensorrt"] is False


def test_auto_does_not_open_openvino_for_a_choice_that_cannot_fall_to_it(monkeypatch):
    from srexport.runtime.backends import selection

    def probe(available=None):
        raise AssertionError("OpenVINO was probed")

    monkeypatch.setattr(selection, "available_backends", lambda: {**CPU_OV, "tensorrt": False, "onnxruntime-cuda": False})
    monkeypatch.setattr(selection, "cpu_capabilities", probe)
    assert selection.auto_backend("fp32", model="pcarn-m")[0] == "onnxruntime"
    with pytest.raises(AssertionError, match="OpenVINO was probed"):  # every other choice needs the probe
        selection.auto_backend("fp32", model="gmgbp")
