"""One line means one line: usage errors, option and API values, warnings, memory, pixels."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import srexport
from cli_helpers import run_cli
from reliability_helpers import assert_one_line, write_png
from srexport.errors import ImageError, OptionError, SrExportError


@pytest.fixture(scope="module")
def pcarn_x2(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


@pytest.fixture(scope="module")
def gmgbp(bundle_factory):
    return bundle_factory("gmgbp").root


# -- usage errors -------------------------------------------------------------------------
USAGE = {
    "unknown option": (["run", "{B}", "{IMG}", "-o", "{OUT}", "--frobnicate"], "--frobnicate"),
    "ray workers 0": (["run", "{B}", "{IMG}", "-o", "{OUT}", "--ray-workers", "0"], "--ray-workers"),
    "scale not a number": (["build", "--model", "pcarn-m", "--scale", "four"], "--scale"),
    "seed not a number": (["run", "{B}", "{IMG}", "-o", "{OUT}", "--seed", "x"], "--seed"),
    "noise not a number": (["run", "{B}", "{IMG}", "-o", "{OUT}", "--noise", "lots"], "--noise"),
    "overlap not a number": (["run", "{B}", "{IMG}", "-o", "{OUT}", "--overlap", "1.5"], "--overlap"),
    "patch not a number": (["run", "{B}", "{IMG}", "-o", "{OUT}", "--patch", "big"], "--patch"),
    "missing output": (["run", "{B}", "{IMG}"], "--output"),
    "missing inputs": (["run", "{B}", "-o", "{OUT}"], "INPUTS"),
    "unknown command": (["frobnicate"], "frobnicate"),
    "option without value": (["run", "{B}", "{IMG}", "-o"], "-o"),
    "build without model": (["build"], "--model"),
}


def _argv(template: list[str], bundle, tmp_path) -> list[str]:
    values = {"{B}": str(bundle), "{IMG}": str(write_png(tmp_path / "in.png")), "{OUT}": str(tmp_path / "o.png")}
    return [values.get(a, a) for a in template]


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_errors_are_one_line(case, pcarn_x2, tmp_path, capsys):
    template, fragment = USAGE[case]
    line = assert_one_line(*run_cli(capsys, *_argv(template, pcarn_x2, tmp_path)))
    assert fragment.lower() in line.lower(), line
    assert "╭" not in line and not (tmp_path / "o.png").exists()


def test_help_still_works(capsys):
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--noise" in out


# -- option values ------------------------------------------------------------------------
RUN_VALUES = {
    "patch huge": (["--patch", "99999999999999999999"], "--patch"),
    "patch 0": (["--patch", "0"], "--patch"),
    "patch -1": (["--patch", "-1"], "--patch"),
    "seed very negative": (["--seed", "-99999999999999999999"], "--seed"),
    "seed -1": (["--seed", "-1"], "--seed"),
    "seed 2^64": (["--seed", str(2**64)], "--seed"),
    "noise nan": (["--noise", "nan"], "--noise"),
    "noise inf": (["--noise", "inf"], "--noise"),
    "noise 1e308": (["--noise", "1e308"], "--noise"),
    "noise negative": (["--noise", "-0.5"], "--noise"),
    "batch 0": (["--batch", "0"], "--batch"),
    "batch huge": (["--batch", str(10**12)], "--batch"),
    "overlap -1": (["--overlap", "-1"], "--overlap"),
    "overlap huge": (["--overlap", str(10**15)], "--overlap"),
    "window bogus": (["--window", "blackman"], "window"),
    "backend bogus": (["--backend", "quantum"], "quantum"),
    "precision bogus": (["--precision", "fp8"], "fp8"),
}


@pytest.mark.parametrize("case", list(RUN_VALUES))
def test_run_values_are_checked(case, gmgbp, tmp_path, capsys):
    extra, fragment = RUN_VALUES[case]
    image = write_png(tmp_path / "in.png")
    line = assert_one_line(*run_cli(capsys, "run", gmgbp, image, "-o", tmp_path / "o.png", *extra))
    assert fragment in line, line
    assert not (tmp_path / "o.png").exists()


def test_large_valid_values_still_run(gmgbp, tmp_path, capsys):
    """The bounds are bounds, not a narrowing: a 64-bit seed and W = 1 run."""
    image = write_png(tmp_path / "in.png")
    code, _, err = run_cli(capsys, "run", gmgbp, image, "-o", tmp_path / "o.png", "--seed", str(2**64 - 1),
                           "--noise", "1", "--quiet")
    assert code == 0, err
    assert Image.open(tmp_path / "o.png").size == (56, 48)


@pytest.mark.parametrize("value", ["0", "-1", "99999999999999999999"])
def test_build_patch_is_checked_before_any_work(value, tmp_path, capsys):
    line = assert_one_line(*run_cli(capsys, "build", "--model", "gmgbp", "--patch", value, "--out", tmp_path / "b"))
    assert "--patch" in line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("option, value", [("--calib-patches", "0"), ("--seed", "-3"), ("--max-patch", "0"),
                                           ("--max-batch", "-2"), ("--opt-level", "9")])
def test_other_build_values_are_checked(option, value, tmp_path, capsys):
    line = assert_one_line(*run_cli(capsys, "build", "--model", "gmgbp", option, value, "--out", tmp_path / "b"))
    assert option in line and not (tmp_path / "b").exists()


# -- API values ---------------------------------------------------------------------------
API_CASES = {
    "bundle None": (lambda B: srexport.load(None), "bundle"),
    "bundle int": (lambda B: srexport.load(3), "bundle"),
    "patch string": (lambda B: srexport.load(B, patch="64"), "patch"),
    "patch float": (lambda B: srexport.load(B, patch=64.0), "patch"),
    "patch triple": (lambda B: srexport.load(B, patch=(8, 8, 8)), "patch"),
    "patch zero": (lambda B: srexport.load(B, patch=0), "patch"),
    "patch numpy scalar": (lambda B: srexport.load(B, patch=np.int64(16)), "patch"),
    "batch 2.5": (lambda B: srexport.load(B, batch=2.5), "batch"),
    "batch True": (lambda B: srexport.load(B, batch=True), "batch"),
    "batch 0": (lambda B: srexport.load(B, batch=0), "batch"),
    "noise nan": (lambda B: srexport.load(B, noise=float("nan")), "noise"),
    "noise string": (lambda B: srexport.load(B, noise="0.1"), "noise"),
    "seed float": (lambda B: srexport.load(B, seed=1.5), "seed"),
    "seed negative": (lambda B: srexport.load(B, seed=-1), "seed"),
    "overlap negative": (lambda B: srexport.load(B, overlap=-2), "overlap"),
    "threads -1": (lambda B: srexport.load(B, threads=-1), "threads"),
    "backend None": (lambda B: srexport.load(B, backend=None), "backend"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_values_raise_one_clear_error(case, gmgbp):
    call, name = API_CASES[case]
    with pytest.raises(OptionError) as info:
        call(gmgbp)
    assert str(info.value).startswith(name) and "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)  # what Python callers expect of a bad value


def test_nan_in_a_float_array_is_refused(pcarn_x2):
    up = srexport.load(pcarn_x2, backend="onnxruntime")
    image = np.full((8, 9, 3), 0.5, np.float32)
    image[3, 4, 1] = np.nan
    with pytest.raises(OptionError, match="NaN"):
        up.upscale(image)
    finite = np.full((8, 9, 3), 0.5, np.float32)
    assert np.isfinite(up.upscale(finite)).all()


def test_an_output_too_large_for_memory_is_refused_before_allocating(gmgbp):
    from srexport.validation import BYTES_PER_OUTPUT_PIXEL, available_memory

    up = srexport.load(gmgbp, backend="onnxruntime")
    # A broadcast view: 12000x12000x3 without holding 432 MB; the output would be 48000x48000.
    image = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (12000, 12000, 3))
    need = 48000 * 48000 * BYTES_PER_OUTPUT_PIXEL
    if need <= available_memory():
        pytest.skip(f"this machine has {available_memory() / 2**30:.0f} GiB available: the image would fit")
    with pytest.raises(OptionError) as info:
        up.upscale(image)
    assert "48000x48000" in str(info.value) and f"{need / 2**30:.1f} GiB" in str(info.value)


# -- images: the pixel limit, and no warnings on stderr -----------------------------------
def _png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, followed by one tiny IDAT and IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("width, height", [(100000, 100000), (20000, 6000), (65535, 65535)])
def test_bomb_dimensions_are_one_line_naming_the_limit(width, height, pcarn_x2, tmp_path, capsys):
    image = tmp_path / "bomb.png"
    image.write_bytes(_png_claiming(width, height))
    line = assert_one_line(*run_cli(capsys, "run", pcarn_x2, image, "-o", tmp_path / "o.png"))
    assert f"{width}x{height}" in line and "SREXPORT_MAX_PIXELS" in line


def test_the_pixel_limit_is_adjustable(pcarn_x2, tmp_path, capsys, monkeypatch):
    image = write_png(tmp_path / "in.png", 12, 14)
    monkeypatch.setenv("SREXPORT_MAX_PIXELS", "100")
    line = assert_one_line(*run_cli(capsys, "run", pcarn_x2, image, "-o", tmp_path / "o.png"))
    assert "168 pixels" in line and "limit of 100" in line
    monkeypatch.setenv("SREXPORT_MAX_PIXELS", "168")
    code, _, err = run_cli(capsys, "run", pcarn_x2, image, "-o", tmp_path / "o.png", "--quiet")
    assert code == 0, err
    monkeypatch.setenv("SREXPORT_MAX_PIXELS", "many")
    assert "SREXPORT_MAX_PIXELS" in assert_one_line(*run_cli(capsys, "run", pcarn_x2, image, "-o", tmp_path / "p.png"))


def test_pillow_bomb_warning_never_reaches_stderr(pcarn_x2, tmp_path, capsys, monkeypatch):
    """With Pillow's own limit at 100 pixels a 168-pixel image makes it warn (not raise)."""
    image = write_png(tmp_path / "in.png", 12, 14)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(image).close()
    code, _, err = run_cli(capsys, "run", pcarn_x2, image, "-o", tmp_path / "o.png", "--quiet")
    assert code == 0 and err.strip() == "", err


def test_set_max_pixels_rejects_nonsense():
    from srexport.runtime import imageio

    with pytest.raises(ImageError):
        imageio.set_max_pixels(0)
    assert issubclass(ImageError, SrExportError)


@pytest.mark.parametrize("option, value", [("--repeats", "0"), ("--warmup", "-1"), ("--e2e-repeats", "0"),
                                           ("--threads", "-2"), ("--batch", "0"), ("--patch", "0")])
def test_profile_values_are_checked(option, value, pcarn_x2, tmp_path, capsys):
    line = assert_one_line(*run_cli(capsys, "profile", pcarn_x2, option, value, "--json", tmp_path / "p.json"))
    assert option in line and not (tmp_path / "p.json").exists()


def test_api_upscale_file_never_overwrites_its_input(pcarn_x2, tmp_path):
    src = write_png(tmp_path / "in.png")
    before = src.read_bytes()
    up = srexport.load(pcarn_x2, backend="onnxruntime")
    with pytest.raises(OptionError, match="overwrite the input"):
        up.upscale_file(src, src)
    assert src.read_bytes() == before
