"""`sr-export run BUNDLE clip -o out`: success, bad input in one line, Ctrl-C/SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("av")

from cli_helpers import assert_one_error_line, run_cli  # noqa: E402
from conftest import REPO  # noqa: E402
from video_clips import make_clip, packets, stream_facts, video_frames  # noqa: E402


@pytest.fixture(scope="module")
def bundle(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


def test_run_writes_the_video_with_its_audio(bundle, tmp_path, capsys, no_openvino):
    src = make_clip(tmp_path / "clip.mp4", frames=6)
    dst = tmp_path / "clip_x2.mp4"
    code, out, err = run_cli(capsys, "run", bundle, src, "-o", dst, "--backend", "onnxruntime")
    assert code == 0, err
    assert "6 frames" in out and "128x96" not in out and "64x48" in out
    assert len(video_frames(dst)) == 6
    assert packets(dst, "audio") == packets(src, "audio")
    assert stream_facts(dst)["size"] == (64, 48)


def _damaged(tmp_path, kind: str) -> bytes:
    if kind == "garbage":
        return b"\x00\x01garbage" * 300
    suffix = "mp4" if kind == "mp4-cut" else "mkv"
    whole = bytearray(make_clip(tmp_path / f"whole.{suffix}", frames=10, codec="libx264" if suffix == "mp4" else "ffv1")
                      .read_bytes())
    if kind == "mkv-flipped":  # bytes in the middle overwritten
        third = len(whole) // 3
        whole[third:third + 400] = bytes(b ^ 0x5A for b in whole[third:third + 400])
        return bytes(whole)
    return bytes(whole[: len(whole) // 2])  # cut in half: an MP4 loses its index, a Matroska its end


@pytest.mark.parametrize("kind, fragment", [
    ("garbage", "not a readable video"),
    ("mp4-cut", "not a readable video"),
    ("mkv-cut", "damaged or truncated"),
    ("mkv-flipped", "bad.mkv"),
])
def test_corrupt_or_truncated_input_is_one_line_and_nothing_written(bundle, tmp_path, capsys, kind, fragment):
    bad = tmp_path / ("bad.mp4" if kind.startswith(("garbage", "mp4")) else "bad.mkv")
    bad.write_bytes(_damaged(tmp_path, kind))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, _, err = run_cli(capsys, "run", bundle, bad, "-o", out_dir / f"bad_x2{bad.suffix}", "-q",
                           "--backend", "onnxruntime")
    assert_one_error_line(code, err, bad.name, fragment)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("args, fragment", [
    (["--codec", "ffv1", "--crf", "10"], "takes no --crf"),
    (["--pix-fmt", "rgb24"], "--pix-fmt rgb24"),
    (["--codec", "nonesuch"], "no such encoder"),
    (["--frames", "4:2"], "--frames"),
    (["--crf", "18", "--bitrate", "2M"], "exclude each other"),
])
def test_bad_video_options_are_one_line(bundle, tmp_path, capsys, args, fragment):
    src = make_clip(tmp_path / "clip.mkv", frames=2, audio=False, codec="ffv1")
    code, _, err = run_cli(capsys, "run", bundle, src, "-o", tmp_path / "o.mkv", "-q", *args)
    assert_one_error_line(code, err, fragment)
    assert not (tmp_path / "o.mkv").exists() and _leftovers(tmp_path) == []


def test_output_must_be_a_video(bundle, tmp_path, capsys):
    src = make_clip(tmp_path / "clip.mkv", frames=2, audio=False, codec="ffv1")
    code, _, err = run_cli(capsys, "run", bundle, src, "-o", tmp_path / "o.png", "-q")
    assert_one_error_line(code, err, "must be a video file")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_a_playable_file_and_exits_130(bundle, tmp_path, signum):
    frames = 600
    src = make_clip(tmp_path / "long.mkv", frames=frames, codec="ffv1")
    dst = tmp_path / "long_x2.mkv"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "srexport.cli", "run", str(bundle), str(src), "-o", str(dst), "--codec", "ffv1",
         "--backend", "onnxruntime", "-q"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _leftovers(tmp_path) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # some frames are encoded
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert "interrupted" in err.decode()
    assert _leftovers(tmp_path) == []
    done = video_frames(dst)  # decodes: trailer and index were written
    assert 0 < len(done) < frames
    assert [f.pts for f in done] == [f.pts for f in video_frames(src)[: len(done)]]
    assert stream_facts(dst)["kinds"] == ["video", "audio"]
