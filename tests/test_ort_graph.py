"""ONNX Runtime CPU sessions run CRD pixel shuffles as one-hot grouped ConvTransposes: the
same bits as DepthToSpace (checked against a NumPy pixel shuffle), DCR shuffles untouched."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from srexport.ort import inference_session
from srexport.runtime.backends.ort_graph import cpu_session_graph, shuffles_as_conv_transpose


def numpy_crd_shuffle(x: np.ndarray, r: int) -> np.ndarray:
    """torch.nn.PixelShuffle / ONNX DepthToSpace CRD: y[c, h*r+i, w*r+j] = x[c*r*r + i*r + j, h, w]."""
    n, c, h, w = x.shape
    y = np.empty((n, c // (r * r), h * r, w * r), x.dtype)
    for i in range(r):
        for j in range(r):
            y[:, :, i::r, j::r] = x[:, i * r + j::r * r]
    return y


def shuffle_graph(channels: int, block: int, mode: str = "CRD", known_channels: bool = True) -> onnx.ModelProto:
    """DepthToSpace of an input of `channels` channels (declared, or a symbolic dimension)."""
    dims = [1, channels if known_channels else "c", "h", "w"]
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    node = helper.make_node("DepthToSpace", ["features"], ["out"], blocksize=block, mode=mode, name="shuffle")
    return helper.make_model(helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("channels,block,h,w", [(12, 2, 7, 9), (27, 3, 5, 4), (64, 4, 3, 6), (256, 2, 11, 16)])
def test_the_conv_transpose_computes_the_crd_shuffle_bit_for_bit(channels, block, h, w):
    model = shuffle_graph(channels, block)
    rewritten, replaced = shuffles_as_conv_transpose(model)
    assert replaced == 1 and [n.op_type for n in rewritten.graph.node] == ["ConvTranspose"]
    assert [n.op_type for n in model.graph.node] == ["DepthToSpace"]  # the input is left as it was
    features = np.random.default_rng(h * w).standard_normal((1, channels, h, w)).astype(np.float32)
    want = numpy_crd_shuffle(features, block)
    got = inference_session(rewritten).run(None, {"features": features})[0]
    original = inference_session(model).run(None, {"features": features})[0]
    assert np.array_equal(original, want) and np.array_equal(got, want)


def test_dcr_shuffles_and_unknown_channel_counts_are_left_alone():
    for model in (shuffle_graph(12, 2, mode="DCR"), shuffle_graph(12, 2, known_channels=False)):
        rewritten, replaced = shuffles_as_conv_transpose(model)
        assert replaced == 0 and [n.op_type for n in rewritten.graph.node] == [n.op_type for n in model.graph.node]


def test_only_the_fp32_graph_of_a_cpu_session_is_rewritten(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(shuffle_graph(12, 2), str(path))
    graph, replaced = cpu_session_graph(path, "fp32")
    assert replaced == 1 and isinstance(graph, bytes)
    assert [n.op_type for n in onnx.load_from_string(graph).graph.node] == ["ConvTranspose"]
    assert cpu_session_graph(path, "int8") == (path, 0) and cpu_session_graph(path, "fp16") == (path, 0)
    plain = tmp_path / "plain.onnx"
    onnx.save(shuffle_graph(12, 2, mode="DCR"), str(plain))
    assert cpu_session_graph(plain, "fp32") == (plain, 0)


def test_a_pcarn_session_runs_its_shuffles_rewritten_with_the_same_output(bundle_factory):
    from srexport.runtime.backends.onnxruntime import OrtSession

    bundle = bundle_factory("pcarn-m", scale=4)
    session = OrtSession(bundle, "fp32", threads=1)
    assert session.shuffles_rewritten == 2  # the two pixel shuffles of the x4 upsampler
    feed = {"image": np.random.default_rng(7).random((1, 3, 20, 28), dtype=np.float32)}
    untouched = inference_session(bundle.graph_path("fp32"), threads=1).run(None, feed)[0]
    assert np.array_equal(session.run(feed), untouched)
