"""The `--plugins` graph rewrite (VN+SC subgraphs -> one srexport::VNSC node) and the
TensorRT plugin definition, checked against a stand-in of the documented tensorrt.plugin
API (TensorRT itself does not install here)."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from srexport.errors import ExportError
from srexport.export.onnx_export import simplify
from srexport.kernels import compiler, launch, onnx_plugin, trt_plugin
from srexport.models.discriminator import VNSC


class MiniCritic(nn.Module):
    """The discriminator's wiring in small: VN+SC of the image feeds a conv stage; the
    next stage reads concat[features, VN+SC(downscaled image)]."""

    def __init__(self, vnsc: nn.Module | None = None):
        super().__init__()
        self.vnsc = vnsc or VNSC()
        self.stage0 = nn.Sequential(nn.Conv2d(49, 8, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 3, 2, 1))
        self.down = nn.AvgPool2d(2)
        self.stage1 = nn.Conv2d(8 + 49, 1, 3, padding=1)

    def forward(self, x):
        h = self.stage0(self.vnsc(x))
        return self.stage1(torch.cat([h, self.vnsc(self.down(x))], 1))


def export(module: nn.Module) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module.eval(), (torch.rand(1, 3, 32, 48),), buffer, dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["output"],
                          dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}, "output": {0: "b", 2: "oh", 3: "ow"}})
    return simplify(onnx.load_from_string(buffer.getvalue()))


@pytest.fixture(scope="module")
def mini_graph():
    torch.manual_seed(0)
    return export(MiniCritic())


def test_fuses_each_vnsc_into_one_plugin_node(mini_graph):
    fused, count = onnx_plugin.fuse_vnsc(mini_graph, expected=2)
    assert count == 2 == onnx_plugin.count_vnsc_nodes(fused)
    ops = [n.op_type for n in fused.graph.node]
    assert "Pow" not in ops and "Slice" not in ops and "Sqrt" not in ops  # the decomposition is gone
    assert ops.count("Conv") == 3  # only the critic's own convolutions remain
    nodes = [n for n in fused.graph.node if n.op_type == onnx_plugin.OP_TYPE]
    for node in nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.domain == "srexport"
        assert attrs == {"plugin_namespace": b"srexport", "plugin_version": b"1"}
    assert nodes[0].input[0] == "image"
    # the second one feeds the stage-1 Concat next to the stage-0 features
    concat = next(n for n in fused.graph.node if n.op_type == "Concat")
    assert len(concat.input) == 2 and concat.input[1] == nodes[1].output[0]
    assert any(o.domain == "srexport" for o in fused.opset_import)
    onnx.checker.check_model(fused, full_check=True)
    assert onnx_plugin.count_vnsc_nodes(mini_graph) == 0  # the input model is untouched


def test_matched_subgraphs_compute_vnsc(mini_graph):
    for match in onnx_plugin.find_vnsc(mini_graph):
        assert onnx_plugin.verify_match(mini_graph, match) <= 1e-5


def test_something_else_with_the_same_structure_is_not_fused(mini_graph):
    """Same structure, one Gaussian tap changed: the verification refuses to rewrite it."""
    graph = onnx.ModelProto()
    graph.CopyFrom(mini_graph)
    match = onnx_plugin.find_vnsc(graph)[0]
    tensors = [init for init in graph.graph.initializer]  # scalars live in initializers or Constant nodes
    tensors += [a.t for i in match.nodes + match.deps for a in graph.graph.node[i].attribute
                if graph.graph.node[i].op_type == "Constant" and a.name == "value"]
    for tensor in tensors:  # the centre tap, 0.1167 (or 0.114 of the luminance: as good)
        value = onnx.numpy_helper.to_array(tensor)
        if value.dtype == np.float32 and value.size == 1 and 0.1 < abs(float(value.reshape(-1)[0])) < 0.2:
            tensor.CopyFrom(onnx.numpy_helper.from_array(value * np.float32(1.5), tensor.name))
            break
    else:
        pytest.fail("no scalar weight found in the VN+SC subgraph")
    assert len(onnx_plugin.find_vnsc(graph)) == 2
    with pytest.raises(ExportError, match="not VN\\+SC"):
        onnx_plugin.fuse_vnsc(graph)


def test_expected_count_is_enforced(mini_graph):
    with pytest.raises(ExportError, match="expected 4"):
        onnx_plugin.fuse_vnsc(mini_graph, expected=4, verify=False)


def test_graph_without_vnsc_is_returned_unchanged():
    graph = export(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)))
    fused, count = onnx_plugin.fuse_vnsc(graph)
    assert count == 0 and fused.SerializeToString() == graph.SerializeToString()


@pytest.mark.slow
def test_the_real_discriminator_has_four_fusable_vnsc():
    from srexport.export.onnx_export import to_onnx_model
    from srexport.models.discriminator import Discriminator

    graph = to_onnx_model(Discriminator())
    fused, count = onnx_plugin.fuse_vnsc(graph, expected=4)
    assert count == 4
    assert {n.input[0] for n in fused.graph.node if n.op_type == "VNSC"} >= {"image"}
    assert len(fused.graph.node) < len(graph.graph.node) // 10
    onnx.checker.check_model(fused, full_check=True)


# -- the TensorRT plugin, against a stand-in of tensorrt.plugin ------------------------
class _Desc:
    def __init__(self, shape, dtype):
        self.shape_expr = tuple(shape)
        self.dtype = dtype


def _fake_tensorrt():
    """The parts of tensorrt / tensorrt.plugin the plugin uses, with int shape expressions."""
    trt = types.ModuleType("tensorrt")
    trt.float32, trt.float16 = "float32", "float16"
    trtp = types.ModuleType("tensorrt.plugin")
    trtp.registry = {}

    def decorator(kind):
        def outer(plugin_id):
            def inner(fn):
                trtp.registry.setdefault(plugin_id, {})[kind] = fn
                return fn
            return inner
        return outer

    for kind in ("register", "autotune", "impl", "aot_impl"):
        setattr(trtp, kind, decorator(kind))

    class KernelLaunchParams:
        def __init__(self):
            self.grid_x = self.grid_y = self.grid_z = self.block_x = self.block_y = self.block_z = 1
            self.shared_mem = 0

    trtp.TensorDesc = _Desc
    trtp.Tensor = object
    trtp.SymExprs = tuple
    trtp.KernelLaunchParams = KernelLaunchParams
    trtp.AutoTuneCombination = lambda *args: args
    trtp.from_shape_expr = lambda shape, dtype: _Desc(shape, dtype)
    trtp.cdiv = lambda a, b: -(-a // b)
    trtp.SymInt32 = int
    trtp.SymIntExprs = types.SimpleNamespace(from_tuple=tuple)
    trt.plugin = trtp
    return trt, trtp


@pytest.fixture
def fake_trt(monkeypatch):
    trt, trtp = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(trt_plugin, "_registered", False)
    return trt, trtp


def test_plugin_registers_shape_types_and_implementations(fake_trt):
    trt, trtp = fake_trt
    assert trt_plugin.register() is True
    assert trt_plugin.register() is False  # once per process
    fns = trtp.registry[trt_plugin.PLUGIN_ID]
    assert set(fns) == {"register", "autotune", "impl", "aot_impl"}
    out = fns["register"](_Desc((2, 3, 40, 50), trt.float16))
    assert out.shape_expr == (2, 49, 40, 50) and out.dtype == trt.float16
    assert fns["autotune"](_Desc((2, 3, 40, 50), trt.float32), ()) == [("FP32|FP16, FP32|FP16", "LINEAR")]


def test_plugin_aot_launch_matches_the_kernel(fake_trt, monkeypatch):
    trt, trtp = fake_trt
    monkeypatch.setattr(trt_plugin, "plugin_ptx", lambda arch="compute_75": ".entry srx_vnsc_f32\n.entry srx_vnsc_f16")
    trt_plugin.register()
    aot = trtp.registry[trt_plugin.PLUGIN_ID]["aot_impl"]
    name, ptx, params, extra = aot(_Desc((2, 3, 40, 50), trt.float16), (_Desc((2, 49, 40, 50), trt.float16),), 0)
    assert name == b"srx_vnsc_f16" and b".entry srx_vnsc_f16" in ptx
    geometry = trt_plugin.launch_geometry(2, 40, 50)
    assert (params.grid_x, params.grid_y, params.grid_z) == geometry["grid"] == (2, 3, 2)
    assert (params.block_x, params.block_y, params.block_z) == launch.VNSC_BLOCK
    assert params.shared_mem == 0 and extra == (2, 40, 50)
    name32, *_ = aot(_Desc((1, 3, 8, 8), trt.float32), (), 0)
    assert name32 == b"srx_vnsc_f32"


@pytest.mark.skipif(compiler.nvcc_path() is None, reason="nvcc is not installed")
def test_plugin_ptx_carries_the_kernels():
    ptx = trt_plugin.plugin_ptx()
    for half in (False, True):
        assert f".entry {trt_plugin.kernel_name(half)}(" in ptx
    # (input, N, H, W, output): TensorRT's AOT argument order
    entry = ptx.split(".entry srx_vnsc_f32(")[1].split(")")[0]
    params = [line.split()[1] for line in entry.strip().splitlines() if line.strip().startswith(".param")]
    assert params == [".u64", ".u32", ".u32", ".u32", ".u64"]


def test_register_without_tensorrt_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    monkeypatch.setattr(trt_plugin, "_registered", False)
    with pytest.raises(trt_plugin.TensorRTUnavailable, match="TensorRT"):
        trt_plugin.register()


def test_plugin_modules_import_without_tensorrt_or_cuda():
    import subprocess

    code = ("import sys, srexport.kernels.trt_plugin, srexport.kernels.cuda, srexport.kernels.onnx_plugin; "
            "assert not {'tensorrt', 'cuda.bindings'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert trt_plugin.PLUGIN_ID == f"{onnx_plugin.PLUGIN_NAMESPACE}::{onnx_plugin.OP_TYPE}"
    assert np.array_equal(trt_plugin.launch_geometry(1, 16, 32)["grid"], (1, 1, 1))
