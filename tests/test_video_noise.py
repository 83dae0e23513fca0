"""Noise models on video: frame k carries the field of its own seed, or one field for all."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("av")

import srexport  # noqa: E402
from srexport.video import frame_seed  # noqa: E402
from conftest import shared_file  # noqa: E402
from video_clips import encode_reference, make_clip, planes, to_float_rgb, video_frames  # noqa: E402

SEED, NOISE = 7, 0.1


def test_frame_seed_is_splitmix64_of_the_frame_counter():
    # The first two outputs of SplitMix64 from state 0 (Vigna's reference splitmix64.c).
    assert frame_seed(0, 0) == 0xE220A8397B1DCDAF
    assert frame_seed(0, 1) == 0x6E789E6AA1B965F4
    assert len({frame_seed(SEED, k) for k in range(1000)}) == 1000


@pytest.fixture(scope="module")
def gmgbp(bundle_factory):
    # Trained weights: a random-init G-MGBP clips every pixel to black, noise or not.
    weights = shared_file("weights", "gmgbp-pirm2018", "BOE-R1.model")
    return bundle_factory("gmgbp", None, None, weights).root


def _frame_planes(bundle, frame_in, seed):
    runtime = srexport.load(bundle, backend="onnxruntime", noise=NOISE, seed=seed)
    return encode_reference(runtime.upscale(to_float_rgb(frame_in, 6, 1)), "yuv420p", 6, 1)


@pytest.mark.parametrize("static", [False, True])
def test_frame_k_equals_the_image_run_with_its_seed(gmgbp, tmp_path, static):
    src = make_clip(tmp_path / "in.mkv", frames=3, width=24, height=16, codec="ffv1", audio=False)
    dst = tmp_path / "out.mkv"
    up = srexport.load(gmgbp, backend="onnxruntime", noise=NOISE, seed=SEED)
    up.upscale_video(src, dst, codec="ffv1", static_noise=static)
    outputs = video_frames(dst)
    inputs = video_frames(src)
    assert len(outputs) == 3
    for k, (frame_in, frame_out) in enumerate(zip(inputs, outputs)):
        seed = SEED if static else frame_seed(SEED, k)
        for got, want in zip(planes(frame_out), _frame_planes(gmgbp, frame_in, seed)):
            np.testing.assert_array_equal(got, want)
    # the noise matters: frame 1 with the other seeding differs
    other = frame_seed(SEED, 1) if static else SEED
    assert not np.array_equal(planes(outputs[1])[0], _frame_planes(gmgbp, inputs[1], other)[0])
