"""API conformance: every TensorRT / cuda-python name srexport uses exists in the real API.

The reference is tests/data/tensorrt_11_4_api.json, read from the real
tensorrt-cu13-bindings 11.4.0.106 (and cuda-bindings 13.4.4) modules by
tests/trt_stubs/generate_api.py (stub native libraries stand in for NVIDIA's). Names are
found by an AST walk of srexport/ (attribute chains on `trt`, `trtp`, `cudart`, `drv` and
explicit imports of those modules); constructor and function calls are also checked for
their argument counts and keyword names. Method calls on objects are checked by the
simulated-GPU tests (tests/trt_stubs/fake.py), which only speak the recorded API.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from trt_stubs import api

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "srexport"
GENERATOR = REPO / "tests" / "trt_stubs" / "generate_api.py"


def test_the_recorded_api_is_tensorrt_11_4():
    data = api.load_api()
    assert data["packages"]["tensorrt-cu13-bindings"] == "11.4.0.106"
    objs = api.objects()
    # what FACTS.md observed on the real module
    assert not {"FP16", "INT8", "BF16", "FP8"} & set(objs["tensorrt.BuilderFlag"]["values"])
    assert objs["tensorrt.NetworkDefinitionCreationFlag"]["values"] == [
        "PREFER_AOT_PYTHON_PLUGINS", "PREFER_JIT_PYTHON_PLUGINS", "STRONGLY_TYPED"]
    assert not [n for n in objs["tensorrt"]["members"] if n.startswith("IInt8")]
    assert {"IPluginV3", "IPluginCreatorV3One"} <= set(objs["tensorrt"]["members"])
    assert {"register", "impl", "aot_impl", "autotune"} <= set(objs["tensorrt.plugin"]["members"])
    assert api.signatures("tensorrt.OnnxParser") == [
        {"params": [["network", False], ["logger", False]], "returns": "None"}]


def test_every_tensorrt_and_cuda_name_srexport_uses_exists():
    uses = api.scan_package(PACKAGE)
    modules = {u.module for u in uses}
    assert {"tensorrt", "cuda.bindings.runtime"} <= modules, "the scan found no TensorRT code: is the alias convention kept?"
    assert api.problems(uses) == []


def test_the_tensorrt_code_is_seen_by_the_scan():
    """The builder and runtime's key calls are among the names checked."""
    texts = {u.text for u in api.scan_package(PACKAGE)}
    for name in ("trt.Builder", "trt.OnnxParser", "trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED",
                 "trt.Runtime", "trt.TensorIOMode.INPUT", "trt.nptype", "trt.ILogger.Severity",
                 "cudart.cudaMemcpyAsync", "cudart.cudaMallocHost", "cudart.cudaStreamCreateWithFlags",
                 "cudart.cudaMemcpyKind.cudaMemcpyHostToDevice", "cudart.cudaGetDeviceCount"):
        assert name in texts, name


def _scan_snippet(tmp_path: Path, code: str) -> list[str]:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "mod.py").write_text(textwrap.dedent(code))
    return api.problems(api.scan_package(pkg))


def test_removed_apis_fail_the_check(tmp_path):
    problems = _scan_snippet(tmp_path, """
        import tensorrt as tr
        from cuda.bindings import runtime as rt

        def build(trt, config, network, calibrator):
            trt.BuilderFlag.FP16
            config.set_flag(tr.BuilderFlag.INT8)
            config.int8_calibrator = trt.IInt8EntropyCalibrator2(calibrator)
            network = trt.Builder(trt.Logger()).create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
            trt.OnnxParser(network)
            rt.cudaMemcpyAsync(1, 2, 3, rt.cudaMemcpyKind.cudaMemcpyHostToDevice)
            rt.cudaMallocPitchy(4)
            return trt.Builder(logger=None), trt.Runtime(trt.Logger(trt.Logger.WARNING))
    """)
    text = "\n".join(problems)
    assert "tr.BuilderFlag.FP16" not in text  # the alias is printed by convention
    for fragment in ("BuilderFlag (enum) has no member 'FP16'", "BuilderFlag (enum) has no member 'INT8'",
                     "tensorrt has no attribute 'IInt8EntropyCalibrator2'",
                     "NetworkDefinitionCreationFlag (enum) has no member 'EXPLICIT_BATCH'",
                     "tensorrt.OnnxParser called with 1 positional", "cudaMemcpyAsync called with 4 positional",
                     "has no attribute 'cudaMallocPitchy'"):
        assert fragment in text, fragment
    assert len(problems) == 7, text  # the last line is all correct


def test_the_generator_reproduces_the_recorded_api():
    """Live check against the real bindings, when they are importable here.

    The bindings wheel installs nowhere by default (its libraries cannot be downloaded);
    point SREXPORT_TRT_BINDINGS_SITE at a folder made with
    `pip install --no-deps --target DIR tensorrt-cu13-bindings==11.4.0.106` to run it."""
    site = os.environ.get("SREXPORT_TRT_BINDINGS_SITE")
    search = [site] if site else None
    found = any(importlib.util.find_spec(name) is not None for name in ("tensorrt", "tensorrt_bindings")) if not site \
        else (Path(site) / "tensorrt_bindings").is_dir()
    if not found:
        pytest.skip("TensorRT's Python bindings are not installed here (set SREXPORT_TRT_BINDINGS_SITE to a "
                    "`pip install --no-deps --target DIR tensorrt-cu13-bindings==11.4.0.106` folder)")
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("no C compiler for the stub libraries")
    args = [sys.executable, str(GENERATOR), "--check", "--tensorrt-only", "--out", str(api.API_FILE)]
    for folder in search or []:
        args += ["--site", folder]
    # --tensorrt-only: the cuda-python part of the record belongs to its own pinned version
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    if result.returncode not in (0, 1):
        pytest.fail(f"generator failed: {result.stderr[-2000:]}")
    if result.returncode == 1:
        pytest.fail("the installed TensorRT bindings differ from tests/data/tensorrt_11_4_api.json")


def test_the_simulated_tensorrt_refuses_what_the_real_one_lacks():
    """The simulation behind test_tensorrt_simulated.py checks method calls on objects too."""
    from trt_stubs.fake import ApiViolation, FakeMachine

    machine = FakeMachine(output_scale=2)
    trt = machine.trt
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    config = builder.create_builder_config()
    with pytest.raises(ApiViolation, match="BuilderFlag has no member FP16"):
        trt.BuilderFlag.FP16
    with pytest.raises(ApiViolation, match="IBuilderConfig.int8_calibrator is not a writable property"):
        config.int8_calibrator = None
    with pytest.raises(ApiViolation, match="no overload fits"):
        config.set_timing_cache(config.create_timing_cache(b""), ignore=True)
    with pytest.raises(ApiViolation, match="IBuilderConfig.max_workspace_size is not a writable property"):
        config.max_workspace_size = 1 << 30
    with pytest.raises(ApiViolation, match="tensorrt has no attribute 'IInt8EntropyCalibrator2'"):
        trt.IInt8EntropyCalibrator2
    with pytest.raises(ApiViolation, match="cudaMallocManaged2"):
        machine.cudart.cudaMallocManaged2
    assert len(machine.violations) == 6
