"""`sr-export build --plugins`: the discriminator's VN+SC layers become plugin nodes."""

import json

import onnx
import pytest

from cli_helpers import assert_one_error_line, run_cli


@pytest.mark.slow
def test_discriminator_plugin_graph_beside_the_standard_one(capsys, tmp_path):
    out = tmp_path / "disc"
    code, stdout, err = run_cli(capsys, "build", "--model", "discriminator", "--plugins", "--out", out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["plugin_graph"] == {"file": "model.fp32.plugins.onnx", "plugins": {"srexport::VNSC": 4}}
    assert "model.fp32.plugins.onnx" in manifest["files"]
    fused = onnx.load(str(out / "model.fp32.plugins.onnx"))
    assert sum(n.op_type == "VNSC" and n.domain == "srexport" for n in fused.graph.node) == 4
    standard = onnx.load(str(out / "model.fp32.onnx"))
    assert not any(n.domain == "srexport" for n in standard.graph.node)


def test_plugins_refused_for_a_model_without_plugin_layers(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", "pcarn-m", "--scale", "2", "--plugins", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "--plugins")
    assert not (tmp_path / "b").exists()
