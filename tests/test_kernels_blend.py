"""Window blending: the host twin of the CUDA kernels against the runtime's NumPy Blender.

The twin runs the kernels' own __host__ __device__ code with their schedule (32x8 blocks,
ballot culling, per-pixel gather in batch order), so "equal to Blender bit for bit" here
means the GPU kernels compute exactly what the CPU runtime computes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from srexport.runtime.blend import Blender, window_1d, window_2d
from srexport.runtime.imageio import quantize
from srexport.runtime.tiler import axis_starts

if shutil.which("g++") is None and shutil.which("c++") is None:
    pytest.skip("no C++ compiler: the host twin library cannot be built", allow_module_level=True)

from srexport.kernels import host, launch  # noqa: E402


def reference(channels, height, width, patches, offsets, kind, pad=0):
    """Blender on a canvas grown by `pad` on every side (patches may hang over the edges),
    cropped back: what clipping the overhanging part means."""
    ph, pw = patches.shape[-2:]
    blender = Blender(channels, height + 2 * pad, width + 2 * pad, window_2d(kind, ph, pw))
    for (top, left), patch in zip(offsets, patches):
        blender.add(patch.astype(np.float32), top + pad, left + pad)
    crop = (slice(pad, pad + height), slice(pad, pad + width))
    return blender.canvas[(slice(None), *crop)], blender.weight[crop]


def twin(channels, height, width, patches, offsets, kind, batch=None):
    ph, pw = patches.shape[-2:]
    blender = host.HostBlender(channels, height, width, window_1d(kind, ph), window_1d(kind, pw))
    batch = batch or len(offsets)
    for start in range(0, len(offsets), batch):
        blender.add_batch(patches[start:start + batch], offsets[start:start + batch])
    return blender


def tiles(height, width, ph, pw, overlap):
    return [(t, l) for t in axis_starts(height, ph, overlap) for l in axis_starts(width, pw, overlap)]


@pytest.mark.parametrize("kind", ["hamming", "bartlett", "none"])
@pytest.mark.parametrize(
    "height,width,ph,pw,overlap,batch",
    [
        (100, 130, 32, 48, 8, None),  # ordinary tiling; last row/column ends exactly at the border
        (97, 61, 24, 24, 23, 7),  # heavy overlap: stride 1, patches of 24 cover pixels up to 576 times
        (33, 45, 16, 20, 12, 5),  # stride 4/8, uneven last tiles, batches cutting rows
        (20, 17, 20, 17, 0, None),  # one patch exactly the canvas
        (300, 41, 40, 41, 39, 64),  # tall strip, stride 1 in y, full width patches
    ],
)
def test_twin_equals_blender_bit_for_bit(kind, height, width, ph, pw, overlap, batch):
    rng = np.random.default_rng(height * 1000 + width)
    offsets = tiles(height, width, ph, pw, overlap)
    patches = rng.normal(0.5, 0.4, (len(offsets), 3, ph, pw)).astype(np.float32)
    canvas, weight = reference(3, height, width, patches, offsets, kind)
    got = twin(3, height, width, patches, offsets, kind, batch)
    assert np.array_equal(got.weight, weight)
    assert np.array_equal(got.canvas, canvas)
    assert np.array_equal(got.result(), (canvas / weight).transpose(1, 2, 0))


def test_partial_tiles_hanging_over_every_border():
    """Patches at negative offsets and past the bottom/right edge: the outside is dropped."""
    rng = np.random.default_rng(1)
    height, width, ph, pw = 50, 70, 16, 24
    offsets = [(t, l) for t in range(-12, height + 4, 9) for l in range(-20, width + 6, 13)]
    patches = rng.random((len(offsets), 3, ph, pw), dtype=np.float32)
    canvas, weight = reference(3, height, width, patches, offsets, "hamming", pad=32)
    got = twin(3, height, width, patches, offsets, "hamming", batch=11)
    assert np.array_equal(got.canvas, canvas)
    assert np.array_equal(got.weight, weight)


def test_patches_entirely_outside_change_nothing():
    got = twin(3, 10, 10, np.ones((3, 3, 4, 4), np.float32), [(-4, 0), (10, 3), (2, 12)], "hamming")
    assert not got.canvas.any() and not got.weight.any()


def test_float16_patches_match_blender_on_the_same_values():
    rng = np.random.default_rng(2)
    offsets = tiles(64, 80, 32, 32, 16)
    patches = rng.random((len(offsets), 3, 32, 32)).astype(np.float16)
    canvas, weight = reference(3, 64, 80, patches, offsets, "hamming")
    got = twin(3, 64, 80, patches, offsets, "hamming")
    assert np.array_equal(got.canvas, canvas)
    assert np.array_equal(got.weight, weight)


@pytest.mark.parametrize("channels", [1, 4])
def test_other_channel_counts(channels):
    rng = np.random.default_rng(channels)
    offsets = tiles(40, 50, 16, 16, 6)
    patches = rng.random((len(offsets), channels, 16, 16), dtype=np.float32)
    canvas, weight = reference(channels, 40, 50, patches, offsets, "bartlett")
    got = twin(channels, 40, 50, patches, offsets, "bartlett")
    assert np.array_equal(got.canvas, canvas)
    assert np.array_equal(got.weight, weight)


def test_batches_larger_than_one_launch_are_split_in_order():
    rng = np.random.default_rng(3)
    offsets = [(int(t), int(l)) for t, l in rng.integers(-3, 60, (launch.BLEND_MAX_BATCH + 77, 2))]
    patches = rng.random((len(offsets), 3, 5, 6), dtype=np.float32)
    canvas, weight = reference(3, 64, 64, patches, offsets, "hamming", pad=8)
    got = twin(3, 64, 64, patches, offsets, "hamming")
    assert np.array_equal(got.canvas, canvas)
    assert np.array_equal(got.weight, weight)


def test_accumulates_onto_an_existing_canvas():
    rng = np.random.default_rng(4)
    offsets = tiles(30, 30, 12, 12, 4)
    patches = rng.random((len(offsets), 3, 12, 12), dtype=np.float32)
    canvas, weight = reference(3, 30, 30, patches, offsets, "hamming")
    got = twin(3, 30, 30, patches, offsets, "hamming", batch=3)  # many launches onto one canvas
    assert np.array_equal(got.canvas, canvas)


def test_identity_model_tiled_equals_the_image():
    """Constant-per-pixel output blended back is the image, to float rounding."""
    rng = np.random.default_rng(5)
    image = rng.random((3, 45, 71), dtype=np.float32)
    offsets = tiles(45, 71, 20, 20, 7)
    patches = np.stack([image[:, t:t + 20, l:l + 20] for t, l in offsets])
    got = twin(3, 45, 71, patches, offsets, "hamming")
    np.testing.assert_allclose(got.result(), image.transpose(1, 2, 0), rtol=0, atol=2e-7)


# -- finalisation ----------------------------------------------------------------------
def _canvas_with_edge_values(rng, channels=3, height=23, width=37):
    weight = rng.uniform(0.05, 3.0, (height, width)).astype(np.float32)
    values = rng.uniform(-0.2, 1.2, (channels, height, width)).astype(np.float32)
    # exact halves at the quantisation step (ties round to even), 0, 1, out of range
    values[0, 0, :6] = np.array([0.5, 1.5, 2.5, 253.5, 254.5, 127.5], np.float32) / 255.0
    values[1, 0, :4] = [0.0, 1.0, -3.0, 7.0]
    canvas = (values * weight).astype(np.float32)
    return canvas, weight


@pytest.mark.parametrize("dtype,peak", [(np.uint8, 255.0), (np.uint16, 65535.0)])
def test_finalize_quantizes_like_numpy(dtype, peak):
    rng = np.random.default_rng(6)
    canvas, weight = _canvas_with_edge_values(rng)
    out = host.blend_finalize(canvas, weight, dtype=dtype)
    expected = np.rint(np.clip(canvas / weight, 0.0, 1.0) * np.float32(peak)).astype(dtype).transpose(1, 2, 0)
    assert out.dtype == dtype and out.shape == (23, 37, 3)
    assert np.array_equal(out, expected)
    assert np.array_equal(out, quantize((canvas / weight).transpose(1, 2, 0), 8 if dtype == np.uint8 else 16))


def test_finalize_region_and_float_output():
    rng = np.random.default_rng(7)
    canvas, weight = _canvas_with_edge_values(rng, channels=4, height=30, width=40)
    out = host.blend_finalize(canvas, weight, 3, 5, 20, 31, dtype=np.float32)
    expected = (canvas / weight)[:, 3:23, 5:36].transpose(1, 2, 0)
    assert np.array_equal(out, expected)
    u8 = host.blend_finalize(canvas, weight, 3, 5, 20, 31, dtype=np.uint8)
    assert np.array_equal(u8, quantize(expected, 8))


def test_finalize_of_an_uncovered_pixel_is_zero():
    canvas = np.zeros((3, 2, 2), np.float32)
    weight = np.zeros((2, 2), np.float32)
    assert not host.blend_finalize(canvas, weight, dtype=np.uint8).any()


def test_end_to_end_tiled_blend_to_uint8():
    rng = np.random.default_rng(8)
    offsets = tiles(61, 77, 24, 32, 10)
    patches = rng.uniform(-0.1, 1.1, (len(offsets), 3, 24, 32)).astype(np.float32)
    canvas, weight = reference(3, 61, 77, patches, offsets, "hamming")
    got = twin(3, 61, 77, patches, offsets, "hamming", batch=4)
    blender_result = (canvas / weight)[:, 2:59, 3:74].transpose(1, 2, 0)
    assert np.array_equal(got.result(2, 3, 57, 71, dtype=np.uint8), quantize(blender_result, 8))


# -- argument checks -------------------------------------------------------------------
def test_bad_arguments_are_refused_clearly():
    canvas = np.zeros((3, 8, 8), np.float32)
    weight = np.zeros((8, 8), np.float32)
    w = np.ones(4, np.float32)
    with pytest.raises(launch.KernelArgumentError, match="channel"):
        host.blend_accumulate(canvas, weight, np.zeros((1, 2, 4, 4), np.float32), [(0, 0)], w, w)
    with pytest.raises(launch.KernelArgumentError, match="window"):
        host.blend_accumulate(canvas, weight, np.zeros((1, 3, 4, 4), np.float32), [(0, 0)], w[:3], w)
    with pytest.raises(launch.KernelArgumentError, match="offsets"):
        host.blend_accumulate(canvas, weight, np.zeros((2, 3, 4, 4), np.float32), [(0, 0)], w, w)
    with pytest.raises(launch.KernelArgumentError, match="dtype"):
        host.blend_accumulate(canvas, weight, np.zeros((1, 3, 4, 4), np.float64), [(0, 0)], w, w)
    with pytest.raises(launch.KernelArgumentError, match="1..4 channels"):
        host.blend_accumulate(np.zeros((5, 8, 8), np.float32), weight, np.zeros((1, 5, 4, 4), np.float32),
                              [(0, 0)], w, w)
    with pytest.raises(launch.KernelArgumentError, match="writable"):
        host.blend_accumulate(canvas.astype(np.float64), weight, np.zeros((1, 3, 4, 4), np.float32), [(0, 0)], w, w)
    with pytest.raises(launch.KernelArgumentError, match="not inside"):
        host.blend_finalize(canvas, weight, 4, 4, 5, 2)
