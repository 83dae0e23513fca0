"""The backend contract: every CPU backend is a `Session`, runs a bundle, honours its options
and closes; options of another backend are refused in one line (runtime/backends/base.py,
options.py, table.py)."""

from __future__ import annotations

import gc
import importlib.util
import weakref

import numpy as np
import pytest
import torch

import srexport
from srexport.errors import EngineUnavailable, OptionError, SessionClosed, SrExportError
from srexport.models import registry
from srexport.runtime.backends import BACKEND_TABLE, open_session
from srexport.runtime.backends.base import Session
from srexport.runtime.backends.options import OpenVINOOptions, OrtOptions, TensorRTOptions, TorchOptions

from trt_stubs.bundles import toy_bundle
from trt_stubs.fake import FakeMachine

CPU_BACKENDS = ["onnxruntime", "torch"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


@pytest.fixture(scope="module")
def pcarn(bundle_factory):
    return bundle_factory("pcarn-m", "m", 2)


@pytest.fixture(scope="module")
def reference_model(pcarn):
    """PCARN-M x2 built from the registry with the bundle's weights.npz, independently of the backends."""
    model = registry.get("pcarn-m").factory("m", 2)
    weights = np.load(pcarn.root / "weights.npz")
    model.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    return model.eval()


def _image(size: int = 16, n: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)}


def _one_line_error(info) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_every_cpu_backend_is_a_session_that_runs_the_bundle(pcarn, reference_model, backend):
    inputs = _image()
    with torch.no_grad():
        expected = reference_model(torch.from_numpy(inputs["image"])).numpy()
    session = open_session(pcarn, backend, "fp32")  # threads 0: torch's global thread count left alone
    assert isinstance(session, Session)
    assert (session.name, session.device, session.precision) == (backend, "cpu", "fp32")
    assert session.selection_note == "requested"
    assert all(isinstance(p, str) for p in session.providers)
    assert session.concurrency >= 1
    assert session.device_blender(3, 32, 32, np.ones(32, np.float32), np.ones(32, np.float32)) is None
    out = session.run(inputs)
    assert out.shape == (2, 3, 32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=2e-4)
    np.testing.assert_allclose(session.run_concurrent(inputs), expected, atol=2e-4)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_a_closed_session_refuses_to_run(pcarn, backend):
    with open_session(pcarn, backend, "fp32") as session:
        session.run(_image(n=1))
        assert not session.closed
    assert session.closed
    with pytest.raises(SessionClosed) as info:
        session.run(_image(n=1))
    assert _one_line_error(info) == f"the {backend} session is closed: open the bundle again to run it"
    with pytest.raises(SessionClosed):
        session.run_concurrent(_image(n=1))
    session.close()  # a second close is harmless


def test_closing_releases_the_onnxruntime_session(pcarn):
    session = open_session(pcarn, "onnxruntime", "fp32", threads=1)
    held = weakref.ref(session._session)
    session.close()
    gc.collect()
    assert held() is None


def test_load_as_a_context_manager_closes_the_session(pcarn):
    image = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    with srexport.load(pcarn.root, "onnxruntime", "fp32", threads=1,
                       backend_options=OrtOptions(providers=("CPUExecutionProvider",))) as up:
        out = up.upscale(image)
        assert out.shape == (24, 20, 3)
    assert up.session.closed
    with pytest.raises(SessionClosed):
        up.upscale(image)


def test_onnxruntime_reports_the_providers_it_was_given(pcarn):
    session = open_session(pcarn, "onnxruntime", "fp32", threads=1,
                           backend_options=OrtOptions(providers=["CPUExecutionProvider"]))
    assert session.providers == ["CPUExecutionProvider"]
    with pytest.raises(SrExportError) as info:
        open_session(pcarn, "onnxruntime", "fp32", backend_options=OrtOptions(providers=("NoSuchExecutionProvider",)))
    assert _one_line_error(info).startswith("ONNX Runtime here has no NoSuchExecutionProvider (available: ")


def test_onnxruntime_applies_the_graph_optimisation_level(pcarn):
    import onnxruntime as ort

    plain = open_session(pcarn, "onnxruntime", "fp32", threads=1, backend_options=OrtOptions(graph_optimization="disabled"))
    level = plain._session.get_session_options().graph_optimization_level
    assert level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    default = open_session(pcarn, "onnxruntime", "fp32", threads=1)
    assert default._session.get_session_options().graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    np.testing.assert_allclose(plain.run(_image()), default.run(_image()), atol=1e-5)


@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="OpenVINO is not installed")
def test_openvino_cache_dir_receives_the_compiled_models(pcarn, tmp_path):
    cache = tmp_path / "ov-cache"
    session = open_session(pcarn, "openvino", "fp32", threads=1, backend_options=OpenVINOOptions(cache_dir=cache))
    assert list(cache.iterdir()) == []
    session.run(_image(size=20, n=1))
    written = sorted(p.name for p in cache.iterdir())
    assert written and all((cache / name).stat().st_size > 0 for name in written)
    # the cache belongs to that session: another one compiling a new shape leaves the folder alone
    open_session(pcarn, "openvino", "fp32", threads=1).run(_image(size=24, n=1))
    assert sorted(p.name for p in cache.iterdir()) == written


@pytest.mark.skipif("openvino" not in CPU_BACKENDS, reason="OpenVINO is not installed")
def test_openvino_streams_option_sets_the_concurrency(pcarn):
    session = open_session(pcarn, "openvino", "fp32", threads=2, backend_options=OpenVINOOptions(streams=2))
    assert session.concurrency == 2 and session.stream_plan.streams == 2


@pytest.mark.parametrize("backend, options, owner", [
    ("onnxruntime", OpenVINOOptions(), "openvino"),
    ("openvino", OrtOptions(), "onnxruntime"),
    ("torch", TensorRTOptions(), "tensorrt"),
    ("auto", TorchOptions(), "torch"),
])
def test_options_of_another_backend_are_refused_in_one_line(pcarn, backend, options, owner):
    with pytest.raises(OptionError) as info:
        open_session(pcarn, backend, "fp32", backend_options=options)
    message = _one_line_error(info)
    assert message.startswith(f"{type(options).__name__} are options of the {owner} backend, not of {backend} (pass ")
    with pytest.raises(OptionError) as info:
        srexport.load(pcarn.root, backend, "fp32", backend_options=options)
    assert _one_line_error(info) == message


def test_backend_options_that_are_not_options_are_refused(pcarn):
    with pytest.raises(OptionError) as info:
        srexport.load(pcarn.root, "onnxruntime", backend_options={"providers": ["CPUExecutionProvider"]})
    assert _one_line_error(info).endswith("got dict")
    with pytest.raises(OptionError) as info:
        open_session(pcarn, "auto", "fp32", backend_options=(OrtOptions(), OrtOptions(graph_optimization="basic")))
    assert _one_line_error(info) == "backend_options gives OrtOptions twice"


def test_auto_takes_the_options_of_the_backend_it_picks(pcarn, no_openvino):
    session = open_session(pcarn, "auto", "fp32", threads=1,
                           backend_options=(OpenVINOOptions(streams=3), OrtOptions(providers=("CPUExecutionProvider",))))
    assert session.name == "onnxruntime" and session.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("kwargs, message", [
    ({"gpu_index": -1}, "TensorRTOptions.gpu_index must be an integer between 0 and 63, got -1"),
    ({"opt_level": 6}, "TensorRTOptions.opt_level must be an integer between 0 and 5, got 6"),
    ({"opt_level": 2.5}, "TensorRTOptions.opt_level must be an integer between 0 and 5, got 2.5"),
    ({"streams": 0}, "TensorRTOptions.streams must be an integer between 1 and 8, got 0"),
    ({"build": "yes"}, "TensorRTOptions.build must be True or False, got 'yes'"),
])
def test_tensorrt_options_are_checked_on_construction(kwargs, message):
    with pytest.raises(OptionError) as info:
        TensorRTOptions(**kwargs)
    assert _one_line_error(info) == message


@pytest.mark.parametrize("make, message", [
    (lambda: OrtOptions(providers=()), "OrtOptions.providers must be provider names, got ()"),
    (lambda: OrtOptions(graph_optimization="max"),
     "OrtOptions.graph_optimization must be one of disabled, basic, extended, all, got 'max'"),
    (lambda: OpenVINOOptions(streams=0), "OpenVINOOptions.streams must be an integer between 1 and 256, got 0"),
    (lambda: OpenVINOOptions(shapes="fixed"),
     "OpenVINOOptions.shapes must be one of auto, dynamic, static, got 'fixed'"),
    (lambda: OpenVINOOptions(cache_dir=3), "OpenVINOOptions.cache_dir must be a folder path, got 3"),
])
def test_cpu_options_are_checked_on_construction(make, message):
    with pytest.raises(OptionError) as info:
        make()
    assert _one_line_error(info) == message


def test_options_are_frozen():
    options = TensorRTOptions()
    with pytest.raises(AttributeError):
        options.opt_level = 5  # type: ignore[misc]


def test_without_tensorrt_the_table_opener_fails_as_before(monkeypatch, tmp_path_factory, tmp_path):
    from srexport import lazy
    from srexport.lazy import CudaUnavailable, TensorRTUnavailable

    monkeypatch.setattr(lazy, "_cache", {"tensorrt": TensorRTUnavailable("TensorRT is not installed"),
                                         "cudart": CudaUnavailable("cuda-python is not installed")})
    bundle = toy_bundle(tmp_path_factory, tmp_path / "bundle")
    assert BACKEND_TABLE["tensorrt"].options is TensorRTOptions
    with pytest.raises(EngineUnavailable) as info:
        open_session(bundle, "tensorrt", backend_options=TensorRTOptions(gpu_index=1, opt_level=1))
    assert _one_line_error(info) == ("the tensorrt backend cannot run here: TensorRT is not installed "
                                     "(use --backend onnxruntime or auto)")


def test_tensorrt_options_reach_the_engine_on_a_simulated_gpu(monkeypatch, tmp_path_factory, tmp_path):
    """The fake TensorRT of tests/trt_stubs records the builder's optimisation level."""
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "user-cache"))
    machine = FakeMachine(output_scale=2).install(monkeypatch)
    bundle = toy_bundle(tmp_path_factory, tmp_path / "bundle")
    with pytest.raises(EngineUnavailable) as info:
        open_session(bundle, "tensorrt", backend_options=TensorRTOptions(gpu_index=1))
    assert _one_line_error(info).startswith("the tensorrt backend cannot run here: GPU 1 does not exist")
    with pytest.raises(EngineUnavailable):
        open_session(bundle, "tensorrt", backend_options=TensorRTOptions(build=False))
    assert machine.state.opt_levels == []
    session = open_session(bundle, "tensorrt", log=lambda line: None,
                           backend_options=TensorRTOptions(opt_level=1, streams=1))
    assert isinstance(session, Session) and session.device == "cuda"
    assert machine.state.opt_levels == [1]
    assert len(session._slots) == 1
    session.close()
    with pytest.raises(SessionClosed):
        session.run({"image": np.zeros((1, 3, 32, 32), np.float32), "noise0": np.zeros((1, 1, 64, 64), np.float32)})
    assert machine.violations == []
