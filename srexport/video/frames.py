"""`upscale_frames(upscaler, frames)`: the function form of `Upscaler.upscale_frames`."""

from __future__ import annotations

from typing import Iterable, Iterator


def upscale_frames(upscaler, frames: Iterable, *, static_noise: bool = False, depth: int = 2) -> Iterator:
    """Upscale each frame (whatever `Upscaler.upscale` takes: arrays or PIL images) and
    yield the results in order, as `upscaler.upscale_frames` does (several frames in flight
    on the session's streams, read ahead on a reader thread); frame k's noise seed is
    `frame_seed(upscaler.seed, k)` unless `static_noise`."""
    return upscaler.upscale_frames(frames, static_noise=static_noise, depth=depth)
