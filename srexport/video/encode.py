"""The output: one encoded video stream plus every other stream copied packet for packet."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srexport.video.avlib import av
from srexport.video.colour import Colour, from_rgb
from srexport.video.decode import Probe
from srexport.video.options import VideoError, VideoOptions, parse_bitrate

# Constant-quality defaults: visually transparent on upscaled content.
DEFAULT_CRF = {"libx264": 18, "libx265": 20, "libvpx-vp9": 24, "libsvtav1": 28}
FALLBACK_CODEC = "libx264"


@dataclass(frozen=True)
class EncoderChoice:
    """What the video stream is encoded with, after defaults."""

    codec: str
    pix_fmt: str
    options: dict[str, str]
    bit_rate: int


def _bits(pix_fmt: str) -> int:
    return max(c.bits for c in av.VideoFormat(pix_fmt).components)


def choose_encoder(options: VideoOptions, probe: Probe, supported: set[str], scale: int,
                   container_default: str | None = None) -> EncoderChoice:
    """The codec (the input's where it can be encoded into this container, else the
    container's usual one: H.264 for MP4/MOV/Matroska, VP9 for WebM, else libx264),
    the pixel format (the input's where the codec takes it, else the closest bit depth) and
    the rate control (--crf, --bitrate, or a constant-quality default)."""
    if options.codec:
        try:
            codec = av.codec.Codec(options.codec, "w")
        except Exception:
            raise VideoError(f"--codec {options.codec}: no such encoder in this PyAV build") from None
    else:
        try:
            codec = av.codec.Codec(probe.codec, "w")
        except Exception:
            codec = None
        if codec is None or probe.codec not in supported:
            codec = av.codec.Codec(FALLBACK_CODEC, "w")
            if container_default and container_default != "none":
                try:
                    codec = av.codec.Codec(container_default, "w")
                except Exception:
                    pass
    if codec.type != "video":
        raise VideoError(f"--codec {options.codec}: not a video encoder")
    if codec.name not in supported and codec.canonical_name not in supported:
        raise VideoError(f"the output container cannot hold {codec.name} video; choose another --codec or suffix")
    formats = [f.name for f in codec.video_formats or []]
    if options.pix_fmt:
        if formats and options.pix_fmt not in formats:
            raise VideoError(f"--pix-fmt {options.pix_fmt}: {codec.name} takes {', '.join(formats)}")
        pix_fmt = options.pix_fmt
    elif not formats or probe.pix_fmt in formats:
        pix_fmt = probe.pix_fmt
    else:
        want = _bits(probe.pix_fmt)
        pix_fmt = min(formats, key=lambda f: (abs(_bits(f) - want), _bits(f) < want, formats.index(f)))
    private = {"crf", "preset", "qp"} & _private_options(codec.name)
    extra: dict[str, str] = {}
    bit_rate = 0
    if options.crf is not None:
        if "crf" not in private:
            raise VideoError(f"{codec.name} takes no --crf; give --bitrate")
        extra["crf"] = str(options.crf)
    elif options.bitrate is not None:
        bit_rate = parse_bitrate(options.bitrate)
    elif codec.name in DEFAULT_CRF:
        extra["crf"] = str(DEFAULT_CRF[codec.name])
    elif not codec.lossless or codec.lossy:
        # No constant-quality mode: the input's rate scaled by the number of pixels.
        bit_rate = int((probe.bit_rate or 2_000_000) * scale * scale)
    if options.preset is not None:
        if "preset" not in private:
            raise VideoError(f"{codec.name} takes no --preset")
        extra["preset"] = options.preset
    return EncoderChoice(codec.name, pix_fmt, extra, bit_rate)


def _private_options(name: str) -> set[str]:
    context = av.codec.CodecContext.create(name, "w")
    return {option.name for option in context.supported_options.private}


class Encoder:
    """Writes upscaled frames and copied packets into `path` (format from its suffix)."""

    def __init__(self, path: Path, source, probe: Probe, options: VideoOptions, size: tuple[int, int],
                 scale: int, warn=print):
        try:
            self.container = av.open(str(path), "w")
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{path.name}: cannot write this container ({exc})") from None
        try:
            self._setup(source, probe, options, size, scale, warn)
        except BaseException:
            self.container.close()
            raise

    def _setup(self, source, probe: Probe, options: VideoOptions, size: tuple[int, int], scale: int, warn) -> None:
        supported = set(self.container.supported_codecs)
        self.choice = choose_encoder(options, probe, supported, scale, self.container.default_video_codec)
        self.colour: Colour = probe.colour
        stream = self.container.add_stream(self.choice.codec, rate=probe.rate)
        stream.width, stream.height = size
        stream.pix_fmt = self.choice.pix_fmt
        stream.time_base = probe.time_base
        context = stream.codec_context
        context.time_base = probe.time_base
        if probe.rate:
            context.framerate = probe.rate
        context.bit_rate = self.choice.bit_rate
        context.options = dict(self.choice.options)
        context.thread_type = "AUTO"
        if probe.sample_aspect_ratio:
            context.sample_aspect_ratio = probe.sample_aspect_ratio
        self.colour.tag(context)
        stream.metadata.update(probe.video_metadata)
        self.video = stream
        self.copies: dict[int, object] = {}
        for template in source.streams:
            if template.index == probe.index:
                continue
            names = set()
            if template.type in ("audio", "subtitle"):
                context = template.codec_context
                names = {context.name, context.codec.canonical_name}
            if names and not names & supported:
                name = context.codec.canonical_name
                raise VideoError(f"{self.container.name}: this container cannot hold the input's {name} "
                                 f"{template.type} stream (copied, not re-encoded); use .mkv")
            try:
                copy = self.container.add_stream_from_template(template)
            except (av.FFmpegError, ValueError, TypeError, NotImplementedError) as exc:
                warn(f"stream {template.index} ({template.type}) not copied: {exc}")
                continue
            copy.metadata.update(template.metadata)
            self.copies[template.index] = copy
        self.container.metadata.update(source.metadata)
        self.frames = 0

    def write(self, rgb: np.ndarray, pts: int, duration: int | None = None) -> None:
        frame = from_rgb(rgb, self.choice.pix_fmt, self.colour)
        frame.pts = pts
        if duration:
            frame.duration = duration
        frame.time_base = self.video.codec_context.time_base
        self.container.mux(self.video.encode(frame))
        self.frames += 1

    def copy(self, packet) -> None:
        target = self.copies.get(packet.stream.index)
        if target is not None:
            packet.stream = target
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the trailer: the file is complete and playable."""
        try:
            self.container.mux(self.video.encode(None))
        finally:
            self.container.close()

    def abandon(self) -> None:
        self.container.close()
