"""Fuzzing with hypothesis: images, manifests, bundle file names, checkpoints, CLI values and
API values. Whatever comes in, the outcome is either success or one line with exit 2 (an
`SrExportError` from the API): no traceback, no file outside the bundle read, no input
modified, no partial output. Example counts keep the whole module near two minutes on a
2-core CPU.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import srexport
from cli_helpers import run_cli
from reliability_helpers import copy_bundle, opened_under, recording_opens, tree_snapshot, write_png
from srexport.errors import SrExportError

def fuzz(examples: int) -> settings:
    """Reproducible runs of a fixed size (derandomized: CI sees the same cases each time)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def pcarn_x2(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


def _scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="srx-fuzz-"))


def assert_clean_outcome(code: int, out: str, err: str, output: Path | None = None) -> None:
    """Success (exit 0, a complete output), or exactly one error line and exit 2."""
    assert "Traceback" not in out + err, out + err
    event(f"exit {code}")
    if code == 0:
        if output is not None and output.suffix == ".png":
            with Image.open(output) as img:
                img.load()
        return
    lines = [l for l in err.splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    if output is not None:
        assert not output.exists(), "a failed run left an output"
    if output is not None and output.parent.exists():
        assert not [p for p in output.parent.iterdir() if p.name.endswith(".part")]


# -- images -------------------------------------------------------------------------------
def _encoded(fmt: str, seed: int, mode: str) -> bytes:
    rng = np.random.default_rng(seed)
    shape = (9, 11) if mode == "L" else (9, 11, 4 if mode == "RGBA" else 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def damaged_images(draw) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "WEBP"]))
    mode = draw(st.sampled_from(["RGB", "L"] + (["RGBA"] if fmt in ("PNG", "TIFF", "WEBP") else [])))
    data = bytearray(_encoded(fmt, draw(st.integers(0, 2**16)), mode))
    how = draw(st.sampled_from(["truncate", "flip", "overwrite", "random", "keep"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "flip":
        for index in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[index] ^= draw(st.integers(1, 255))
    elif how == "overwrite":
        start = draw(st.integers(0, len(data) - 1))
        patch = draw(st.binary(min_size=1, max_size=16))
        data[start : start + len(patch)] = patch
    elif how == "random":
        data = bytearray(draw(st.binary(max_size=256)))
    suffix = {"JPEG": ".jpg", "TIFF": ".tif"}.get(fmt, "." + fmt.lower())
    return suffix, bytes(data)


@fuzz(60)
@given(image=damaged_images())
def test_fuzz_images(image, pcarn_x2, capsys):
    suffix, data = image
    root = _scratch()
    src = root / f"in{suffix}"
    src.write_bytes(data)
    out = root / "out" / "o.png"
    code, stdout, stderr = run_cli(capsys, "run", pcarn_x2, src, "-o", out, "--quiet", "--backend", "onnxruntime")
    assert_clean_outcome(code, stdout, stderr, out)
    assert src.read_bytes() == data
    shutil.rmtree(root)


# -- manifests ----------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _paths(node, prefix=()):
    """Every (key path) into a JSON tree."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


@fuzz(150)
@given(data=st.data())
def test_fuzz_manifests(data, pcarn_x2, capsys):
    from srexport.bundle import load_bundle

    root = copy_bundle(pcarn_x2, _scratch() / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    paths = [p for p in _paths(manifest) if p]
    edits = data.draw(st.lists(st.tuples(st.sampled_from(paths), json_values | st.sampled_from(["__delete__"])),
                               min_size=1, max_size=3))
    for path, value in edits:
        node = manifest
        try:
            for key in path[:-1]:
                node = node[key]
            if value == "__delete__":
                del node[path[-1]]
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced a parent
    (root / "manifest.json").write_text(json.dumps(manifest))
    before = tree_snapshot(root)
    outside = root.parent
    with recording_opens() as opened:
        try:
            load_bundle(root)
        except SrExportError as exc:
            assert "\n" not in str(exc)
            event("load_bundle refused")
    assert [p for p in opened_under(opened, outside) if not p.resolve().is_relative_to(root.resolve())] == []
    src = write_png(root.parent / "in.png")
    out = root.parent / "o.png"
    code, stdout, stderr = run_cli(capsys, "run", root, src, "-o", out, "--quiet", "--backend", "onnxruntime")
    assert_clean_outcome(code, stdout, stderr, out)
    assert tree_snapshot(root) == before
    shutil.rmtree(root.parent)


# -- bundle file names --------------------------------------------------------------------
name_parts = st.sampled_from(["..", ".", "", "model.fp32.onnx", "weights.npz", "outside.onnx", "sub", "/", "\\",
                              "\x00", "etc", "passwd", "dev", "zero", "manifest.json", "link"])


@fuzz(150)
@given(parts=st.lists(name_parts, min_size=1, max_size=6), absolute=st.booleans(),
       where=st.sampled_from(["files", "fp32", "both"]), link=st.sampled_from([None, "outside", "inside", "dev"]))
def test_fuzz_bundle_file_names(parts, absolute, where, link, pcarn_x2):
    from srexport.bundle import load_bundle
    from srexport.fsutil import sha256_file

    scratch = _scratch()
    root = copy_bundle(pcarn_x2, scratch / "b")
    secret = scratch / "outside.onnx"
    shutil.copyfile(root / "model.fp32.onnx", secret)
    if link == "outside":
        (root / "link").symlink_to(secret)
    elif link == "inside":
        (root / "link").symlink_to("model.fp32.onnx")
    elif link == "dev":
        (root / "link").symlink_to("/dev/zero")
    name = ("/" if absolute else "") + "/".join(parts)
    manifest = json.loads((root / "manifest.json").read_text())
    if where in ("files", "both"):
        manifest["files"][name] = sha256_file(secret)
    if where in ("fp32", "both"):
        manifest["precisions"]["fp32"]["file"] = name
        manifest["files"].setdefault(name, sha256_file(secret))
    (root / "manifest.json").write_text(json.dumps(manifest))
    with recording_opens() as opened:
        try:
            bundle = load_bundle(root)
        except SrExportError as exc:
            assert "\n" not in str(exc)
            event("refused")
            bundle = None
    assert opened_under(opened, secret) == []
    assert [p for p in opened if str(p).startswith(("/dev/", "/etc/"))] == []
    if bundle is not None:  # accepted: every named file is a regular file inside the bundle
        event("accepted")
        for listed in bundle.manifest.files:
            resolved = (root / listed).resolve()
            assert resolved.is_relative_to(root.resolve()) and resolved.is_file()
    shutil.rmtree(scratch)


# -- checkpoints --------------------------------------------------------------------------
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.bool,
          torch.complex64, torch.uint8]


@st.composite
def checkpoint_objects(draw):
    def tensor():
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        value = torch.zeros(shape, dtype=dtype)
        kind = draw(st.sampled_from(["plain", "nan", "inf", "sparse", "meta"]))
        if kind in ("nan", "inf") and value.is_floating_point() and value.numel():
            value.view(-1)[0] = float(kind)
        elif kind == "sparse" and value.dim() >= 1 and dtype != torch.bool:
            value = value.to_sparse()
        elif kind == "meta":
            value = torch.empty(shape, dtype=dtype, device="meta")
        return value

    keys = st.one_of(st.text(max_size=10), st.integers(-3, 3), st.just("module.x"))
    state = {draw(keys): (tensor() if draw(st.booleans()) else draw(st.sampled_from([1, "s", None, [1.0]])))
             for _ in range(draw(st.integers(0, 4)))}
    wrap = draw(st.sampled_from([None, "state_dict", "model", "params", "list", "tensor"]))
    if wrap == "list":
        return list(state.values())
    if wrap == "tensor":
        return tensor()
    return state if wrap is None else {wrap: state, "epoch": 1}


@fuzz(200)
@given(obj=checkpoint_objects())
def test_fuzz_checkpoints(obj):
    from srexport.models.checkpoint import read_state_dict

    scratch = _scratch()
    path = scratch / "ckpt.pth"
    torch.save(obj, path)
    try:
        state = read_state_dict(path)
    except SrExportError as exc:
        assert "\n" not in str(exc) and "weights_only" not in str(exc)
        event("refused")
    else:
        event("accepted")
        assert state and all(isinstance(k, str) for k in state)
        for value in state.values():
            assert value.layout == torch.strided and not value.is_meta and value.is_floating_point()
            assert bool(torch.isfinite(value).all())
    shutil.rmtree(scratch)


# -- CLI values ---------------------------------------------------------------------------
numberish = st.one_of(
    st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e308", "0x10", "", " ", "4x4", "8x", "x8", "1_0", "٣"]),
    st.text(max_size=6),
)


@fuzz(100)
@given(option=st.sampled_from(["--patch", "--overlap", "--batch", "--seed", "--noise", "--window", "--backend",
                               "--precision"]), value=numberish)
def test_fuzz_cli_values(option, value, pcarn_x2, capsys):
    scratch = _scratch()
    src = write_png(scratch / "in.png", 6, 7)
    before = src.read_bytes()
    out = scratch / "o.png"
    code, stdout, stderr = run_cli(capsys, "run", pcarn_x2, src, "-o", out, "--quiet", option, value)
    assert_clean_outcome(code, stdout, stderr, out)
    assert src.read_bytes() == before
    shutil.rmtree(scratch)


# -- API values ---------------------------------------------------------------------------
anything = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.tuples(st.integers(-5, 100), st.integers(-5, 100)),
    st.lists(st.integers(0, 50), max_size=3), st.just(object()),
)


@fuzz(100)
@given(name=st.sampled_from(["patch", "overlap", "window", "batch", "noise", "seed", "threads", "backend",
                             "precision"]), value=anything)
def test_fuzz_api_values(name, value, pcarn_x2):
    try:
        up = srexport.load(pcarn_x2, **{name: value})
    except SrExportError as exc:
        assert "\n" not in str(exc)
        event("refused")
        return
    event("accepted")
    out = up.upscale(np.zeros((5, 6, 3), np.uint8))
    assert out.shape == (10, 12, 3)


@fuzz(60)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4),
       dtype=st.sampled_from(["uint8", "uint16", "float32", "float64", "int32", "bool"]),
       fill=st.sampled_from([0.0, 0.5, 1.0, math.nan, math.inf, -1.0, 300.0]))
def test_fuzz_api_arrays(shape, dtype, fill, pcarn_x2):
    up = srexport.load(pcarn_x2, backend="onnxruntime")
    with np.errstate(invalid="ignore", over="ignore"):
        array = np.full(shape, fill).astype(dtype)
    try:
        out = up.upscale(array)
    except SrExportError as exc:
        assert "\n" not in str(exc)
        event("refused")
        return
    event("accepted")
    assert out.shape[:2] == (2 * array.shape[0], 2 * array.shape[1]) and out.dtype == array.dtype
    if out.dtype.kind == "f":
        assert np.isfinite(out).all()
