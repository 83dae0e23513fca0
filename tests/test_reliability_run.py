"""Folder jobs: no output onto an input, signals stop a run cleanly, stale temporaries go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli
from conftest import REPO
from reliability_helpers import assert_one_line, tree_snapshot, write_png


@pytest.fixture(scope="module")
def pcarn_x2(bundle_factory):
    return bundle_factory("pcarn-m", None, 2).root


# -- no output onto an input --------------------------------------------------------------
def test_output_dot_in_the_input_folder_is_refused(pcarn_x2, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "dir"
    write_png(folder / "small.png")
    before = tree_snapshot(folder)
    monkeypatch.chdir(folder)
    line = assert_one_line(*run_cli(capsys, "run", pcarn_x2, "small.png", "-o", "."))
    assert "overwrite the input" in line and "small.png" in line
    assert tree_snapshot(folder) == before


def test_output_file_equal_to_the_input_is_refused(pcarn_x2, tmp_path, capsys):
    src = write_png(tmp_path / "in.png")
    before = src.read_bytes()
    assert "overwrite the input" in assert_one_line(*run_cli(capsys, "run", pcarn_x2, src, "-o", src))
    assert src.read_bytes() == before


def test_output_folder_equal_to_the_input_folder_is_refused(pcarn_x2, tmp_path, capsys):
    folder = tmp_path / "photos"
    for i in range(3):
        write_png(folder / f"p{i}.png", seed=i)
    before = tree_snapshot(folder)
    assert_one_line(*run_cli(capsys, "run", pcarn_x2, folder, "-o", folder))
    assert tree_snapshot(folder) == before


def test_output_reaching_the_input_through_a_link_is_refused(pcarn_x2, tmp_path, capsys):
    src = write_png(tmp_path / "in.png")
    (tmp_path / "alias").symlink_to(tmp_path)
    os.link(src, tmp_path / "hard.png")
    before = src.read_bytes()
    for output in (tmp_path / "alias" / "in.png", tmp_path / "hard.png"):
        assert_one_line(*run_cli(capsys, "run", pcarn_x2, src, "-o", output))
    assert src.read_bytes() == before


def test_same_folder_without_a_name_collision_is_allowed(pcarn_x2, tmp_path, capsys):
    """photo.jpg -> photo.png in the same folder overwrites nothing."""
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(folder / "photo.jpg")
    code, _, err = run_cli(capsys, "run", pcarn_x2, folder / "photo.jpg", "-o", folder, "--quiet")
    assert code == 0, err
    assert Image.open(folder / "photo.png").size == (24, 20)


def test_stale_part_of_a_killed_run_is_removed(pcarn_x2, tmp_path, capsys):
    src = write_png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".a.png.k1ll3d.part"
    stale.write_bytes(b"\x89PNG half")
    unrelated = out / ".other.png.x.part"
    unrelated.write_bytes(b"not ours")
    code, _, err = run_cli(capsys, "run", pcarn_x2, src, "-o", out, "--quiet")
    assert code == 0, err
    assert not stale.exists() and unrelated.exists()
    assert sorted(p.name for p in out.iterdir()) == [".other.png.x.part", "a.png"]


# -- signals ------------------------------------------------------------------------------
N_IMAGES = 20
SIZE = 48


def _start(pcarn_x2, folder: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "srexport.cli", "run", str(pcarn_x2), str(folder), "-o", str(out),
               "--patch", "8", "--overlap", "2", "--quiet", "--backend", "onnxruntime"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_stop_right_after_a_rename_counts_that_image(pcarn_x2, tmp_path, monkeypatch):
    """A signal can land after an output's atomic rename and before the loop moves on: the
    line still counts what the folder holds. An earlier output overwritten counts, one
    left from before the run does not."""
    from srexport.errors import Interrupted
    from srexport.runtime import folder_run
    from srexport.runtime.imageio import write_png as real_write_png

    folder, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        write_png(folder / f"img{i}.png", SIZE, SIZE, seed=i)
    out.mkdir()
    (out / "img0.png").write_bytes(b"an output of an earlier run")
    (out / "img2.png").write_bytes(b"an output of an earlier run")
    calls = []

    def write_then_stop(dst, *args):
        real_write_png(dst, *args)
        calls.append(dst)
        if len(calls) == 2:
            raise folder_run.Stop(signal.SIGTERM)

    monkeypatch.setattr(folder_run, "write_png", write_then_stop)
    inputs = sorted(folder.iterdir())
    with pytest.raises(Interrupted) as info:
        folder_run.run_images(pcarn_x2, inputs, out, quiet=True, backend="onnxruntime")
    assert str(info.value).startswith(f"interrupted by SIGTERM: 2 of 3 images written to {out}")
    assert info.value.code == 143
    assert (out / "img2.png").read_bytes() == b"an output of an earlier run"


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, name", [
    (signal.SIGINT, 130, "SIGINT"), (signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP"),
])
def test_signal_stops_a_folder_run_cleanly(sig, code, name, pcarn_x2, tmp_path):
    folder = tmp_path / "in"
    for i in range(N_IMAGES):
        write_png(folder / f"img{i:02d}.png", SIZE, SIZE, seed=i)
    inputs_before = tree_snapshot(folder)
    out = tmp_path / "out"
    proc = _start(pcarn_x2, folder, out)
    deadline = time.monotonic() + 120
    while not (out.is_dir() and any(p.suffix == ".png" and not p.name.startswith(".") for p in out.iterdir())):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run wrote nothing in 120 s"
        time.sleep(0.05)
    proc.send_signal(sig)
    sent = time.monotonic()
    stdout, stderr = proc.communicate(timeout=60)
    stopped_after = time.monotonic() - sent
    assert proc.returncode == code, stderr
    assert "Traceback" not in stdout + stderr
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    written = sorted(p for p in out.iterdir())
    assert all(not p.name.startswith(".") and p.suffix == ".png" for p in written), written
    assert 1 <= len(written) < N_IMAGES
    assert f"interrupted by {name}: {len(written)} of {N_IMAGES} images written" in lines[0]
    for path in written:  # each complete: decodes fully at the x2 size
        with Image.open(path) as img:
            img.load()
            assert img.size == (2 * SIZE, 2 * SIZE)
    assert tree_snapshot(folder) == inputs_before
    # A 48x48 image in 8x8 patches is ~50 patches of well under 0.1 s each on this CPU;
    # the generous bound only catches a run that ignores the signal until the folder ends.
    assert stopped_after < 30


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signal_stops_a_ray_folder_run_cleanly(sig, code, name, pcarn_x2, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'sr-export[ray]'); CI installs it")
    folder = tmp_path / "in"
    for i in range(N_IMAGES):
        write_png(folder / f"img{i:02d}.png", SIZE, SIZE, seed=i)
    inputs_before = tree_snapshot(folder)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "srexport.cli", "run", str(pcarn_x2), str(folder), "-o", str(out),
               "--patch", "8", "--overlap", "2", "--quiet", "--backend", "onnxruntime", "--ray", "--ray-workers", "1"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not (out.is_dir() and any(p.suffix == ".png" and not p.name.startswith(".") for p in out.iterdir())):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the Ray run wrote nothing in 180 s"
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stdout + stderr
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert len(lines) == 1, stderr
    written = sorted(out.iterdir())
    assert all(not p.name.startswith(".") and p.suffix == ".png" for p in written), written
    assert 1 <= len(written) < N_IMAGES
    assert f"interrupted by {name}: {len(written)} of {N_IMAGES} images written" in lines[0]
    for path in written:
        with Image.open(path) as img:
            img.load()
            assert img.size == (2 * SIZE, 2 * SIZE)
    assert tree_snapshot(folder) == inputs_before
