"""`Upscaler.upscale_frames`: frames from any decoder in, upscaled frames out, in order."""

from __future__ import annotations

from typing import Iterable, Iterator

from srexport.video.pipeline import pipelined
from srexport.video.seeds import upscale_frame


def upscale_frames(upscaler, frames: Iterable, *, static_noise: bool = False, depth: int = 2) -> Iterator:
    """Upscale each frame (whatever `Upscaler.upscale` takes: arrays or PIL images) and
    yield the results in order. The next frames are pulled from `frames` while one is
    inferred and the caller handles the previous; frame k's noise seed is
    `frame_seed(upscaler.seed, k)` unless `static_noise`."""

    def work(item):
        index, frame = item
        return upscale_frame(upscaler, index, frame, static_noise)

    return pipelined(enumerate(frames), work, depth)
