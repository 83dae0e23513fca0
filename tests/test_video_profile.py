"""`sr-export profile BUNDLE --video clip`: fps end to end and alone, and the UHD question."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("av")

from cli_helpers import assert_one_error_line, run_cli  # noqa: E402
from video_clips import make_clip  # noqa: E402


@pytest.fixture(scope="module")
def pcarn(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


def test_profile_video_reports_fps_and_answers_the_uhd_question(pcarn, tmp_path, capsys):
    clip = make_clip(tmp_path / "clip.mp4", frames=10, width=32, height=24)
    report = tmp_path / "video.json"
    code, out, err = run_cli(capsys, "profile", pcarn, "--video", clip, "--video-frames", "6",
                             "--backend", "onnxruntime", "--json", report)
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["end_to_end"]["frames"] == data["inference"]["frames"] == 6
    assert data["end_to_end"]["input_size"] == [32, 24] and data["end_to_end"]["output_size"] == [64, 48]
    assert data["uhd"]["input_size"] == [1920, 1080] and data["uhd"]["output_size"] == [3840, 2160]
    for kind in ("end_to_end", "inference", "uhd"):
        rate = data[kind]
        assert rate["seconds"] > 0 and rate["fps"] == pytest.approx(rate["frames"] / rate["seconds"])
    assert data["streaming_ratio"] == pytest.approx(data["end_to_end"]["fps"] / data["inference"]["fps"])
    uhd_fps = data["uhd"]["frames"] / data["uhd"]["seconds"]
    assert [a["target_fps"] for a in data["realtime"]] == [24, 30, 60]
    for answer in data["realtime"]:
        assert answer["meets"] == (uhd_fps >= answer["target_fps"])
        assert answer["factor"] == pytest.approx(uhd_fps / answer["target_fps"])
    assert "real time at UHD: 24 fps:" in out and "fps end to end" in out


def test_profile_video_bad_input_is_one_line(pcarn, tmp_path, capsys):
    code, _out, err = run_cli(capsys, "profile", pcarn, "--video", tmp_path / "missing.mp4")
    assert_one_error_line(code, err, "no such file")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    code, _out, err = run_cli(capsys, "profile", pcarn, "--video", junk, "--backend", "onnxruntime")
    assert_one_error_line(code, err, "junk.mp4")
    code, _out, err = run_cli(capsys, "profile", pcarn, "--video", junk, "--video-frames", "0")
    assert_one_error_line(code, err, "--video-frames")
