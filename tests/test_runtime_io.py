"""Image files and arrays in and out of the runtime (issue: runtime, point 4)."""

from __future__ import annotations

import numpy as np
import png
import pytest
import torch
from PIL import Image

from srexport.errors import ImageError
from srexport.export.build import export_bundle
from srexport.runtime.imageio import read_image
from srexport.runtime.resize import bicubic
from srexport.runtime.upscaler import load
from toymodels import PixelModel


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    torch.manual_seed(1)
    model = PixelModel()
    root = tmp_path_factory.mktemp("io") / "bundle"
    export_bundle(model, root, {"model": "pixel", "variant": "t", "scale": 2, "task": "sr"})
    return model, load(root, patch=16, overlap=4)


def _model_rgb(model, rgb: np.ndarray) -> np.ndarray:
    """Reference: the PyTorch model on the whole HxWx3 float image."""
    with torch.no_grad():
        return model(torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None])[0].numpy().transpose(1, 2, 0)


def _rgb8(h=13, w=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".bmp", ".webp"])
def test_every_input_format_gives_the_model_output(pixel, tmp_path, suffix):
    model, up = pixel
    src = tmp_path / f"in{suffix}"
    Image.fromarray(_rgb8()).save(src, quality=95) if suffix in (".jpg", ".webp") else Image.fromarray(_rgb8()).save(src)
    decoded = np.asarray(Image.open(src).convert("RGB"), np.float32) / 255
    up.upscale_file(src, tmp_path / "out.png")
    got = np.asarray(Image.open(tmp_path / "out.png"))
    expected = np.rint(np.clip(_model_rgb(model, decoded), 0, 1) * 255)
    assert got.shape == (26, 34, 3) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).max() <= 1


def test_16bit_rgb_png_keeps_16_bits(pixel, tmp_path):
    model, up = pixel
    data = np.random.default_rng(2).integers(0, 65536, (11, 9, 3), dtype=np.uint16)
    png.from_array(data.reshape(11, -1), "RGB;16").save(str(tmp_path / "in.png"))
    up.upscale_file(tmp_path / "in.png", tmp_path / "out.png")
    w, h, rows, info = png.Reader(filename=str(tmp_path / "out.png")).asDirect()
    assert info["bitdepth"] == 16 and info["planes"] == 3 and (w, h) == (18, 22)
    got = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, 3)
    expected = np.rint(np.clip(_model_rgb(model, data.astype(np.float32) / 65535), 0, 1) * 65535)
    assert np.abs(got.astype(np.int64) - expected).max() <= 2  # float32 rounding at 16 bits


def test_grayscale_stays_grayscale(pixel, tmp_path):
    model, up = pixel
    gray = _rgb8()[..., 0]
    Image.fromarray(gray).save(tmp_path / "g.png")
    up.upscale_file(tmp_path / "g.png", tmp_path / "out.png")
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "L" and out.size == (34, 26)
    rgb = np.repeat(gray[..., None].astype(np.float32) / 255, 3, axis=2)
    luma = _model_rgb(model, rgb) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert np.abs(np.asarray(out).astype(int) - np.rint(np.clip(luma, 0, 1) * 255)).max() <= 1


def test_alpha_is_upscaled_bicubic_and_reattached(pixel, tmp_path):
    model, up = pixel
    rgba = np.concatenate([_rgb8(), np.random.default_rng(3).integers(0, 256, (13, 17, 1), dtype=np.uint8)], 2)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    up.upscale_file(tmp_path / "a.png", tmp_path / "out.png")
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert out.shape == (26, 34, 4)
    alpha = bicubic(rgba[None, ..., 3].astype(np.float32) / 255, 26, 34)[0]
    assert np.abs(out[..., 3].astype(int) - np.rint(np.clip(alpha, 0, 1) * 255)).max() <= 1
    color = _model_rgb(model, rgba[..., :3].astype(np.float32) / 255)
    assert np.abs(out[..., :3].astype(int) - np.rint(np.clip(color, 0, 1) * 255)).max() <= 1


def test_exif_orientation_is_honoured(pixel, tmp_path):
    _, up = pixel
    image = Image.fromarray(_rgb8(10, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    assert read_image(tmp_path / "r.jpg").pixels.shape[:2] == (20, 10)
    up.upscale_file(tmp_path / "r.jpg", tmp_path / "out.png")
    assert Image.open(tmp_path / "out.png").size == (20, 40)


def test_image_size_reads_the_header_as_read_image_orients_it(tmp_path):
    from srexport.runtime.imageio import image_size

    image = Image.fromarray(_rgb8(10, 20))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    image.save(tmp_path / "plain.png")
    Image.fromarray((np.arange(12 * 7, dtype=np.uint16) * 700).reshape(12, 7)).save(tmp_path / "gray16.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    for name in ("r.jpg", "plain.png", "gray16.png"):
        assert image_size(tmp_path / name) == read_image(tmp_path / name).pixels.shape[:2]
    assert image_size(tmp_path / "r.jpg") == (20, 10)
    assert image_size(tmp_path / "broken.png") is None
    assert image_size(tmp_path / "missing.png") is None


def test_arrays_and_pil_images_come_back_as_the_same_kind(pixel):
    model, up = pixel
    rgb = _rgb8()
    out8 = up.upscale(rgb)
    assert out8.dtype == np.uint8 and out8.shape == (26, 34, 3)
    out16 = up.upscale(rgb.astype(np.uint16) * 257)
    assert out16.dtype == np.uint16 and np.abs(out16.astype(int) // 257 - out8.astype(int)).max() <= 1
    outf = up.upscale(rgb.astype(np.float32) / 255)
    assert outf.dtype == np.float32
    np.testing.assert_allclose(outf, _model_rgb(model, rgb.astype(np.float32) / 255), atol=1e-5)
    assert up.upscale(rgb[..., 0]).shape == (26, 34)
    assert up.upscale(np.dstack([rgb, rgb[..., :1]])).shape == (26, 34, 4)
    pil = up.upscale(Image.fromarray(rgb))
    assert isinstance(pil, Image.Image) and pil.size == (34, 26) and pil.mode == "RGB"


def test_bad_arrays_are_refused(pixel):
    _, up = pixel
    with pytest.raises(ImageError):
        up.upscale(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError):
        up.upscale(np.zeros((4, 4, 3), np.int64))


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    """A written output is readable by others as any file the user makes (umask), not 0600."""
    import os
    import stat

    from srexport.fsutil import atomic_path

    from srexport.fsutil import atomic_directory

    previous = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "out.png") as tmp:
            tmp.write_bytes(b"x")
        with atomic_directory(tmp_path / "bundle") as folder:
            (folder / "manifest.json").write_text("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755


@pytest.mark.parametrize("channels, alpha", [(3, False), (3, True), (1, False)])
def test_written_8bit_png_decodes_to_the_rounded_pixels(tmp_path, channels, alpha):
    """The PNG encoder settings (zlib level and strategy) are lossless: Pillow decodes exactly
    round(clip(x) * 255), smooth areas (long runs) and noise alike."""
    from srexport.runtime.imageio import write_png

    rng = np.random.default_rng(3)
    ramp = np.linspace(-0.1, 1.1, 40 * 56, dtype=np.float32).reshape(40, 56, 1)
    pixels = np.concatenate([np.repeat(ramp, channels, axis=2), rng.random((40, 56, channels), np.float32)], axis=1)
    alpha_plane = rng.random(pixels.shape[:2], np.float32) if alpha else None
    write_png(tmp_path / "out.png", pixels, alpha_plane)
    expected = np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    if alpha:
        expected = np.concatenate([expected, np.rint(alpha_plane * 255).astype(np.uint8)[..., None]], axis=2)
    with Image.open(tmp_path / "out.png") as img:
        decoded = np.asarray(img)
    assert np.array_equal(decoded.reshape(expected.shape), expected)


@pytest.mark.parametrize("name", ["anim.gif", "anim.png", "anim.webp", "pages.tif"])
def test_a_file_of_several_frames_is_refused_in_one_line_and_nothing_written(pixel, tmp_path, name):
    _, up = pixel
    frames = [Image.fromarray(_rgb8(seed=k)) for k in range(3)]
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / name).n_frames == 3  # the file really holds three pictures
    with pytest.raises(ImageError, match=r"3 frames \(an animated or multi-page image\)") as info:
        up.upscale_file(tmp_path / name, tmp_path / "out.png")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.png").exists()


def test_a_16bit_animated_png_is_refused_too(tmp_path):
    frames = [Image.fromarray(np.full((6, 5), 1000 * (k + 1), np.uint16)) for k in range(2)]
    frames[0].save(tmp_path / "a16.png", save_all=True, append_images=frames[1:])
    with Image.open(tmp_path / "a16.png") as img:
        assert img.n_frames == 2
    with open(tmp_path / "a16.png", "rb") as handle:
        assert handle.read(25)[24] == 16  # the 16-bit reader's path, not Pillow's
    with pytest.raises(ImageError, match="2 frames"):
        read_image(tmp_path / "a16.png")
