"""`sr-export profile BUNDLE --video clip.mp4`: frames per second on this device, and the
papers' real-time question (can it upscale to a UHD display at 24, 30 or 60 fps?).

Three timings, each after one untimed frame of its size (compilation and caches apart):
- end to end: `upscale_video` on the clip's first frames (decode, upscale, encode, copy);
- inference: `upscale_frames` on the same decoded frames (no video I/O);
- UHD: `upscale_frames` on frames of the input size whose output is 3840x2160 (the
  clip's first frame resized with bicubic), the content the MGBPv2 paper targets.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from srexport.runtime.resize import bicubic
from srexport.video.avlib import av
from srexport.video.decode import VideoItem, demux, open_input
from srexport.video.job import upscale_video
from srexport.video.options import FrameRange, VideoError, VideoOptions

UHD = (3840, 2160)
TARGET_FPS = (24, 30, 60)


@dataclass(frozen=True)
class RealtimeAnswer:
    """Whether `fps` frames per second are reached; `factor` = achieved / target."""

    target_fps: int
    meets: bool
    factor: float

    def line(self) -> str:
        if self.meets:
            return f"{self.target_fps} fps: yes ({self.factor:.2f}x the rate)"
        return f"{self.target_fps} fps: no, {1 / self.factor:.1f}x too slow" if self.factor > 0 else \
            f"{self.target_fps} fps: no"


@dataclass(frozen=True)
class SizedRate:
    """Frames of one input size timed through one path."""

    input_size: tuple[int, int]  # W, H
    output_size: tuple[int, int]
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def output_mpx_s(self) -> float:
        return self.fps * self.output_size[0] * self.output_size[1] / 1e6


@dataclass(frozen=True)
class VideoProfile:
    clip: str
    run: str  # backend, tiling and streams, as `run` prints them
    end_to_end: SizedRate
    inference: SizedRate
    uhd: SizedRate
    answers: tuple[RealtimeAnswer, ...]

    def to_json(self) -> dict:
        def rate(r: SizedRate) -> dict:
            return {**asdict(r), "fps": r.fps, "output_mpx_s": r.output_mpx_s}

        return {"clip": self.clip, "run": self.run, "end_to_end": rate(self.end_to_end),
                "inference": rate(self.inference), "streaming_ratio": self.streaming_ratio,
                "uhd": rate(self.uhd), "realtime": [asdict(a) for a in self.answers]}

    @property
    def streaming_ratio(self) -> float:
        """End-to-end fps over inference fps on the same frames: what video I/O costs."""
        return self.end_to_end.fps / self.inference.fps if self.inference.fps > 0 else 0.0

    def lines(self) -> list[str]:
        e, i, u = self.end_to_end, self.inference, self.uhd
        size = f"{e.input_size[0]}x{e.input_size[1]} -> {e.output_size[0]}x{e.output_size[1]}"
        return [
            self.run,
            f"{self.clip}: {size}, {e.frames} frames: {e.fps:.2f} fps end to end (decode, upscale, encode), "
            f"{i.fps:.2f} fps upscaling alone ({self.streaming_ratio:.2f} of it)",
            f"UHD {u.input_size[0]}x{u.input_size[1]} -> {u.output_size[0]}x{u.output_size[1]}: "
            f"{u.fps:.3f} fps ({u.seconds / u.frames:.2f} s a frame, {u.output_mpx_s:.2f} Mpx/s, "
            f"{u.frames} frames)",
            "real time at UHD: " + "; ".join(a.line() for a in self.answers),
        ]


def answers(fps: float) -> tuple[RealtimeAnswer, ...]:
    return tuple(RealtimeAnswer(target, fps >= target, fps / target) for target in TARGET_FPS)


def uhd_input_size(scale: int) -> tuple[int, int]:
    """The input (W, H) whose output at `scale` is 3840x2160, rounded to whole pixels."""
    return round(UHD[0] / scale), round(UHD[1] / scale)


def _decoded(src: Path, frames: int) -> list[VideoItem]:
    container, probe = open_input(src)
    try:
        items = [item for item in demux(container, probe, FrameRange(0, frames), set())
                 if isinstance(item, VideoItem)]
    except (av.FFmpegError, ValueError) as exc:  # as upscale_video reports a damaged file
        raise VideoError(f"{src}: damaged or undecodable video ({exc})") from None
    finally:
        container.close()
    if not items:
        raise VideoError(f"{src}: no frames decoded")
    return items


def _timed_frames(upscaler, frames: list[np.ndarray]) -> float:
    list(upscaler.upscale_frames(frames[:1]))  # untimed, run to its end: compiles this shape
    start = time.perf_counter()
    for _ in upscaler.upscale_frames(frames):
        pass
    return time.perf_counter() - start


def profile_video(upscaler, src: str | Path, *, frames: int = 24, uhd_frames: int = 2, run_line: str = "",
                  log: Callable[[str], None] | None = None) -> VideoProfile:
    """Time the clip's first `frames` frames end to end and upscaling alone, and
    `uhd_frames` frames whose output is UHD; see the module's docstring."""
    if frames < 1 or uhd_frames < 1:
        raise VideoError("--video-frames and the UHD frames must be >= 1")
    src = Path(src)
    say = log or (lambda _m: None)
    items = _decoded(src, frames)
    rgbs = [item.rgb for item in items]
    height, width = rgbs[0].shape[:2]
    scale = upscaler.scale
    out_size = (width * scale, height * scale)

    say(f"profile: {len(rgbs)} frames of {src.name} upscaled alone")
    inference = SizedRate((width, height), out_size, len(rgbs), _timed_frames(upscaler, rgbs))

    say("profile: the same frames end to end")
    with tempfile.TemporaryDirectory(prefix="srexport-profile-") as tmp:
        options = VideoOptions(frames=FrameRange(0, len(rgbs)))
        start = time.perf_counter()
        result = upscale_video(upscaler, src, Path(tmp) / f"out{src.suffix or '.mkv'}", options)
        end_to_end = SizedRate((width, height), out_size, result.frames, time.perf_counter() - start)

    uhd_in = uhd_input_size(scale)
    say(f"profile: {uhd_frames} frames of {uhd_in[0]}x{uhd_in[1]} (UHD output)")
    planes = rgbs[0].transpose(2, 0, 1)
    uhd_frame = np.ascontiguousarray(np.clip(bicubic(planes, uhd_in[1], uhd_in[0]), 0, 1).transpose(1, 2, 0))
    uhd_seconds = _timed_frames(upscaler, [uhd_frame] * uhd_frames)
    uhd = SizedRate(uhd_in, (uhd_in[0] * scale, uhd_in[1] * scale), uhd_frames, uhd_seconds)
    return VideoProfile(src.name, run_line, end_to_end, inference, uhd, answers(uhd.fps))
