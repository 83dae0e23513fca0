"""`export_triton`: a Triton model repository that Triton's own schema accepts, whose ONNX
variant runs in ONNX Runtime with the declared I/O, and whose client-side tiling gives
the local runtime's pixels (no Triton server here: a stand-in answers the gRPC calls)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from dataclasses import asdict

import numpy as np
import onnxruntime as ort
import pytest
import torch

from srexport.bundle import load_bundle
from srexport.errors import SrExportError
from srexport.export.build import export_bundle
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.upscaler import Upscaler
from srexport.triton import export_triton
from srexport.triton.config import MANIFEST_PARAMETER
from toymodels import BorderModel

ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16"}


def _schema():
    """Triton's ModelConfig message (model_config.proto), as tritonclient ships it."""
    pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2",
        reason="tritonclient[grpc] is not installed: Triton's model_config.proto schema is unavailable",
    )
    return pb2


def _parse(text: str):
    from google.protobuf import text_format

    return text_format.Parse(text, _schema().ModelConfig())


@pytest.fixture(scope="module")
def noisy_bundle(tmp_path_factory):
    """x2 toy with a noise input padded by a border: exercises the noise I/O of the config."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("border") / "bundle"
    return export_bundle(BorderModel(), root, {"model": "border", "variant": "t", "scale": 2, "task": "sr"})


def test_onnx_repository_has_the_triton_layout_and_parses_with_tritons_schema(noisy_bundle, tmp_path):
    model_dir = export_triton(noisy_bundle.root, tmp_path / "repo", max_batch=6, instances=2)
    assert model_dir == tmp_path / "repo" / "border-t-x2"
    assert sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*")) == [
        "1", "1/model.onnx", "config.pbtxt"]
    assert (model_dir / "1" / "model.onnx").read_bytes() == noisy_bundle.graph_path("fp32").read_bytes()

    config = _parse((model_dir / "config.pbtxt").read_text())
    pb2 = _schema()
    assert config.name == "border-t-x2" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 6 and config.default_model_filename == "model.onnx"
    graph = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    declared = {i.name: (pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input}
    # Triton's dims leave out the batch dim; H and W are dynamic (-1), channels are fixed.
    assert declared == {i.name: (ORT_TYPES[i.type], [i.shape[1], -1, -1]) for i in graph.get_inputs()}
    assert declared["noise0"] == ("TYPE_FP32", [1, -1, -1])
    assert [(o.name, list(o.dims)) for o in config.output] == [(graph.get_outputs()[0].name, [3, -1, -1])]
    (group,) = config.instance_group
    assert (group.count, pb2.ModelInstanceGroup.Kind.Name(group.kind)) == (2, "KIND_AUTO")
    assert list(config.dynamic_batching.preferred_batch_size) == [3, 6]
    # The manifest travels in the config, so a client can tile without the bundle.
    stored = json.loads(config.parameters[MANIFEST_PARAMETER].string_value)
    assert stored == json.loads(json.dumps(asdict(noisy_bundle.manifest)))


def test_onnx_variant_runs_in_onnx_runtime_with_the_declared_io_names(noisy_bundle, tmp_path):
    model_dir = export_triton(noisy_bundle.root, tmp_path / "repo", max_batch=4)
    text = (model_dir / "config.pbtxt").read_text()
    # Read back without tritonclient: the names and dims Triton will bind.
    inputs = re.findall(r'input \[(.*?)\n\]', text, re.S)[0]
    names = re.findall(r'name: "([^"]+)"', inputs)
    graph = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert names == [i.name for i in graph.get_inputs()]
    assert re.findall(r'output \[.*?name: "([^"]+)"', text, re.S) == [o.name for o in graph.get_outputs()]

    # A full batch of patches as the client sends them: Triton's copy answers like the bundle.
    rng = np.random.default_rng(1)
    feed = {"image": rng.random((4, 3, 20, 24), dtype=np.float32),
            "noise0": rng.standard_normal((4, 1, 24, 28)).astype(np.float32)}
    served = graph.run(None, feed)[0]
    assert served.shape == (4, 3, 40, 48)
    np.testing.assert_array_equal(served, OrtSession(noisy_bundle).run(feed))

    # The warm-up request the config declares is a legal request of the graph.
    for key, dims in re.findall(r'inputs \{ key: "([^"]+)" value \{ data_type: TYPE_FP32 dims: \[ ([^\]]+) \]', text):
        feed[key] = np.zeros((1, *map(int, dims.split(","))), np.float32)
    assert graph.run(None, feed)[0].shape[0] == 1


def _fake_plan(bundle, sm: str, batch: str, edges: str = "s3-96-128"):
    from srexport.tensorrt.keys import ENGINE_DIR

    digest = noisy_graph_digest(bundle)
    path = bundle.root / ENGINE_DIR / f"fp32_sm{sm}_trt11.4.0_{batch}_{edges}_g{digest}.plan"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(f"plan for sm{sm}".encode())
    return path


def noisy_graph_digest(bundle) -> str:
    return bundle.manifest.files[bundle.manifest.precisions["fp32"].file][:8]


def test_tensorrt_plans_become_a_tensorrt_plan_model(noisy_bundle, tmp_path):
    bundle = load_bundle(shutil.copytree(noisy_bundle.root, tmp_path / "bundle"))
    plan = _fake_plan(bundle, "86", "b1-2-4")
    warnings: list[str] = []
    model_dir = export_triton(bundle, tmp_path / "repo", name="sr", max_batch=8, warn=warnings.append)
    assert (model_dir / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert not (model_dir / "1" / "model.onnx").exists()
    config = _parse((model_dir / "config.pbtxt").read_text())
    assert config.platform == "tensorrt_plan" and config.default_model_filename == "model.plan"
    assert dict(config.cc_model_filenames) == {"8.6": "model.plan"}
    assert config.max_batch_size == 4, "capped by the plan's optimization profile"
    assert warnings and "lowered to 4" in warnings[0]
    (group,) = config.instance_group
    assert _schema().ModelInstanceGroup.Kind.Name(group.kind) == "KIND_GPU"
    assert config.parameters["srexport.patch_range"].string_value == "3..128"

    # Several GPU architectures: one plan each, chosen by compute capability, no default;
    # a plan built from another version of the graph is never served.
    _fake_plan(bundle, "90", "b1-4-8")
    stale = _fake_plan(bundle, "75", "b1-4-8")
    stale.rename(stale.with_name(stale.name.replace(noisy_graph_digest(bundle), "00000000")))
    warnings.clear()
    model_dir = export_triton(bundle, tmp_path / "repo", name="sr", max_batch=8, warn=warnings.append)
    assert any("sm75" in w and "another version" in w for w in warnings)
    config = _parse((model_dir / "config.pbtxt").read_text())
    assert dict(config.cc_model_filenames) == {"8.6": "model_sm86.plan", "9.0": "model_sm90.plan"}
    assert config.default_model_filename == ""
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == ["model_sm86.plan", "model_sm90.plan"]
    # The ONNX variant is still one flag away.
    model_dir = export_triton(bundle, tmp_path / "repo", name="sr", platform="onnx", kind="cpu")
    config = _parse((model_dir / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    assert [_schema().ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group] == ["KIND_CPU"]


def test_instance_groups_per_gpu_and_clear_refusals(noisy_bundle, tmp_path):
    model_dir = export_triton(noisy_bundle, tmp_path / "repo", instances=2, kind="gpu", gpus=[0, 1])
    config = _parse((model_dir / "config.pbtxt").read_text())
    assert [(g.count, list(g.gpus)) for g in config.instance_group] == [(2, [0]), (2, [1])]
    with pytest.raises(SrExportError, match="no fp32 TensorRT plans"):
        export_triton(noisy_bundle, tmp_path / "repo", platform="tensorrt")
    with pytest.raises(SrExportError, match="unknown instance kind"):
        export_triton(noisy_bundle, tmp_path / "repo", kind="tpu")
    with pytest.raises(SrExportError, match="model name"):
        export_triton(noisy_bundle, tmp_path / "repo", name="../escape")
    with pytest.raises(SrExportError, match="no int8 graph"):
        export_triton(noisy_bundle, tmp_path / "repo", precision="int8")


def test_a_failed_export_leaves_the_previous_model_untouched(noisy_bundle, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    model_dir = export_triton(noisy_bundle, repo, max_batch=2)
    before = (model_dir / "config.pbtxt").read_text()

    def broken_copy(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("srexport.triton.export.shutil.copyfile", broken_copy)
    with pytest.raises(SrExportError, match="No space left"):
        export_triton(noisy_bundle, repo, max_batch=8)
    assert (model_dir / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in repo.iterdir()) == [model_dir.name], "no half-written folder left behind"


class _StandInServer:
    """Answers tritonclient.grpc's get_model_config / infer from the repository on disk,
    running the served model.onnx with ONNX Runtime, through tritonclient's own message
    types (the request tensors are read back from the bytes tritonclient would send)."""

    def __init__(self, model_dir):
        from google.protobuf import text_format
        from tritonclient.grpc import service_pb2

        self.pb = service_pb2
        self.config = text_format.Parse((model_dir / "config.pbtxt").read_text(), _schema().ModelConfig())
        self.graph = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        self.batches: list[int] = []

    def get_model_config(self, model_name, model_version=""):
        assert model_name == self.config.name
        return self.pb.ModelConfigResponse(config=self.config)

    def infer(self, model_name, inputs, model_version="", outputs=None):
        from tritonclient.grpc import InferResult

        feed = {}
        for tensor in inputs:
            header = tensor._get_tensor()
            assert header.datatype == "FP32"
            feed[header.name] = np.frombuffer(tensor._get_content(), np.float32).reshape(tuple(header.shape))
        assert len(feed["image"]) <= self.config.max_batch_size
        self.batches.append(len(feed["image"]))
        (name,) = [o.name() for o in outputs]
        result = self.graph.run([name], feed)[0]
        response = self.pb.ModelInferResponse(
            model_name=model_name, raw_output_contents=[result.tobytes()],
            outputs=[self.pb.ModelInferResponse.InferOutputTensor(name=name, datatype="FP32", shape=result.shape)])
        return InferResult(response)


def test_client_side_tiling_through_triton_gives_the_local_pixels(noisy_bundle, tmp_path):
    _schema()
    from srexport.triton import connect

    model_dir = export_triton(noisy_bundle, tmp_path / "repo", max_batch=3)
    server = _StandInServer(model_dir)
    remote = connect("localhost:8001", model_dir.name, client=server, patch=12, overlap=4, noise=0.5, seed=3)
    assert remote.batch == 3, "one request per max_batch_size patches by default"
    planes = np.random.default_rng(2).random((3, 29, 35), dtype=np.float32)
    local = Upscaler(noisy_bundle, OrtSession(noisy_bundle), (12, 12), 4, "hamming", 3, 0.5, 3)
    expected = local.upscale_planes(planes.copy())
    np.testing.assert_array_equal(remote.upscale_planes(planes.copy()), expected)
    assert len(server.batches) == -(-len(local.plan(29, 35).tiles) // 3) and max(server.batches) == 3


def test_missing_tritonclient_is_one_line_with_the_install_hint(monkeypatch):
    from srexport.triton.client import client_module

    monkeypatch.setitem(sys.modules, "tritonclient.grpc", None)
    with pytest.raises(SrExportError, match=r"pip install 'sr-export\[triton\]'"):
        client_module("grpc")
