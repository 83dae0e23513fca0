"""What a video run may be told: encoder choices, a frame range, how noise is seeded."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from srexport.errors import SrExportError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg",
                  ".flv", ".nut", ".ogv", ".wmv", ".y4m")


class VideoError(SrExportError):
    """A video that cannot be read, or an output that cannot be written as asked."""


def is_video(path: str | Path) -> bool:
    """Whether `path` names a video by its suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class FrameRange:
    """Frames [start, stop) in presentation order, counted from the input's first frame."""

    start: int = 0
    stop: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> "FrameRange":
        """'A:B', 'A:' or ':B' (Python slice rules without steps or negatives)."""
        if not text:
            return cls()
        parts = text.split(":")
        try:
            if len(parts) != 2:
                raise ValueError
            start = int(parts[0]) if parts[0].strip() else 0
            stop = int(parts[1]) if parts[1].strip() else None
        except ValueError:
            raise VideoError(f"--frames takes A:B, A: or :B (frame indices), got '{text}'") from None
        if start < 0 or (stop is not None and stop <= start):
            raise VideoError(f"--frames needs 0 <= A < B, got '{text}'")
        return cls(start, stop)

    def __contains__(self, index: int) -> bool:
        return index >= self.start and (self.stop is None or index < self.stop)

    def done(self, index: int) -> bool:
        """No frame at or after `index` is wanted."""
        return self.stop is not None and index >= self.stop


@dataclass(frozen=True)
class VideoOptions:
    """Encoder and streaming choices; None means 'the input's, or a good default'."""

    codec: str | None = None
    crf: int | None = None
    bitrate: str | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    frames: FrameRange = field(default_factory=FrameRange)
    static_noise: bool = False
    depth: int = 3  # frames queued between decode, inference and encode (each way)
    # The encoder restarts (a fresh encoder: a keyframe, a closed GOP) at the first input
    # keyframe at least this many frames after its last start; None: 2 seconds of frames,
    # 0: never. Chunks encoded independently are what lets --ray split a video across
    # workers with the same bytes (srexport.video.chunks).
    chunk_frames: int | None = None

    def __post_init__(self):
        if self.crf is not None and self.bitrate is not None:
            raise VideoError("--crf and --bitrate exclude each other: give one")
        if self.crf is not None and self.crf < 0:
            raise VideoError(f"--crf must be >= 0, got {self.crf}")
        if self.bitrate is not None:
            parse_bitrate(self.bitrate)
        if self.depth < 1:
            raise VideoError(f"depth must be >= 1, got {self.depth}")
        if self.chunk_frames is not None and self.chunk_frames < 0:
            raise VideoError(f"chunk frames must be >= 0, got {self.chunk_frames}")


def parse_bitrate(text: str) -> int:
    """'8M', '2500k' or '800000' -> bits per second."""
    units = {"k": 10**3, "m": 10**6, "g": 10**9}
    value = text.strip().lower()
    factor = units.get(value[-1:], 1)
    try:
        bits = float(value[:-1] if value[-1:] in units else value) * factor
    except ValueError:
        bits = 0
    if bits <= 0:
        raise VideoError(f"--bitrate takes bits per second such as 8M or 2500k, got '{text}'")
    return int(bits)
