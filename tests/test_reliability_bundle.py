"""Damaged, inconsistent and hostile bundles: one line, exit 2, nothing read outside."""

from __future__ import annotations

import io
import os
import shutil

import numpy as np
import pytest

from cli_helpers import run_cli
from reliability_helpers import (
    assert_one_line,
    copy_bundle,
    edit_manifest,
    opened_under,
    recording_opens,
    rehash,
    sha256,
    write_png,
)


@pytest.fixture(scope="module")
def pcarn_x2(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


@pytest.fixture(scope="module")
def pcarn_x4(bundle_factory):
    return bundle_factory("pcarn-m", None, 4).root


@pytest.fixture(scope="module")
def gmgbp(bundle_factory):
    return bundle_factory("gmgbp").root


def _set(path: str | tuple, value):
    """An edit that sets manifest[a][b]... = value (path 'a.b', or a tuple of keys; digits
    index lists)."""
    keys = [int(k) if isinstance(k, str) and k.isdigit() else k
            for k in (path.split(".") if isinstance(path, str) else path)]

    def edit(data):
        *parents, last = keys
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def _delete(key: str):
    def edit(data):
        del data[key]
    return edit


MANIFEST_CASES = {
    # whole-manifest replacements: (edit, fragment the one line must contain)
    "array": (lambda d: [], "JSON object"),
    "null": (lambda d: "__null__", "JSON object"),
    "number": (lambda d: 3, "JSON object"),
    "string": (lambda d: "x", "JSON object"),
    "format_version 0": (_set("format_version", 0), "format_version"),
    "format_version -1": (_set("format_version", -1), "format_version"),
    "format_version true": (_set("format_version", True), "format_version"),
    "format_version 2": (_set("format_version", 2), "newer"),
    "no format_version": (_delete("format_version"), "format_version"),
    "patch string": (_set("patch", "192"), "'patch'"),
    "patch null": (_set("patch", None), "'patch'"),
    "patch list": (_set("patch", [192]), "'patch'"),
    "patch 0": (_set("patch", 0), "'patch'"),
    "overlap string": (_set("overlap", "8"), "'overlap'"),
    "overlap >= patch": (_set("overlap", 100000), "'overlap'"),
    "multiple_of 0": (_set("shape_rules.multiple_of", 0), "shape_rules.multiple_of"),
    "multiple_of 1.5": (_set("shape_rules.multiple_of", 1.5), "shape_rules.multiple_of"),
    "multiple_of 3": (_set("shape_rules.multiple_of", 3), "shape_rules.multiple_of"),
    "output_scale 0": (_set("shape_rules.output_scale", 0), "shape_rules.output_scale"),
    "output_scale 4": (_set("shape_rules.output_scale", 4), "shape_rules.output_scale"),
    "output_scale 8": (_set("shape_rules.output_scale", 8), "shape_rules.output_scale"),
    "output_scale -4": (_set("shape_rules.output_scale", -4), "shape_rules.output_scale"),
    "shape_rules null": (_set("shape_rules", None), "shape_rules"),
    "precisions null": (_set("precisions", None), "precisions"),
    "precisions []": (_set("precisions", []), "precisions"),
    "precisions x": (_set("precisions", "x"), "precisions"),
    "precisions {}": (_set("precisions", {}), "precisions"),
    "precision int9": (_set("precisions.int9", {"file": "model.fp32.onnx"}), "int9"),
    "files null": (_set("files", None), "files"),
    "files []": (_set("files", []), "files"),
    "files x": (_set("files", "x"), "files"),
    "input_kind upscaled": (_set("input_kind", "upscaled"), "output_scale"),
    "input_kind bogus": (_set("input_kind", "bogus"), "input_kind"),
    "scale 3": (_set("scale", 3), "output_scale"),
    "unknown variant": (_set("variant", "zz"), "variant"),
    "unknown field": (_set("frobnicate", 1), "frobnicate"),
    "missing model": (_delete("model"), "'model'"),
    "inputs extra": (_set("inputs", ["image", "noise0"]), "inputs"),
    "value_range": (_set("value_range", [1, 0]), "value_range"),
}


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_damaged_manifest_is_one_line(case, pcarn_x2, tmp_path, capsys):
    edit, fragment = MANIFEST_CASES[case]
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    edit_manifest(root, edit)
    text = (root / "manifest.json").read_text()
    if text == '"__null__"':
        (root / "manifest.json").write_text("null")
    for command in (["verify", root], ["run", root, write_png(tmp_path / "in.png"), "-o", tmp_path / "o.png"]):
        line = assert_one_line(*run_cli(capsys, *command))
        assert fragment in line, line
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("text", ["[" * 100000, "{" * 5000, "", "{\"format_version\": NaN}", "\xff\xfe"])
def test_unparsable_manifest_is_one_line(text, pcarn_x2, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    (root / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape") if text != "\xff\xfe"
                                         else b"\xff\xfe\x00")
    assert_one_line(*run_cli(capsys, "verify", root))


@pytest.mark.parametrize("edit, fragment", [
    (_set("noise_inputs", []), "inputs"),
    (_set("noise_inputs.0.border", -1), "border"),
    (_set("noise_inputs.0.border", 3), "noise_inputs"),
    (_set("noise_inputs.1.factor", 4), "noise_inputs"),
    (_set("noise_inputs.0", None), "noise_inputs[0]"),
])
def test_gmgbp_noise_inputs_are_checked(edit, fragment, gmgbp, tmp_path, capsys):
    root = copy_bundle(gmgbp, tmp_path / "b")
    edit_manifest(root, edit)
    line = assert_one_line(*run_cli(capsys, "run", root, write_png(tmp_path / "in.png"), "-o", tmp_path / "o.png"))
    assert fragment in line


# -- graphs and weights that do not match the manifest ------------------------------------
def _swap_graph(root, graph_src):
    shutil.copyfile(graph_src, root / "model.fp32.onnx")
    rehash(root, ["model.fp32.onnx"])


def test_x4_graph_in_x2_bundle_is_refused_by_run_and_verify(pcarn_x2, pcarn_x4, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    _swap_graph(root, pcarn_x4 / "model.fp32.onnx")
    image = write_png(tmp_path / "in.png", 20, 20)
    line = assert_one_line(*run_cli(capsys, "run", root, image, "-o", tmp_path / "o.png"))
    assert "output_scale 2" in line and "(1, 3, 64, 64)" in line  # 16x16 probe, x4 graph
    assert not (tmp_path / "o.png").exists()
    line = assert_one_line(*run_cli(capsys, "verify", root))
    assert "output_scale 2" in line


def test_gmgbp_graph_in_pcarn_bundle_is_refused(pcarn_x4, gmgbp, tmp_path, capsys):
    root = copy_bundle(pcarn_x4, tmp_path / "b")
    _swap_graph(root, gmgbp / "model.fp32.onnx")
    line = assert_one_line(*run_cli(capsys, "run", root, write_png(tmp_path / "in.png"), "-o", tmp_path / "o.png"))
    assert "noise0" in line and "inputs" in line
    assert_one_line(*run_cli(capsys, "verify", root))


def test_pcarn_graph_in_gmgbp_bundle_is_refused(pcarn_x4, gmgbp, tmp_path, capsys):
    root = copy_bundle(gmgbp, tmp_path / "b")
    _swap_graph(root, pcarn_x4 / "model.fp32.onnx")
    line = assert_one_line(*run_cli(capsys, "run", root, write_png(tmp_path / "in.png"), "-o", tmp_path / "o.png"))
    assert "inputs" in line


def test_garbage_graph_is_refused(pcarn_x2, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    (root / "model.fp32.onnx").write_bytes(os.urandom(4096))
    rehash(root, ["model.fp32.onnx"])
    assert_one_line(*run_cli(capsys, "run", root, write_png(tmp_path / "in.png"), "-o", tmp_path / "o.png"))
    assert_one_line(*run_cli(capsys, "verify", root))


def _pickled_npz() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, w=np.array([{"a": 1}], dtype=object))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["garbage", "foreign", "pickled", "single array", "nan", "empty zip"])
def test_bad_weights_npz_is_refused_by_verify(kind, pcarn_x2, gmgbp, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    target = root / "weights.npz"
    if kind == "garbage":
        target.write_bytes(os.urandom(2048))
    elif kind == "foreign":
        shutil.copyfile(gmgbp / "weights.npz", target)
    elif kind == "pickled":
        target.write_bytes(_pickled_npz())
    elif kind == "single array":
        np.save(open(target, "wb"), np.zeros(3, np.float32))
    elif kind == "nan":
        with np.load(pcarn_x2 / "weights.npz") as data:
            arrays = {k: data[k] for k in data.files}
        first = sorted(arrays)[0]
        arrays[first] = np.full_like(arrays[first], np.nan)
        np.savez(open(target, "wb"), **arrays)
    else:
        import zipfile

        zipfile.ZipFile(target, "w").close()
    rehash(root, ["weights.npz"])
    line = assert_one_line(*run_cli(capsys, "verify", root))
    assert "weights.npz" in line


# -- containment: every file the manifest names stays inside the bundle --------------------
@pytest.fixture()
def outside(pcarn_x4, tmp_path):
    """A valid graph outside the bundle (the x4 one, so it would even run)."""
    folder = tmp_path / "outside"
    folder.mkdir()
    shutil.copyfile(pcarn_x4 / "model.fp32.onnx", folder / "model.fp32.onnx")
    return folder


def _point_fp32_at(name: str, digest: str):
    def edit(data):
        data["precisions"]["fp32"]["file"] = name
        data["files"][name] = digest
    return edit


@pytest.mark.parametrize("how", ["dotdot", "absolute", "dot segment", "backslash"])
def test_graph_outside_the_bundle_is_refused_before_it_is_opened(how, pcarn_x4, outside, tmp_path, capsys):
    root = copy_bundle(pcarn_x4, tmp_path / "deep" / "er" / "b")
    graph = outside / "model.fp32.onnx"
    name = {"dotdot": os.path.relpath(graph, root), "absolute": str(graph),
            "dot segment": "./model.fp32.onnx", "backslash": "..\\..\\outside\\model.fp32.onnx"}[how]
    edit_manifest(root, _point_fp32_at(name, sha256(graph)))
    with recording_opens() as opened:
        code, out, err = run_cli(capsys, "run", root, write_png(tmp_path / "in.png"), "-o", tmp_path / "o.png")
    line = assert_one_line(code, out, err)
    assert "inside the bundle" in line
    assert opened_under(opened, outside) == []
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("name", ["../../../../../etc/passwd", "/etc/passwd", "/dev/zero", "sub/../../x"])
def test_hostile_file_names_are_not_opened(name, pcarn_x2, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    edit_manifest(root, _set(("files", name), "0" * 64))
    with recording_opens() as opened:
        line = assert_one_line(*run_cli(capsys, "verify", root))
    assert "inside the bundle" in line
    assert opened_under(opened, tmp_path / "x") == []
    assert [p for p in opened if str(p) in ("/etc/passwd", "/dev/zero")] == []


@pytest.mark.parametrize("target", ["outside graph", "/dev/zero", "folder", "loop"])
def test_symlink_leaving_the_bundle_is_refused(target, pcarn_x2, outside, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    link = root / "model.fp32.onnx"
    link.unlink()
    if target == "outside graph":
        link.symlink_to(outside / "model.fp32.onnx")
        rehash(root, ["model.fp32.onnx"])
    elif target == "/dev/zero":
        link.symlink_to("/dev/zero")
    elif target == "folder":
        link.mkdir()
    else:
        link.symlink_to(link)
    with recording_opens() as opened:
        assert_one_line(*run_cli(capsys, "verify", root))
    assert opened_under(opened, outside) == []
    assert [p for p in opened if str(p) == "/dev/zero" or p.name == "model.fp32.onnx"] == []


def test_manifest_symlink_leaving_the_bundle_is_refused(pcarn_x2, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    real = tmp_path / "elsewhere.json"
    shutil.move(root / "manifest.json", real)
    (root / "manifest.json").symlink_to(real)
    with recording_opens() as opened:
        line = assert_one_line(*run_cli(capsys, "verify", root))
    assert "leaves the bundle" in line and opened_under(opened, real.parent / "elsewhere.json") == []


def test_symlink_inside_the_bundle_is_accepted(pcarn_x2, tmp_path):
    """Containment is about where a file resolves, not about links as such."""
    from srexport.bundle import load_bundle

    root = copy_bundle(pcarn_x2, tmp_path / "b")
    (root / "graphs").mkdir()
    shutil.move(root / "model.fp32.onnx", root / "graphs" / "model.fp32.onnx")
    (root / "model.fp32.onnx").symlink_to("graphs/model.fp32.onnx")
    assert load_bundle(root).graph_path("fp32") == root / "model.fp32.onnx"


def test_pickle_in_weights_is_never_executed(pcarn_x2, tmp_path, capsys):
    root = copy_bundle(pcarn_x2, tmp_path / "b")
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    buffer = io.BytesIO()
    np.savez(buffer, w=np.array([Payload()], dtype=object))
    (root / "weights.npz").write_bytes(buffer.getvalue())
    rehash(root, ["weights.npz"])
    assert_one_line(*run_cli(capsys, "verify", root))
    assert not marker.exists()
