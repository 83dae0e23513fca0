"""A video split at keyframes across 2 Ray workers (a local cluster, loopback only): the same
video packets, bytes and timestamps, as the single-process run, the copied streams intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

import srexport  # noqa: E402
from cli_helpers import assert_one_error_line, run_cli  # noqa: E402
from conftest import REPO  # noqa: E402
from srexport.export.build import export_bundle  # noqa: E402
from srexport.runtime.backends.selection import available_backends  # noqa: E402
from srexport.video import VideoOptions, frame_seed, upscale_video  # noqa: E402
from toymodels import BorderModel  # noqa: E402
from video_clips import encode_reference, make_clip, packets, planes, to_float_rgb, video_frames  # noqa: E402

BT601, LIMITED = 6, 1


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray instance: 2 CPU workers, bound to 127.0.0.1, shut down afterwards."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'sr-export[ray]')")
    from srexport.distributed.ray_run import start_local_ray

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process; these tests start their own local cluster")
    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def pcarn(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


@pytest.fixture(scope="module")
def border(tmp_path_factory):
    """x2 toy with a noise input: per-frame seeds must follow the frame's index in the video."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("border") / "bundle"
    return export_bundle(BorderModel(), root, {"model": "border", "variant": "t", "scale": 2, "task": "sr"}).root


def video_packets(path) -> list[tuple]:
    """(pts, dts, keyframe, bytes) of every video packet, in file order."""
    with av.open(str(path)) as container:
        return [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in container.demux(video=0) if p.size]


def input_keyframes(path) -> tuple[list[int], set[int]]:
    """The input's frame timestamps (presentation order) and its keyframes', from its packets."""
    rows = [(p.pts, p.is_keyframe) for p in av.open(str(path)).demux(video=0) if p.size]
    return sorted(pts for pts, _ in rows), {pts for pts, key in rows if key}


def expected_chunks(pts: list[int], keys: set[int], start: int, stop: int, gap: int) -> list[int]:
    """The documented rule: a chunk at the first frame, then at each keyframe >= gap frames on."""
    starts = [start]
    for i in range(start + 1, stop):
        if pts[i] in keys and i - starts[-1] >= gap:
            starts.append(i)
    return starts


def run_both(bundle, src, tmp_path, suffix, options: VideoOptions, **load):
    from srexport.distributed.ray_video import ray_upscale_video

    single = tmp_path / f"single.{suffix}"
    upscale_video(srexport.load(bundle, backend="onnxruntime", **load), src, single, options)
    split = tmp_path / f"ray.{suffix}"
    report = ray_upscale_video(bundle, src, split, options, workers=2, backend="onnxruntime", **load)
    assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name) == []
    return single, split, report


def test_lossless_split_over_two_workers_equals_one_process_and_the_image_runtime(local_ray, pcarn, tmp_path):
    # Open GOPs (B-frames before a keyframe refer to the GOP before) every 6 frames, AAC, SubRip.
    src = make_clip(tmp_path / "in.mkv", frames=30, subtitles=True,
                    options={"x264-params": "keyint=6:min-keyint=6:scenecut=0:open-gop=1:bframes=2"})
    options = VideoOptions(codec="ffv1", chunk_frames=4)
    single, split, report = run_both(pcarn, src, tmp_path, "mkv", options)

    assert report.video.frames == 30 and report.segments >= 2
    assert len(report.segments_by_worker) == 2, report.segments_by_worker  # both workers ran segments
    assert video_packets(split) == video_packets(single)
    for kind in ("audio", "subtitles"):
        assert packets(split, kind) == packets(single, kind) == packets(src, kind)
    # Every frame is exactly the image runtime's upscale of the decoded input frame.
    up = srexport.load(pcarn, backend="onnxruntime")
    inputs, outputs = video_frames(src), video_frames(split)
    assert [f.pts for f in outputs] == [f.pts for f in inputs]
    for frame_in, frame_out in zip(inputs, outputs):
        want = encode_reference(up.upscale(to_float_rgb(frame_in, BT601, LIMITED)), "yuv420p", BT601, LIMITED)
        for got, expected in zip(planes(frame_out), want):
            np.testing.assert_array_equal(got, expected)


def test_x264_vfr_range_split_gives_the_same_packets_and_keyframes_at_chunk_starts(local_ray, pcarn, tmp_path):
    rng = np.random.default_rng(3)
    pts = np.cumsum(rng.integers(20, 70, size=40)).tolist()  # variable frame rate, milliseconds
    src = make_clip(tmp_path / "vfr.mp4", frames=40, pts=pts, time_base=Fraction(1, 1000),
                    options={"x264-params": "keyint=5:min-keyint=5:scenecut=0"})
    options = VideoOptions(chunk_frames=7, frames=srexport.video.FrameRange(3, 37))  # starts mid-GOP
    single, split, report = run_both(pcarn, src, tmp_path, "mp4", options)

    assert report.video.codec == "libx264" and report.video.frames == 34 and report.segments >= 2
    assert video_packets(split) == video_packets(single)
    assert packets(split, "audio") == packets(single, "audio")
    frame_pts, keys = input_keyframes(src)
    starts = expected_chunks(frame_pts, keys, 3, 37, 7)
    assert len(starts) >= 3
    out_keys = sorted(pts for pts, _dts, key, _ in video_packets(split) if key)
    # Each chunk opens with a keyframe (x264 adds none of its own within 5..7 frames here).
    assert set(frame_pts[i] - frame_pts[3] for i in starts) <= set(out_keys)
    assert [f.pts for f in video_frames(split)] == [p - frame_pts[3] for p in frame_pts[3:37]]


def test_noise_seeds_follow_the_frame_index_in_the_whole_video(local_ray, border, tmp_path):
    src = make_clip(tmp_path / "in.mkv", frames=12, width=20, height=14, audio=False,
                    options={"x264-params": "keyint=3:min-keyint=3:scenecut=0"})
    options = VideoOptions(codec="ffv1", chunk_frames=3)
    single, split, report = run_both(border, src, tmp_path, "mkv", options, noise=0.5, seed=5, patch=8, overlap=2)
    assert report.segments >= 2
    assert video_packets(split) == video_packets(single)
    inputs, outputs = video_frames(src), video_frames(split)
    for k in (0, 7, 11):
        runtime = srexport.load(border, backend="onnxruntime", noise=0.5, seed=frame_seed(5, k), patch=8, overlap=2)
        want = encode_reference(runtime.upscale(to_float_rgb(inputs[k], BT601, LIMITED)), "yuv420p", BT601, LIMITED)
        for got, expected in zip(planes(outputs[k]), want):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(not available_backends()["openvino"], reason="openvino is not installed; CI installs it")
def test_precision_auto_gives_ray_video_the_graph_the_single_process_video_runs(local_ray, tmp_path, monkeypatch):
    """On a BF16 CPU (the library's machine record stands in on the driver, which resolves
    "auto" for every worker), a mixed int8 + bf16 bundle runs bf16 for images and int8 for
    frame streams; a Ray video must run int8 too, giving the single-process video's packets."""
    from srexport.distributed.ray_video import ray_upscale_video
    from srexport.runtime.backends import precision_auto as pa
    from test_precision_auto import AMX, as_mixed_int8_bundle, machine, tiny_int8_bundle

    bundle = as_mixed_int8_bundle(tiny_int8_bundle(tmp_path / "build"), tmp_path / "mixed")
    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend, **AMX))
    src = make_clip(tmp_path / "in.mkv", frames=9, width=20, height=14, audio=False,
                    options={"x264-params": "keyint=3:min-keyint=3:scenecut=0"})
    options = VideoOptions(codec="ffv1", chunk_frames=3)
    runs = {}
    for precision in ("int8", "fp32"):
        runs[precision] = tmp_path / f"{precision}.mkv"
        upscale_video(srexport.load(bundle, backend="openvino", precision=precision), src, runs[precision], options)
    split = tmp_path / "ray.mkv"
    report = ray_upscale_video(bundle, src, split, options, workers=2, backend="openvino")
    assert report.segments >= 2
    assert video_packets(runs["int8"]) != video_packets(runs["fp32"])  # the two graphs can be told apart
    assert video_packets(split) == video_packets(runs["int8"])
    assert "precision auto: int8" in report.note and "frames of one size" in report.note


def test_cli_ray_video_and_bad_input_in_one_line(local_ray, pcarn, tmp_path, capsys):
    src = make_clip(tmp_path / "clip.mp4", frames=8)
    dst = tmp_path / "clip_x2.mp4"
    code, out, err = run_cli(capsys, "run", pcarn, src, "-o", dst, "--ray", "--ray-workers", "2",
                             "--backend", "onnxruntime")
    assert code == 0, err
    assert "ray: 2 workers" in out and "8 frames" in out
    assert packets(dst, "audio") == packets(src, "audio")
    whole = make_clip(tmp_path / "whole.mkv", frames=10, codec="ffv1").read_bytes()
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(whole[: len(whole) // 2])
    code, _, err = run_cli(capsys, "run", pcarn, bad, "-o", tmp_path / "bad_x2.mkv", "--ray", "-q")
    assert_one_error_line(code, err, "damaged or truncated")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mkv", "clip.mp4", "clip_x2.mp4", "whole.mkv"]


def test_sigint_keeps_a_playable_prefix_of_whole_segments_and_exits_130(pcarn, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'sr-export[ray]')")
    frames = 1200
    src = make_clip(tmp_path / "long.mkv", frames=frames, codec="ffv1")  # every frame a keyframe
    dst = tmp_path / "long_x2.mkv"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "srexport.cli", "run", str(pcarn), str(src), "-o", str(dst), "--codec", "ffv1",
         "--backend", "onnxruntime", "--ray", "--ray-workers", "2", "-q"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def muxed() -> int:  # bytes in the temporary output: > 64 KiB once a segment is in
        return sum(p.stat().st_size for p in tmp_path.iterdir() if ".part" in p.name)

    deadline = time.monotonic() + 240
    while muxed() < 65536 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode() and "playable" in err.decode()
    assert sorted(p.name for p in tmp_path.iterdir() if ".part" in p.name) == []
    done = video_frames(dst)  # decodes: trailer and index were written
    assert 0 < len(done) < frames
    assert [f.pts for f in done] == [f.pts for f in video_frames(src)[: len(done)]]
    audio = packets(dst, "audio")
    assert audio and audio == packets(src, "audio")[: len(audio)]
