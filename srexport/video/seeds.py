"""Noise seeds per frame: a fresh, reproducible field for every frame, or one for all.

Frame k of a video (counted from the input's first frame, whatever --frames selects) is
upscaled with the noise fields of seed `frame_seed(seed, k)`: SplitMix64 (Steele et al.,
OOPSLA'14) of `seed + (k + 1) * 0x9E3779B97F4A7C15` modulo 2**64. Running the image path
on that frame with that seed gives the same output. `static=True` keeps `seed` itself for
every frame: the same field each frame, so the noise does not flicker.
"""

from __future__ import annotations

import copy

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def frame_seed(seed: int, index: int) -> int:
    """The 64-bit seed of frame `index`'s noise fields."""
    z = (seed + (index + 1) * _GOLDEN) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def upscaler_for_frame(upscaler, index: int, static: bool):
    """`upscaler` itself where no noise applies or the field is static; otherwise a shallow
    copy (same session, same tiling) whose seed is frame `index`'s."""
    if static or upscaler.noise == 0.0 or not upscaler.bundle.manifest.noise_inputs:
        return upscaler
    framed = copy.copy(upscaler)
    framed.seed = frame_seed(upscaler.seed, index)
    return framed


def upscale_frame(upscaler, index: int, frame, static: bool):
    """Frame `index` of a stream upscaled with its noise seed by the Upscaler for frames
    (`Upscaler.for_frames`), inside its session's `repeating_shapes()` scope (the frames of
    a stream share one size)."""
    upscaler = upscaler.for_frames()
    with upscaler.session.repeating_shapes():
        return upscaler_for_frame(upscaler, index, static).upscale(frame)
