"""The generic ONNX passes, on hand-made graphs whose expected result is written out here."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from srexport.onnx_passes import place_after_producers, remove_dead_nodes, topological_sort
from srexport.ort import inference_session


def _graph(nodes, initializers=()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_remove_dead_nodes_keeps_only_what_the_output_needs():
    two = numpy_helper.from_array(np.array([2, 2], np.float32), "two")
    unused = numpy_helper.from_array(np.array([5, 5], np.float32), "unused")
    model = _graph([
        helper.make_node("Mul", ["x", "two"], ["a"], name="mul"),
        helper.make_node("Add", ["x", "unused"], ["dead"], name="dead_add"),  # read by nothing
        helper.make_node("Relu", ["dead"], ["dead2"], name="dead_relu"),
        helper.make_node("Neg", ["a"], ["y"], name="neg"),
    ], [two, unused])
    remove_dead_nodes(model)
    assert [n.name for n in model.graph.node] == ["mul", "neg"]
    assert [i.name for i in model.graph.initializer] == ["two"]
    out = inference_session(model).run(None, {"x": np.array([1, -3], np.float32)})[0]
    np.testing.assert_array_equal(out, [-2, 6])


def test_topological_sort_orders_producers_first_and_is_stable():
    model = _graph([
        helper.make_node("Neg", ["b"], ["y"], name="last"),
        helper.make_node("Relu", ["x"], ["a"], name="first"),
        helper.make_node("Abs", ["a"], ["b"], name="second"),
    ])
    topological_sort(model)
    assert [n.name for n in model.graph.node] == ["first", "second", "last"]
    already = [n.name for n in model.graph.node]
    topological_sort(model)
    assert [n.name for n in model.graph.node] == already


def test_topological_sort_refuses_an_undefined_input():
    model = _graph([helper.make_node("Neg", ["nowhere"], ["y"], name="n")])
    with pytest.raises(ValueError, match="nowhere"):
        topological_sort(model)


def test_place_after_producers_inserts_right_after_the_producer_or_at_the_start():
    model = _graph([
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Neg", ["a"], ["y"], name="neg"),
    ])
    place_after_producers(model.graph, {
        "a": [helper.make_node("Identity", ["a"], ["a_probe"], name="after_relu")],
        "x": [helper.make_node("Identity", ["x"], ["x_probe"], name="after_input")],
    })
    assert [n.name for n in model.graph.node] == ["after_input", "relu", "after_relu", "neg"]
