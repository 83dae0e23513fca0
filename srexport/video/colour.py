"""Video frames <-> float RGB with the stream's matrix and range, and back to its format.

Decoding converts each frame with FFmpeg's swscale straight to planar float32 RGB in
[0, 1] (`gbrpf32le`), so 10- and 12-bit video reaches the network without an 8-bit step.
Encoding clips the network's output to [0, 1] and converts it back to the output's
pixel format with the same matrix and range. Chroma is upsampled and downsampled by
swscale (bicubic, accurate rounding). Conversion uses one thread: the cores belong to inference. Streams that do not say which matrix or range they
use are read the way players read them: BT.709 from 720 lines up, BT.601 below, limited
range (full for the `yuvj` formats); the output is tagged with what was used, so that a
player does not guess again (differently) on the larger picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srexport.video.avlib import av

BT709, UNSPECIFIED, BT470BG, SMPTE170M, BT2020_NCL, BT2020_CL = 1, 2, 5, 6, 9, 10
RANGE_LIMITED, RANGE_FULL = 1, 2
# AVColorSpace -> the swscale coefficient table to use (BT.2020 CL has no table: NCL's).
_SWS_MATRIX = {1: 1, 4: 4, 5: 5, 6: 6, 7: 7, 9: 9, 10: 9}
_FLOAT_RGB = "gbrpf32le"
_FLOAT_RGBA = "gbrapf32le"


def has_alpha(pix_fmt: str) -> bool:
    """Whether frames in `pix_fmt` carry an alpha plane (yuva*, rgba, gbrap ...)."""
    return any(c.is_alpha for c in av.VideoFormat(pix_fmt).components)


def _interpolation():
    # Conversions run with threads=1: swscale's slice threads are not bit-reproducible (rows at a
    # slice boundary now and then differ), and a run must give the same bytes every time.
    flags = av.video.reformatter.Interpolation
    return flags.BICUBIC | flags.ACCURATE_RND | flags.FULL_CHR_H_INT


@dataclass(frozen=True)
class Colour:
    """How a stream's samples map to RGB (AVColorSpace, AVColorRange, primaries, transfer)."""

    matrix: int
    range: int
    primaries: int
    trc: int
    rgb: bool  # an RGB pixel format: no matrix applies

    @classmethod
    def of(cls, frame_or_context, pix_fmt: str, height: int) -> "Colour":
        """The colour of a decoded frame (or a codec context), unspecified values resolved."""
        fmt = av.VideoFormat(pix_fmt)
        rgb = fmt.is_rgb
        matrix = int(frame_or_context.colorspace or UNSPECIFIED)
        if matrix not in _SWS_MATRIX:
            matrix = BT709 if height >= 720 else SMPTE170M
        rng = int(frame_or_context.color_range or 0)
        if rng not in (RANGE_LIMITED, RANGE_FULL):
            rng = RANGE_FULL if rgb or pix_fmt.startswith("yuvj") else RANGE_LIMITED
        return cls(matrix, rng, int(frame_or_context.color_primaries or UNSPECIFIED),
                   int(frame_or_context.color_trc or UNSPECIFIED), rgb)

    def tag(self, context) -> None:
        """Write this colour into an encoder's (or frame's) metadata."""
        if not self.rgb:
            context.colorspace = self.matrix
        context.color_range = self.range
        context.color_primaries = self.primaries
        context.color_trc = self.trc


def to_rgb(frame, colour: Colour) -> np.ndarray:
    """A decoded frame -> HxWx3 float32 RGB in [0, 1], HxWx4 RGBA where it has alpha (the
    runtime upscales alpha as it does an image's)."""
    target = _FLOAT_RGBA if has_alpha(frame.format.name) else _FLOAT_RGB
    if colour.rgb:
        converted = frame.reformat(format=target, interpolation=_interpolation(), threads=1)
    else:
        converted = frame.reformat(format=target, src_colorspace=_SWS_MATRIX[colour.matrix],
                                   src_color_range=colour.range, interpolation=_interpolation(), threads=1)
    return np.ascontiguousarray(converted.to_ndarray(), dtype=np.float32)


def from_rgb(rgb: np.ndarray, pix_fmt: str, colour: Colour):
    """HxWx3 float RGB or HxWx4 RGBA (clipped to [0, 1]) -> a VideoFrame in `pix_fmt`
    tagged with `colour` (alpha dropped where `pix_fmt` has none)."""
    pixels = np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)
    frame = av.VideoFrame.from_ndarray(pixels, format=_FLOAT_RGBA if pixels.shape[2] == 4 else _FLOAT_RGB)
    if colour.rgb:
        out = frame.reformat(format=pix_fmt, interpolation=_interpolation(), threads=1)
    else:
        out = frame.reformat(format=pix_fmt, dst_colorspace=_SWS_MATRIX[colour.matrix],
                             dst_color_range=colour.range, interpolation=_interpolation(), threads=1)
    colour.tag(out)
    return out
