"""Where the encoder restarts: independently encoded chunks that start at input keyframes.

A video is encoded as a sequence of chunks, each by a fresh encoder (its first frame a
keyframe, its GOPs closed, its rate control knowing nothing of the other chunks). A chunk
starts at the first frame of the range and then at every input keyframe at least
`min_frames` frames after the previous chunk's start. The rule depends only on the input's
packets (their timestamps and keyframe flags, read without decoding), so the single-process
run and a run split across Ray workers at chunk boundaries make the same chunks, and a
chunk's packets depend only on its own frames: the concatenated packets are the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from srexport.video.avlib import av
from srexport.video.options import FrameRange, VideoError

DEFAULT_CHUNK_S = 2.0
_FALLBACK_FRAMES = 48


@dataclass(frozen=True)
class Scan:
    """The video stream's frames in presentation order (from its packets), and which are keyframes."""

    pts: tuple[int, ...]
    keyframes: frozenset[int]  # pts of keyframe packets
    end: Fraction | None = None  # seconds: where the last packet ends

    def index_of(self, pts: int) -> int:
        """The presentation index of the frame at `pts`."""
        import bisect

        position = bisect.bisect_left(self.pts, pts)
        if position == len(self.pts) or self.pts[position] != pts:
            raise KeyError(pts)
        return position


def scan_video(path: str | Path, stream_index: int) -> Scan:
    """Read the video stream's packets (not decoding them). A VideoError where a packet
    lacks a timestamp or two share one: such a stream cannot be cut by timestamps."""
    pts: list[int] = []
    keys: set[int] = set()
    end: Fraction | None = None
    try:
        with av.open(str(path), "r") as container:
            stream = container.streams[stream_index]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                if packet.pts is None:
                    raise VideoError(f"{path}: video packets carry no timestamps; it cannot be cut at keyframes")
                pts.append(packet.pts)
                until = (packet.pts + (packet.duration or 0)) * Fraction(packet.time_base)
                end = until if end is None else max(end, until)
                if packet.is_keyframe:
                    keys.add(packet.pts)
    except av.FFmpegError as exc:
        raise VideoError(f"{path}: damaged or undecodable video ({exc})") from None
    ordered = tuple(sorted(pts))
    if len(set(ordered)) != len(ordered):
        raise VideoError(f"{path}: two video packets share a timestamp; it cannot be cut at keyframes")
    return Scan(ordered, frozenset(keys), end)


def min_chunk_frames(option: int | None, rate) -> int:
    """`VideoOptions.chunk_frames` resolved: None is 2 seconds of frames."""
    if option is not None:
        return option
    return max(1, math.ceil(DEFAULT_CHUNK_S * float(rate))) if rate else _FALLBACK_FRAMES


def chunk_starts(scan: Scan, frames: FrameRange, min_frames: int) -> list[int]:
    """Presentation indices where chunks start (the first is the range's first frame);
    `min_frames` 0 gives one chunk."""
    stop = len(scan.pts) if frames.stop is None else min(frames.stop, len(scan.pts))
    if frames.start >= stop:
        return []
    starts = [frames.start]
    if min_frames == 0:
        return starts
    for index in range(frames.start + 1, stop):
        if scan.pts[index] in scan.keyframes and index - starts[-1] >= min_frames:
            starts.append(index)
    return starts
