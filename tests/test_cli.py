"""The user contract of `sr-export`: round trip and one-line errors (exit code 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_one_error_line, run_cli
from conftest import shared_file


@pytest.fixture(scope="module")
def pcarn_bundle(tmp_path_factory):
    weights = shared_file("weights", "pcarn", "PCARN-M-L1.pth")
    out = tmp_path_factory.mktemp("b") / "pcarn-x2"
    from srexport.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["build", "--model", "pcarn-m", "--scale", "2", "--weights", str(weights), "--out", str(out)])
    assert exc.value.code == 0
    return out


@pytest.fixture()
def small_png(tmp_path):
    path = tmp_path / "in" / "small.png"
    path.parent.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)).save(path)
    return path


def test_models_json_lists_every_family_with_parameter_counts(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = json.loads(out)
    by_key = {(r["name"], r["variant"], r["scale"]): r for r in rows}
    assert {r["name"] for r in rows} >= {"gmgbp", "pcarn-m", "pcarn", "mgbpv2", "bpp", "discriminator"}
    assert by_key[("gmgbp", "pirm2018", 4)]["params"] == 281_084
    assert by_key[("pcarn-m", "m", 2)]["params"] == 257_051
    assert by_key[("pcarn-m", "m", 3)]["params"] == 303_451
    assert by_key[("pcarn-m", "m", 4)]["params"] == 294_171
    assert by_key[("mgbpv2", "aim2019-16x", 16)]["params"] == 28_170_450
    # MGBP NTIRE 2018: the authors' parameters() on their four checkpoints
    assert [by_key[("mgbp", f"ntire2018-track{t}", 8 if t == 1 else 4)]["params"] for t in (1, 2, 3, 4)] == [
        131_235, 247_427, 228_931, 247_427]
    assert all({"name", "variant", "scale", "params"} <= r.keys() for r in rows)


def test_build_run_verify_round_trip(pcarn_bundle, small_png, tmp_path, capsys):
    manifest = json.loads((pcarn_bundle / "manifest.json").read_text())
    assert manifest["model"] == "pcarn-m" and manifest["scale"] == 2
    assert manifest["checkpoint"]["file"] == "PCARN-M-L1.pth" and len(manifest["checkpoint"]["sha256"]) == 64
    assert set(manifest["files"]) == {"model.fp32.onnx", "weights.npz"}
    assert manifest["precisions"]["fp32"]["max_abs_error_vs_torch"] <= 1e-4

    out_png = tmp_path / "out.png"
    code, _, err = run_cli(capsys, "run", pcarn_bundle, small_png, "-o", out_png, "--quiet")
    assert code == 0, err
    got = np.asarray(Image.open(out_png))
    assert got.shape == (40, 56, 3) and got.dtype == np.uint8

    # The same image through the PyTorch model directly: round(clamp(y) * 255).
    import torch

    from srexport.export.model_bundle import model_from_bundle
    from srexport.bundle import load_bundle

    model = model_from_bundle(load_bundle(pcarn_bundle))
    x = torch.from_numpy(np.asarray(Image.open(small_png), np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = np.rint(np.clip(model(x)[0].permute(1, 2, 0).numpy(), 0, 1) * 255)
    assert np.abs(got.astype(int) - ref).max() <= 1

    code, out, err = run_cli(capsys, "verify", pcarn_bundle)
    assert code == 0, err
    assert "fp32" in out and "ok" in out


def test_run_folder_continues_past_a_corrupt_image(pcarn_bundle, small_png, tmp_path, capsys):
    (small_png.parent / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    out_dir = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", pcarn_bundle, small_png.parent, "-o", out_dir, "--quiet")
    assert code == 2
    assert "broken.png" in err and "Traceback" not in err
    assert (out_dir / "small.png").is_file()
    assert not (out_dir / "broken.png").exists()
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]


def test_unknown_model(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", "nope", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "unknown model 'nope'")
    assert not (tmp_path / "b").exists()


def test_unknown_variant_and_scale(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", "gmgbp", "--variant", "x9", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "no variant 'x9'")
    code, _, err = run_cli(capsys, "build", "--model", "pcarn-m", "--scale", "5", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "no scale x5")


def test_missing_weights_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", "gmgbp", "--weights", tmp_path / "no.pth", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "checkpoint not found")
    assert not (tmp_path / "b").exists()


def test_mismatched_weights_name_the_first_mismatch(capsys, tmp_path):
    weights = shared_file("weights", "pcarn", "PCARN-M.pth")
    code, _, err = run_cli(capsys, "build", "--model", "gmgbp", "--weights", weights, "--out", tmp_path / "b")
    assert_one_error_line(code, err, "does not fit", "key")
    assert not (tmp_path / "b").exists()


def test_garbage_checkpoint(capsys, tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"definitely not a checkpoint")
    code, _, err = run_cli(capsys, "build", "--model", "pcarn-m", "--weights", bad, "--out", tmp_path / "b")
    assert_one_error_line(code, err, "cannot read checkpoint")


def test_unreadable_single_image(pcarn_bundle, capsys, tmp_path):
    code, _, err = run_cli(capsys, "run", pcarn_bundle, tmp_path / "missing.png", "-o", tmp_path / "o.png", "-q")
    assert_one_error_line(code, err, "missing.png")
    assert not (tmp_path / "o.png").exists()


def test_unwritable_output(pcarn_bundle, small_png, capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    code, _, err = run_cli(capsys, "run", pcarn_bundle, small_png, "-o", blocker / "out.png", "-q")
    assert_one_error_line(code, err, "cannot write")


@pytest.mark.parametrize("damage", ["missing-bundle", "no-manifest", "truncated", "tampered", "newer-format"])
def test_damaged_bundle_is_refused(pcarn_bundle, small_png, damage, capsys, tmp_path):
    bundle = tmp_path / "bundle"
    if damage != "missing-bundle":
        shutil.copytree(pcarn_bundle, bundle)
    if damage == "no-manifest":
        (bundle / "manifest.json").unlink()
    elif damage == "truncated":
        graph = bundle / "model.fp32.onnx"
        graph.write_bytes(graph.read_bytes()[:1000])
    elif damage == "tampered":
        weights = bundle / "weights.npz"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "newer-format":
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["format_version"] = 99
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    for command in (("run", bundle, small_png, "-o", tmp_path / "o.png", "-q"), ("verify", bundle)):
        code, _, err = run_cli(capsys, *command)
        assert_one_error_line(code, err, str(bundle) if damage != "newer-format" else "newer")
    assert not (tmp_path / "o.png").exists()


def test_reduced_precision_flags_validate_their_input(capsys, tmp_path):
    code, _, err = run_cli(capsys, "build", "--model", "pcarn-m", "--int8", "--out", tmp_path / "b")
    assert_one_error_line(code, err, "--calib-dir")


def test_model_without_weights_warns_loudly(capsys, tmp_path):
    code, out, err = run_cli(capsys, "build", "--model", "pcarn-m", "--scale", "2", "--weights", "init",
                             "--out", tmp_path / "b")
    assert code == 0, err
    assert "MEANINGLESS" in err
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["checkpoint"] is None


@pytest.mark.parametrize(
    "options,fragment",
    [
        (("--window", "gaussian"), "unknown window"),
        (("--patch", "12xab"), "--patch"),
        (("--patch", "64", "--overlap", "64"), "overlap"),
        (("--patch", "3"), "patch 3x3 is too small for blended tiles overlapping by the bundle's"),
        (("--backend", "magic"), "unknown backend"),
        (("--precision", "int8"), "no int8 graph"),
        (("--batch", "0"), "batch"),
        (("--precision", "bf16", "--backend", "onnxruntime"), "bf16 runs on the openvino backend only"),
    ],
)
def test_bad_run_options(pcarn_bundle, small_png, tmp_path, capsys, options, fragment):
    code, _, err = run_cli(capsys, "run", pcarn_bundle, small_png, "-o", tmp_path / "o.png", "-q", *options)
    assert_one_error_line(code, err, fragment)
    assert not (tmp_path / "o.png").exists()


def test_torch_backend_runs_the_same_tiling(pcarn_bundle, small_png, tmp_path, capsys):
    outputs = {}
    for backend in ("onnxruntime", "torch"):
        dst = tmp_path / f"{backend}.png"
        code, _, err = run_cli(capsys, "run", pcarn_bundle, small_png, "-o", dst, "-q", "--backend", backend,
                               "--patch", "12", "--overlap", "4")
        assert code == 0, err
        outputs[backend] = np.asarray(Image.open(dst)).astype(int)
    assert np.abs(outputs["onnxruntime"] - outputs["torch"]).max() <= 1
