"""Tiny synthetic clips made with PyAV for the video tests, and independent readers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

av = __import__("pytest").importorskip("av")

SWS = av.video.reformatter.Interpolation
# The conversion srexport.video.colour documents: swscale, bicubic chroma, accurate rounding.
FLAGS = SWS.BICUBIC | SWS.ACCURATE_RND | SWS.FULL_CHR_H_INT
# Every conversion runs on one thread, as srexport's do: swscale's slice threads now and then
# give different rows at a slice boundary (seen on 14-row gbrapf32le frames, 2 threads).


def pattern(index: int, height: int, width: int) -> np.ndarray:
    """A moving colour pattern, HxWx3 float in [0, 1]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 0.5 + 0.45 * np.sin(0.6 * xx + 0.3 * index)
    g = 0.5 + 0.45 * np.cos(0.5 * yy - 0.2 * index)
    b = ((xx + yy + 3 * index) % 17) / 17.0
    return np.stack([r, g, b], -1).astype(np.float32)


def make_clip(path: Path, frames: int = 10, width: int = 32, height: int = 24, *, codec: str = "libx264",
              pix_fmt: str = "yuv420p", audio: bool = True, pts: list[int] | None = None,
              time_base: Fraction | None = None, rate: int = 24, colorspace: int = 6, color_range: int = 1,
              options: dict | None = None, subtitles: bool = False, rotation: int | None = None) -> Path:
    """Encode `frames` pattern frames (a 440 Hz tone, and SubRip cues) into `path`."""
    out = av.open(str(path), "w")
    video = out.add_stream(codec, rate=rate)
    video.width, video.height, video.pix_fmt = width, height, pix_fmt
    video.codec_context.options = options or {}
    video.codec_context.colorspace = colorspace
    video.codec_context.color_range = color_range
    if rotation is not None:
        video.set_display_rotation(rotation)
    if time_base is not None:
        video.time_base = time_base
        video.codec_context.time_base = time_base
    if audio:
        sound = out.add_stream("aac", rate=48000)
        sound.layout = "mono"
    cues = out.add_mux_stream("subrip") if subtitles else None
    if cues is not None:
        cues.time_base = Fraction(1, 1000)
    for i in range(frames):
        if cues is not None and i % 3 == 0:
            cue = av.Packet(f"cue {i}".encode())
            cue.stream, cue.time_base = cues, cues.time_base
            cue.pts = cue.dts = round(i / rate * 1000)
            cue.duration = 60
            out.mux(cue)
        rgb = av.VideoFrame.from_ndarray(pattern(i, height, width), format="gbrpf32le")
        frame = rgb.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range,
                             interpolation=FLAGS, threads=1)
        frame.pts = i if pts is None else pts[i]
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    if audio:
        seconds = frames / rate if pts is None else (pts[-1] + 1) * float(time_base)
        t = np.arange(int(48000 * seconds)) / 48000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for k in range(0, samples.shape[1], 1024):
            chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + 1024]), format="fltp",
                                               layout="mono")
            chunk.sample_rate, chunk.pts = 48000, k
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    out.close()
    return path


def video_frames(path: Path) -> list:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def packets(path: Path, kind: str) -> list[tuple[int | None, bytes]]:
    """(pts, bytes) of every non-empty packet of the first `kind` stream."""
    with av.open(str(path)) as container:
        stream = getattr(container.streams, kind)[0]
        return [(p.pts, bytes(p)) for p in container.demux(stream) if p.size]


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        return {"time_base": v.time_base, "rate": v.average_rate, "pix_fmt": v.codec_context.pix_fmt,
                "size": (v.width, v.height), "colorspace": v.codec_context.colorspace,
                "color_range": v.codec_context.color_range, "codec": v.codec_context.name,
                "kinds": [s.type for s in container.streams]}


def to_float_rgb(frame, colorspace: int, color_range: int, fmt: str = "gbrpf32le") -> np.ndarray:
    return frame.reformat(format=fmt, src_colorspace=colorspace, src_color_range=color_range,
                          interpolation=FLAGS, threads=1).to_ndarray()


def encode_reference(rgb: np.ndarray, pix_fmt: str, colorspace: int, color_range: int) -> list[np.ndarray]:
    """The planes an encoder receives for this RGB output under the documented conversion."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.clip(rgb, 0, 1), dtype=np.float32),
                                       format="gbrapf32le" if rgb.shape[2] == 4 else "gbrpf32le")
    frame = frame.reformat(format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range,
                           interpolation=FLAGS, threads=1)
    return planes(frame)


def planes(frame) -> list[np.ndarray]:
    dtype = np.uint16 if max(c.bits for c in frame.format.components) > 8 else np.uint8
    out = []
    for plane in frame.planes:
        width = plane.width
        row = plane.line_size // np.dtype(dtype).itemsize
        data = np.frombuffer(bytes(plane), dtype=dtype).reshape(plane.height, row)[:, :width]
        out.append(data.copy())
    return out
