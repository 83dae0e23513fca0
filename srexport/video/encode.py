"""The output: one encoded video stream plus every other stream copied packet for packet."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from srexport.video.avlib import av
from srexport.video.colour import Colour, from_rgb, has_alpha
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
    if codec.name == "libx264":
        # x264's macroblock-tree rate control gives different bytes from run to run at a
        # chunk's (or the stream's) end in a busy process; without it a run is reproducible
        # and a video split across Ray workers is byte-identical to the one-process run.
        extra["x264-params"] = "mbtree=0"
    if options.preset is not None:
        if "preset" not in private:
            raise VideoError(f"{codec.name} takes no --preset")
        extra["preset"] = options.preset
    return EncoderChoice(codec.name, pix_fmt, extra, bit_rate)


def _private_options(name: str) -> set[str]:
    context = av.codec.CodecContext.create(name, "w")
    return {option.name for option in context.supported_options.private}


@dataclass(frozen=True)
class ContextSpec:
    """Everything a video encoder context is opened with (picklable: Ray workers open the same)."""

    codec: str
    pix_fmt: str
    options: dict[str, str]
    bit_rate: int
    size: tuple[int, int]
    time_base: Fraction
    rate: Fraction | None
    sample_aspect_ratio: Fraction | None
    colour: Colour
    flags: int  # the container's (global header)

    def configure(self, context) -> None:
        context.width, context.height = self.size
        context.pix_fmt = self.pix_fmt
        context.time_base = self.time_base
        if self.rate:
            context.framerate = self.rate
        context.bit_rate = self.bit_rate
        context.options = dict(self.options)
        context.thread_type = "AUTO"
        context.flags = self.flags
        if self.sample_aspect_ratio:
            context.sample_aspect_ratio = self.sample_aspect_ratio
        self.colour.tag(context)

    def open(self):
        context = av.CodecContext.create(self.codec, "w")
        self.configure(context)
        return context


@dataclass(frozen=True)
class EncodedPacket:
    """An encoded packet as plain data (it travels from Ray workers to the driver). PyAV
    cannot set a packet's disposable flag, so that hint to the muxer is not carried."""

    pts: int | None
    dts: int | None
    duration: int
    keyframe: bool
    data: bytes

    @classmethod
    def of(cls, packet) -> "EncodedPacket":
        return cls(packet.pts, packet.dts, packet.duration, packet.is_keyframe, bytes(packet))

    def packet(self, time_base: Fraction):
        packet = av.Packet(self.data)
        packet.pts, packet.dts, packet.duration = self.pts, self.dts, self.duration
        packet.is_keyframe = self.keyframe
        packet.time_base = time_base
        return packet


class ChunkEncoder:
    """Frames -> packets, a fresh encoder per chunk (`flush` ends one)."""

    def __init__(self, spec: ContextSpec):
        self.spec = spec
        self.context = None

    def encode(self, frame) -> list:
        if self.context is None:
            self.context = self.spec.open()
        return list(self.context.encode(frame))

    def flush(self) -> list:
        if self.context is None:
            return []
        packets = list(self.context.encode(None))
        self.context = None
        return packets


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
        if has_alpha(probe.pix_fmt) and not has_alpha(self.choice.pix_fmt):
            warn(f"alpha dropped: {self.choice.codec} {self.choice.pix_fmt} has none (ffv1 or libvpx-vp9 keep it)")
        stream = self.container.add_stream(self.choice.codec, rate=probe.rate)
        stream.width, stream.height = size
        stream.pix_fmt = self.choice.pix_fmt
        stream.time_base = probe.time_base
        # The stream's own context only makes the header (extradata); frames go through
        # fresh contexts opened from the same spec, one per chunk.
        self.spec = ContextSpec(self.choice.codec, self.choice.pix_fmt, dict(self.choice.options),
                                self.choice.bit_rate, size, probe.time_base, probe.rate,
                                probe.sample_aspect_ratio, probe.colour, int(stream.codec_context.flags))
        self.spec.configure(stream.codec_context)
        if probe.display_matrix is not None:
            stream.set_display_matrix(list(probe.display_matrix))  # rotation: the picture's own, unchanged
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
        self.chunks = ChunkEncoder(self.spec)
        self._last_dts: int | None = None

    def write(self, rgb: np.ndarray, pts: int, duration: int | None = None) -> None:
        frame = from_rgb(rgb, self.choice.pix_fmt, self.colour)
        frame.pts = pts
        if duration:
            frame.duration = duration
        frame.time_base = self.spec.time_base
        for packet in self.chunks.encode(frame):
            self._mux_video(packet)
        self.frames += 1

    def restart(self) -> None:
        """End the current chunk: the next frame starts a fresh encoder (a keyframe)."""
        for packet in self.chunks.flush():
            self._mux_video(packet)

    def mux_encoded(self, packets: "list[EncodedPacket]", frames: int) -> None:
        """Packets of chunks encoded elsewhere (a Ray worker) with this spec."""
        for encoded in packets:
            self._mux_video(encoded.packet(self.spec.time_base))
        self.frames += frames

    def _mux_video(self, packet) -> None:
        # A chunk's decode timestamps can start at or before the previous chunk's last (a
        # new encoder's B-frame delay on variable frame rate); they are moved up to keep
        # increasing, as muxers require, never past the packet's presentation time.
        last = self._last_dts
        if packet.dts is not None and last is not None and packet.dts <= last:
            if packet.pts is None or last + 1 <= packet.pts:
                packet.dts = last + 1
        if packet.dts is not None:
            self._last_dts = packet.dts
        packet.stream = self.video
        self.container.mux(packet)

    def copy(self, packet) -> None:
        target = self.copies.get(packet.stream.index)
        if target is not None:
            packet.stream = target
            self.container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and write the trailer: the file is complete and playable."""
        try:
            self.restart()
        finally:
            self.container.close()

    def abandon(self) -> None:
        self.container.close()
