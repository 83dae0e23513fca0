"""The input: what the video stream is (probe) and its frames as float RGB, in order,
interleaved with the packets of the streams that are copied."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from srexport.video.avlib import av, require_av
from srexport.video.colour import Colour, to_rgb
from srexport.video.options import FrameRange, VideoError


@dataclass(frozen=True)
class Probe:
    """The input's video stream."""

    path: Path
    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    time_base: Fraction
    rate: Fraction | None
    frames: int | None  # from the container, or estimated from the duration; None if unknown
    colour: Colour
    bit_rate: int | None
    sample_aspect_ratio: Fraction | None
    video_metadata: dict = field(default_factory=dict)
    declared_frames: int | None = None  # the container's index says so (MP4, MOV)
    declared_end: Fraction | None = None  # seconds: where the video stream says it ends
    display_matrix: tuple[int, ...] | None = None  # rotation/flip for players (9 int32, FFmpeg's layout)


@dataclass
class VideoItem:
    """Frame `index` (presentation order) at `pts` (input time base), as HxWx3 float RGB."""

    index: int
    pts: int
    rgb: np.ndarray
    duration: int | None = None


@dataclass
class PacketItem:
    """A packet of a copied stream, timestamps already shifted for a --frames range."""

    packet: object


def open_input(path: str | Path):
    """(container, probe) of a video file; one VideoError for anything unreadable."""
    require_av()
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise VideoError(f"{path}: not a readable video ({exc})") from None
    try:
        if not container.streams.video:
            raise VideoError(f"{path}: holds no video stream")
        stream = container.streams.video[0]
        context = stream.codec_context
        if not context.format or not stream.width or not stream.height:
            raise VideoError(f"{path}: video stream {stream.index} has no decodable frames (damaged or truncated)")
        pix_fmt = context.format.name
        rate = stream.average_rate or stream.guessed_rate or None
        frames = stream.frames or None
        if frames is None and stream.duration and rate:
            frames = round(float(stream.duration * stream.time_base * rate))
        elif frames is None and container.duration and rate:
            frames = round(container.duration / 1_000_000 * float(rate))
        probe = Probe(
            path=path, index=stream.index, codec=context.name, width=stream.width, height=stream.height,
            pix_fmt=pix_fmt, time_base=stream.time_base, rate=Fraction(rate) if rate else None, frames=frames,
            colour=Colour.of(context, pix_fmt, stream.height), bit_rate=context.bit_rate or container.bit_rate or None,
            sample_aspect_ratio=context.sample_aspect_ratio or None, video_metadata=dict(stream.metadata),
            declared_frames=stream.frames or None, declared_end=_declared_end(stream),
            display_matrix=_display_matrix(path, stream.index),
        )
    except BaseException:
        container.close()
        raise
    return container, probe


def _display_matrix(path: Path, index: int) -> tuple[int, ...] | None:
    """The stream's display matrix, as FFmpeg hands it to the first decoded frame (PyAV
    reads no stream-level side data); None where there is none or nothing decodes."""
    try:
        with av.open(str(path), "r") as container:
            frame = next(container.decode(container.streams[index]), None)
    except Exception:  # best effort: decoding proper reports what is wrong with the file
        return None
    if frame is None:
        return None
    # A mapping keyed by type: PyAV 18.1.1 iterates it by key, 18.1.0 by value.
    data = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
    if data is None:
        return None
    values = np.frombuffer(bytes(data), dtype="<i4")
    return tuple(int(v) for v in values) if values.size == 9 else None


def _declared_end(stream) -> Fraction | None:
    if stream.duration:
        return (stream.start_time or 0) * stream.time_base + stream.duration * stream.time_base
    text = stream.metadata.get("DURATION")  # Matroska as FFmpeg writes it: HH:MM:SS.nnnnnnnnn
    try:
        hours, minutes, seconds = text.split(":")
        return Fraction(int(hours) * 3600 + int(minutes) * 60) + Fraction(seconds)
    except (AttributeError, ValueError):
        return None


def check_complete(probe: Probe, decoded: int, last_end: Fraction | None) -> None:
    """A file whose frames stop short of what its index or header declares is damaged or
    truncated (FFmpeg conceals both: the demuxer resynchronises, the decoder skips)."""
    if probe.declared_frames and decoded < probe.declared_frames:
        raise VideoError(f"{probe.path}: damaged or truncated: {decoded} of {probe.declared_frames} frames decode")
    slack = 2 / probe.rate if probe.rate else Fraction(1, 10)
    if probe.declared_end is not None and last_end is not None and last_end + slack < probe.declared_end:
        raise VideoError(f"{probe.path}: damaged or truncated: the video stops at {float(last_end):.3f} s "
                         f"of {float(probe.declared_end):.3f} s")


def _seconds(value: int | None, time_base) -> Fraction | None:
    return None if value is None or time_base is None else value * Fraction(time_base)


def demux(container, probe: Probe, frames: FrameRange, copied: set[int]) -> Iterator[VideoItem | PacketItem]:
    """Frames in `frames` and the packets of the `copied` streams, in file order.

    A copied packet is held until a decoded frame at or after its time is seen (or the
    file ends), so that a range's bounds, known only once its first and last frames come
    out of the decoder, decide which packets belong to it. For a range that starts after
    frame 0 everything is shifted so that its first frame is at time 0; copied packets
    before the first or from the end frame on are dropped."""
    video = container.streams.video[0]
    shift = frames.start > 0
    start: Fraction | None = None
    held: list = []
    index = 0
    step = round(1 / (probe.rate * probe.time_base)) if probe.rate else 1
    last_pts: int | None = None
    last_end: Fraction | None = None

    def shifted(packet):
        if shift:
            offset = round(start / packet.time_base)
            if packet.pts is not None:
                packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
        return PacketItem(packet)

    def release(until: Fraction | None, keep: bool):
        """Yield (keep) or drop held packets before `until` (None: all)."""
        nonlocal held
        due = [p for p in held if until is None or _seconds(p.pts, p.time_base) < until]
        held = [p for p in held if not (until is None or _seconds(p.pts, p.time_base) < until)]
        for packet in due:
            if keep and (not shift or _seconds(packet.pts, packet.time_base) >= start):
                yield shifted(packet)

    for packet in container.demux():
        sid = packet.stream.index
        if sid == video.index:
            for frame in video.decode(packet):
                pts = frame.pts if frame.pts is not None else (0 if last_pts is None else last_pts + step)
                last_pts = pts
                at = _seconds(pts, video.time_base)
                last_end = at + _seconds(frame.duration or step, video.time_base)
                current, index = index, index + 1
                if current < frames.start:
                    yield from release(at, keep=False)
                    continue
                if frames.done(current):
                    yield from release(at, keep=True)
                    return
                if start is None:
                    start = at
                yield from release(at, keep=True)
                out_pts = pts - round(start / video.time_base) if shift else pts
                yield VideoItem(current, out_pts, to_rgb(frame, probe.colour), frame.duration or None)
        elif sid in copied:
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue
            if packet.pts is None:
                packet.pts = packet.dts
            held.append(packet)
    check_complete(probe, index, last_end)
    if start is not None:
        yield from release(None, keep=True)
