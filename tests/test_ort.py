"""The one ONNX Runtime session factory: the options each caller asks for, and the three
forms a graph comes in."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from srexport.ort import inference_session, session_options


def _neg_graph():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    graph = helper.make_graph([helper.make_node("Neg", ["x"], ["y"])], "neg", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_options_are_what_each_caller_asks_for(tmp_path):
    plain = session_options()
    assert plain.intra_op_num_threads == 0 and plain.log_severity_level == 3
    assert plain.execution_order == ort.ExecutionOrder.DEFAULT and not plain.enable_profiling
    runtime = session_options(4, sequential=True)
    assert (runtime.intra_op_num_threads, runtime.inter_op_num_threads) == (4, 1)
    assert runtime.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert runtime.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert session_options(priority_order=True).execution_order == ort.ExecutionOrder.PRIORITY_BASED
    profiled = session_options(profile_prefix=str(tmp_path / "p"))
    assert profiled.enable_profiling and profiled.profile_file_prefix == str(tmp_path / "p")


def test_a_graph_as_proto_bytes_or_path_runs_the_same(tmp_path):
    model = _neg_graph()
    path = tmp_path / "neg.onnx"
    path.write_bytes(model.SerializeToString())
    x = np.array([1.0, -2.0, 0.5], np.float32)
    for graph in (model, model.SerializeToString(), path, str(path)):
        session = inference_session(graph, threads=1)
        assert session.get_providers() == ["CPUExecutionProvider"]
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], -x)
