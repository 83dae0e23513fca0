"""Video in, video out: frames equal the image runtime's, timestamps and audio survive."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

av = pytest.importorskip("av")

import srexport  # noqa: E402
from srexport.video import VideoOptions, upscale_video  # noqa: E402
from srexport.video.colour import Colour, to_rgb  # noqa: E402
from video_clips import (encode_reference, make_clip, packets, pattern, planes, stream_facts,  # noqa: E402
                         to_float_rgb, video_frames)

BT601, BT709, LIMITED, FULL = 6, 1, 1, 2


@pytest.fixture(scope="module")
def up(bundle_factory):
    bundle = bundle_factory("pcarn-m", None, 2)
    return srexport.load(bundle.root, backend="onnxruntime")


def assert_frames_equal_image_runtime(up, src, dst, pix_fmt, colorspace, color_range, first=0):
    """Every output frame's planes are exactly what the documented conversion makes of
    `up.upscale` on the same decoded input frame."""
    inputs = video_frames(src)[first:]
    outputs = video_frames(dst)
    assert len(outputs) <= len(inputs)
    for frame_in, frame_out in zip(inputs, outputs):
        assert frame_out.format.name == pix_fmt
        expected = encode_reference(up.upscale(to_float_rgb(frame_in, colorspace, color_range)), pix_fmt,
                                    colorspace, color_range)
        for got, want in zip(planes(frame_out), expected):
            np.testing.assert_array_equal(got, want)


def test_lossless_output_equals_per_frame_upscale(up, tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=8)
    dst = tmp_path / "out.mkv"
    result = up.upscale_video(src, dst, codec="ffv1")
    assert result.frames == 8 and result.codec == "ffv1"
    assert len(video_frames(dst)) == 8
    assert stream_facts(dst)["size"] == (64, 48)
    assert_frames_equal_image_runtime(up, src, dst, "yuv420p", BT601, LIMITED)


def test_timestamps_time_base_rate_and_audio_bytes_survive_mp4(up, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=12)
    dst = tmp_path / "out.mp4"
    up.upscale_video(src, dst)
    facts_in, facts_out = stream_facts(src), stream_facts(dst)
    assert facts_out["codec"] == "h264" and facts_out["pix_fmt"] == "yuv420p"
    assert facts_out["time_base"] == facts_in["time_base"] and facts_out["rate"] == facts_in["rate"]
    assert facts_out["kinds"] == ["video", "audio"]
    assert [f.pts for f in video_frames(dst)] == [f.pts for f in video_frames(src)]
    assert [f.duration for f in video_frames(dst)] == [f.duration for f in video_frames(src)]
    audio_in, audio_out = packets(src, "audio"), packets(dst, "audio")
    assert len(audio_in) > 10
    assert audio_out == audio_in  # same timestamps, byte-identical payloads


def test_x264_output_is_the_same_bytes_run_after_run(up, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=24, audio=False)
    outputs = []
    for k in range(4):
        dst = tmp_path / f"out{k}.mp4"
        up.upscale_video(src, dst, chunk_frames=7)  # chunk ends as well as the stream's end
        with av.open(str(dst)) as container:
            outputs.append([bytes(p) for p in container.demux(video=0) if p.size])
    assert len(outputs[0]) == 24
    assert all(out == outputs[0] for out in outputs[1:])


def test_variable_frame_rate_keeps_every_timestamp(up, tmp_path):
    pts = [0, 40, 90, 100, 180, 185, 260, 400, 410, 500]
    src = make_clip(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, time_base=Fraction(1, 1000),
                    codec="ffv1", audio=True)
    dst = tmp_path / "vfr_x2.mkv"
    up.upscale_video(src, dst, codec="ffv1")
    assert [f.pts for f in video_frames(src)] == pts
    assert [f.pts for f in video_frames(dst)] == pts
    assert stream_facts(dst)["time_base"] == Fraction(1, 1000)
    assert packets(dst, "audio") == packets(src, "audio")


def test_ten_bit_stays_ten_bit(up, tmp_path):
    src = make_clip(tmp_path / "ten.mkv", frames=4, pix_fmt="yuv420p10le", colorspace=9, audio=False,
                    codec="ffv1")
    dst = tmp_path / "ten_x2.mkv"
    up.upscale_video(src, dst, codec="ffv1")
    assert stream_facts(dst)["pix_fmt"] == "yuv420p10le"
    assert stream_facts(dst)["colorspace"] == 9
    assert_frames_equal_image_runtime(up, src, dst, "yuv420p10le", 9, LIMITED)
    luma = planes(video_frames(dst)[0])[0]
    assert luma.max() > 255  # 10-bit code values, not 8-bit ones
    assert len(np.unique(luma % 4)) == 4  # the two low bits are used: no 8-bit step in between


def test_default_codec_keeps_ten_bit_h264(up, tmp_path):
    src = make_clip(tmp_path / "ten.mp4", frames=4, pix_fmt="yuv420p10le", audio=False)
    dst = tmp_path / "ten_x2.mp4"
    result = up.upscale_video(src, dst)
    assert (result.codec, result.pix_fmt) == ("libx264", "yuv420p10le")
    assert stream_facts(dst)["pix_fmt"] == "yuv420p10le"


@pytest.mark.parametrize("colorspace, color_range, pix_fmt", [
    (BT709, LIMITED, "yuv444p"), (BT601, LIMITED, "yuv444p"), (BT709, FULL, "yuvj444p"),
    (BT601, FULL, "yuv444p16le"),
])
def test_decoding_applies_the_stream_matrix_and_range(tmp_path, colorspace, color_range, pix_fmt):
    """Against the matrices of ITU-R BT.709/BT.601 written out here, on 4:4:4 (no chroma filter)."""
    codec = "libx264" if pix_fmt.startswith("yuvj") else "ffv1"  # FFV1 takes no yuvj formats
    src = make_clip(tmp_path / "c.mkv", frames=1, pix_fmt=pix_fmt, colorspace=colorspace, color_range=color_range,
                    codec=codec, audio=False, options={"qp": "0"} if codec == "libx264" else None)
    frame = video_frames(src)[0]
    colour = Colour.of(frame, frame.format.name, frame.height)
    assert (colour.matrix, colour.range) == (colorspace, color_range)
    got = to_rgb(frame, colour)
    bits = 16 if "16" in pix_fmt else 8
    y, cb, cr = (p.astype(np.float64) for p in planes(frame))
    peak = 2**bits - 1
    if color_range == LIMITED:
        scale = 2 ** (bits - 8)
        yn, cbn, crn = (y - 16 * scale) / (219 * scale), (cb - 128 * scale) / (224 * scale), (cr - 128 * scale) / (224 * scale)
    else:
        half = 2 ** (bits - 1)
        yn, cbn, crn = y / peak, (cb - half) / peak, (cr - half) / peak
    kr, kb = (0.2126, 0.0722) if colorspace == BT709 else (0.299, 0.114)
    kg = 1 - kr - kb
    r = yn + 2 * (1 - kr) * crn
    b = yn + 2 * (1 - kb) * cbn
    g = (yn - kr * r - kb * b) / kg
    want = np.clip(np.stack([r, g, b], -1), 0, 1)
    np.testing.assert_allclose(got, want, atol=2.5 / 255)
    # and the pattern the clip was made from comes back (lossy only by quantisation)
    np.testing.assert_allclose(got, pattern(0, 24, 32), atol=6 / 255)


def test_unspecified_colour_is_read_as_bt601_below_720_lines_and_tagged(up, tmp_path):
    src = make_clip(tmp_path / "u.mkv", frames=2, colorspace=2, color_range=0, codec="ffv1", audio=False)
    dst = tmp_path / "u_x2.mkv"
    up.upscale_video(src, dst, codec="ffv1")
    facts = stream_facts(dst)
    assert (facts["colorspace"], facts["color_range"]) == (BT601, LIMITED)
    assert_frames_equal_image_runtime(up, src, dst, "yuv420p", BT601, LIMITED)


def test_frame_range_is_those_frames_shifted_to_zero(up, tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=10, codec="ffv1")
    dst = tmp_path / "part.mkv"
    result = up.upscale_video(src, dst, codec="ffv1", frames="3:7")
    assert result.frames == 4
    pts_in = [f.pts for f in video_frames(src)]
    assert [f.pts for f in video_frames(dst)] == [p - pts_in[3] for p in pts_in[3:7]]
    assert_frames_equal_image_runtime(up, src, dst, "yuv420p", BT601, LIMITED, first=3)
    start, stop = pts_in[3] / 1000, pts_in[7] / 1000  # Matroska: 1 ms
    kept = [(p, b) for p, b in packets(src, "audio") if start <= p / 1000 < stop]
    assert packets(dst, "audio") == [(p - pts_in[3], b) for p, b in kept] and kept


def test_upscale_frames_yields_in_order_and_pulls_lazily(up):
    pulled = []

    def frames():
        for i in range(40):
            pulled.append(i)
            yield (pattern(i, 24, 32) * 255).astype(np.uint8)

    results = up.upscale_frames(frames(), depth=2)
    first = next(results)
    assert len(pulled) <= 2 * 2 + 3  # bounded: the queues, not the whole input
    np.testing.assert_array_equal(first, up.upscale((pattern(0, 24, 32) * 255).astype(np.uint8)))
    rest = list(results)
    assert len(rest) == 39
    for i in (1, 17, 39):
        np.testing.assert_array_equal(rest[i - 1], up.upscale((pattern(i, 24, 32) * 255).astype(np.uint8)))


def test_encoder_options_reach_the_stream(up, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=4, audio=False)
    lossless = tmp_path / "qp0.mp4"
    up.upscale_video(src, lossless, crf=0, preset="ultrafast", pix_fmt="yuv444p")
    assert stream_facts(lossless)["pix_fmt"] == "yuv444p"
    # libx264 at --crf 0 (8-bit) is lossless: the frames are the reference exactly
    assert_frames_equal_image_runtime(up, src, lossless, "yuv444p", BT601, LIMITED)
    small = tmp_path / "low.mp4"
    up.upscale_video(src, small, bitrate="20k")
    assert small.stat().st_size < lossless.stat().st_size


def test_video_options_reject_bad_values():
    from srexport.video import FrameRange, VideoError

    for text in ("5:2", "x:3", "1:2:3", "-1:4"):
        with pytest.raises(VideoError):
            FrameRange.parse(text)
    with pytest.raises(VideoError):
        VideoOptions(crf=18, bitrate="8M")
    with pytest.raises(VideoError):
        VideoOptions(bitrate="fast")
    assert FrameRange.parse("4:") == FrameRange(4, None) and FrameRange.parse(":9") == FrameRange(0, 9)


def test_module_function_matches_method(up, tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=3, codec="ffv1", audio=False)
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    up.upscale_video(src, a, codec="ffv1")
    upscale_video(up, src, b, VideoOptions(codec="ffv1"))
    for fa, fb in zip(video_frames(a), video_frames(b), strict=True):
        for pa, pb in zip(planes(fa), planes(fb)):
            np.testing.assert_array_equal(pa, pb)


def test_subtitles_are_copied_and_a_container_that_cannot_hold_them_is_refused(up, tmp_path):
    from srexport.video import VideoError

    src = make_clip(tmp_path / "subs.mkv", frames=7, codec="ffv1", subtitles=True)
    dst = tmp_path / "subs_x2.mkv"
    result = up.upscale_video(src, dst, codec="ffv1")
    assert result.copied_streams == 2
    cues = packets(src, "subtitles")
    assert [b for _, b in cues] == [b"cue 0", b"cue 3", b"cue 6"]
    assert packets(dst, "subtitles") == cues
    assert packets(dst, "audio") == packets(src, "audio")
    with pytest.raises(VideoError, match="cannot hold the input's subrip subtitle"):
        up.upscale_video(src, tmp_path / "subs_x2.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["subs.mkv", "subs_x2.mkv"]


def test_odd_sizes_stay_exact(up, tmp_path):
    src = make_clip(tmp_path / "odd.mkv", frames=3, width=31, height=23, pix_fmt="yuv444p", codec="ffv1",
                    audio=False)
    dst = tmp_path / "odd_x2.mkv"
    up.upscale_video(src, dst)  # FFV1 in, FFV1 out by default
    assert stream_facts(dst)["size"] == (62, 46) and stream_facts(dst)["codec"] == "ffv1"
    assert_frames_equal_image_runtime(up, src, dst, "yuv444p", BT601, LIMITED)


def test_codec_the_container_cannot_hold_falls_back_to_its_usual_one(up, tmp_path):
    src = make_clip(tmp_path / "in.mp4", frames=3, audio=False)
    dst = tmp_path / "out.webm"
    result = up.upscale_video(src, dst)
    assert result.codec == "libvpx-vp9"
    assert stream_facts(dst)["codec"] == "vp9" and len(video_frames(dst)) == 3


@pytest.mark.parametrize("suffix", ["mp4", "mov"])
def test_display_rotation_is_copied_and_the_stored_picture_upscaled_as_is(up, tmp_path, suffix):
    src = make_clip(tmp_path / f"in.{suffix}", frames=3, audio=False, rotation=90)
    assert video_frames(src)[0].rotation == 90
    dst = tmp_path / f"out.{suffix}"
    up.upscale_video(src, dst, crf=0)
    out = video_frames(dst)
    assert [f.rotation for f in out] == [90, 90, 90]
    assert (out[0].width, out[0].height) == (64, 48)  # stored 32x24 doubled, not turned
    plain = make_clip(tmp_path / f"plain.{suffix}", frames=1, audio=False)
    up.upscale_video(plain, tmp_path / f"plain_out.{suffix}", crf=0)
    assert video_frames(tmp_path / f"plain_out.{suffix}")[0].rotation == 0


def test_alpha_of_yuva_video_is_upscaled_as_the_image_runtime_upscales_alpha(up, tmp_path):
    src = tmp_path / "alpha.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 20, 14, "yuva420p"
        for i in range(3):
            rgba = np.concatenate([pattern(i, 14, 20), np.linspace(0, 1, 20, dtype=np.float32)[None, :, None]
                                   .repeat(14, 0) ** (i + 1)], axis=2)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgba), format="gbrapf32le")
            frame = frame.reformat(format="yuva420p", dst_colorspace=BT601, dst_color_range=LIMITED,
                                   interpolation=__import__("video_clips").FLAGS, threads=1)
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    dst = tmp_path / "alpha_x2.mkv"
    result = up.upscale_video(src, dst, codec="ffv1")
    assert result.pix_fmt == "yuva420p"
    inputs, outputs = video_frames(src), video_frames(dst)
    for frame_in, frame_out in zip(inputs, outputs, strict=True):
        rgba = to_float_rgb(frame_in, BT601, LIMITED, "gbrapf32le")
        assert rgba.shape == (14, 20, 4) and rgba[..., 3].min() < 0.1  # a real alpha ramp
        want = encode_reference(up.upscale(rgba), "yuva420p", BT601, LIMITED)
        got = planes(frame_out)
        assert len(got) == 4
        for plane, expected in zip(got, want):
            np.testing.assert_array_equal(plane, expected)
    warnings: list[str] = []
    dropped = upscale_video(up, src, tmp_path / "alpha_x2.mp4", VideoOptions(codec="libx264"), warn=warnings.append)
    assert dropped.pix_fmt == "yuv420p" and len(warnings) == 1 and warnings[0].startswith("alpha dropped")
