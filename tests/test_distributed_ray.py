"""`run_images_ray` on a local Ray cluster (2 CPUs, loopback only) writes exactly the PNGs
the single-process `run_images` writes, and loses no image to another's failure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import png
import pytest
import torch
from PIL import Image

from conftest import shared_file
from srexport.errors import SrExportError
from srexport.export.build import export_bundle
from srexport.runtime.folder_run import run_images
from toymodels import BorderModel

SET14 = ("baboon", "bridge", "comic", "face")  # bridge is grayscale


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray instance: 2 CPU workers, bound to 127.0.0.1, shut down afterwards."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'sr-export[ray]')")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'ray[data]')")
    from srexport.distributed.ray_run import start_local_ray

    if ray.is_initialized():
        pytest.skip("Ray is already initialised in this process; these tests start their own local cluster")
    start_local_ray(num_cpus=2)
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def border_bundle(tmp_path_factory):
    """x2 toy whose noise input has a border: the noise crops must agree across workers."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("border") / "bundle"
    return export_bundle(BorderModel(), root, {"model": "border", "variant": "t", "scale": 2, "task": "sr"})


def _same_files(reference: Path, candidate: Path) -> list[str]:
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in candidate.iterdir()) == names, "the same files, and no temporary leftovers"
    for name in names:
        assert (candidate / name).read_bytes() == (reference / name).read_bytes(), f"{name} differs"
    return names


def _psnr(image: Image.Image, reference: Image.Image, shave: int = 4) -> float:
    a = np.asarray(image, np.float64)[shave:-shave, shave:-shave]
    b = np.asarray(reference.convert(image.mode), np.float64)[shave:-shave, shave:-shave]
    return float(10 * np.log10(255.0 ** 2 / np.mean((a - b) ** 2)))


def test_set14_folder_on_two_ray_workers_matches_the_single_process_bytes(local_ray, bundle_factory, tmp_path):
    from srexport.distributed.ray_run import ray_upscale

    weights = shared_file("weights", "pcarn", "PCARN-M-L1.pth")
    folder = tmp_path / "lr"
    folder.mkdir()
    for name in SET14:  # LR inputs as in the papers: the HR image bicubic-downscaled by 4
        hr = Image.open(shared_file("images", "CSet14", f"{name}.png"))
        hr.resize((hr.width // 4, hr.height // 4), Image.BICUBIC).save(folder / f"{name}.png")
    rgba = np.asarray(Image.open(folder / "face.png").convert("RGBA")).copy()
    rgba[..., 3] = np.linspace(0, 255, rgba.shape[1], dtype=np.uint8)[None, :]
    Image.fromarray(rgba[:50, :61]).save(folder / "face_alpha.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    inputs = sorted(folder.iterdir())
    bundle = bundle_factory("pcarn-m", None, 4, weights).root
    options = dict(patch=48, overlap=12, batch=2)  # several batches per image: patch-level work

    single_errors: list[str] = []
    assert run_images(bundle, inputs, tmp_path / "single", quiet=True, report_error=single_errors.append,
                      **options) == 1
    errors: list[str] = []
    report = ray_upscale(bundle, inputs, tmp_path / "ray", workers=2, quiet=True, report_error=errors.append,
                         **options)

    assert report.failures == 1 and errors == single_errors, "one line for the broken image, as run_images"
    assert len(errors) == 1 and "broken.png" in errors[0] and "\n" not in errors[0]
    written = _same_files(tmp_path / "single", tmp_path / "ray")
    assert written == sorted(f"{p.stem}.png" for p in inputs if p.name != "broken.png")
    assert Image.open(tmp_path / "ray" / "bridge.png").mode == "L"
    # x4 of each LR input, and as close to the HR picture as bicubic is (within 1 dB; PCARN-M
    # gains little on these LR inputs made with PIL's bicubic, comic is 0.06 dB below): a
    # misplaced or mis-blended tile, or a wrong scale, would cost many dB
    for name in SET14:
        hr = Image.open(shared_file("images", "CSet14", f"{name}.png"))
        sr = Image.open(tmp_path / "ray" / f"{name}.png")
        assert sr.size == (hr.width // 4 * 4, hr.height // 4 * 4)
        reference = hr.crop((0, 0, *sr.size))
        bicubic = Image.open(folder / f"{name}.png").resize(sr.size, Image.BICUBIC)
        assert _psnr(sr, reference) > _psnr(bicubic, reference) - 1.0, name
    assert Image.open(tmp_path / "ray" / "face_alpha.png").size == (61 * 4, 50 * 4)
    assert Image.open(tmp_path / "ray" / "face_alpha.png").mode == "RGBA"
    # Patch batches, not whole images, are dealt out: both workers ran some.
    assert report.workers == 2 and len(report.batches_by_worker) == 2, report.batches_by_worker
    # Workers open the backend `auto` picks on this machine, and say so.
    from machine import expected_auto_backend_without_tensorrt

    assert report.note.startswith(f"backend {expected_auto_backend_without_tensorrt('fp32', 'pcarn-m')} ")


def test_noise_fields_16_bit_gray_and_alpha_match_across_workers(local_ray, border_bundle, tmp_path):
    from srexport.distributed import run_images_ray

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(7)
    deep = (rng.random((23, 31, 3)) * 65535).astype(np.uint16)
    with open(folder / "deep16.png", "wb") as handle:
        png.Writer(31, 23, greyscale=False, bitdepth=16).write(handle, deep.reshape(23, -1))
    Image.fromarray((rng.random((19, 26)) * 255).astype(np.uint8), "L").save(folder / "gray.png")
    Image.fromarray((rng.random((17, 40, 4)) * 255).astype(np.uint8), "RGBA").save(folder / "rgba.png")
    inputs = sorted(folder.iterdir())
    # Odd sizes, overlap, and a batch that does not divide the tile count (a short last batch).
    options = dict(patch=10, overlap=3, batch=3, noise=0.5, seed=11, window="bartlett")

    assert run_images(border_bundle.root, inputs, tmp_path / "single", quiet=True, **options) == 0
    assert run_images_ray(border_bundle.root, inputs, tmp_path / "ray", workers=2, quiet=True, **options) == 0
    _same_files(tmp_path / "single", tmp_path / "ray")
    assert png.Reader(filename=str(tmp_path / "ray" / "deep16.png")).asDirect()[3]["bitdepth"] == 16


def test_workers_that_cannot_open_the_bundle_fail_the_run_in_one_line(local_ray, border_bundle, tmp_path):
    from srexport.distributed import run_images_ray

    image = tmp_path / "one.png"
    Image.new("RGB", (9, 7), (10, 200, 30)).save(image)
    with pytest.raises(SrExportError, match="a Ray worker could not open the bundle:.*tensorrt") as info:
        run_images_ray(border_bundle.root, [image], tmp_path / "out", workers=1, backend="tensorrt", quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out" / "one.png").exists()


def test_more_workers_than_the_cluster_holds_is_refused_before_running(local_ray, border_bundle, tmp_path):
    from srexport.distributed import run_images_ray

    with pytest.raises(SrExportError, match="3 Ray workers need 3 CPUs; the cluster has 2"):
        run_images_ray(border_bundle.root, [tmp_path / "a.png"], tmp_path / "out", workers=3, quiet=True)


def test_bad_options_are_refused_before_any_cluster_starts(border_bundle, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'sr-export[ray]')")
    from srexport.distributed import run_images_ray

    with pytest.raises(SrExportError, match="unknown window"):
        run_images_ray(border_bundle.root, [tmp_path / "a.png"], tmp_path / "out", window="kaiser")
    with pytest.raises(SrExportError, match="no input images"):
        run_images_ray(border_bundle.root, [], tmp_path / "out")


def test_without_ray_the_error_is_one_line_with_the_install_hint(monkeypatch, tmp_path):
    from srexport.distributed import run_images_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(SrExportError, match=r"pip install 'sr-export\[ray\]'") as info:
        run_images_ray(tmp_path / "bundle", [tmp_path / "a.png"], tmp_path / "out")
    assert "\n" not in str(info.value)


RAY_DATA_THREADS = ("iter_threaded", "map_tp_", "StreamingExecutor")  # Ray Data 2.x iterator threads


def test_a_stop_between_rows_leaves_no_ray_data_thread_running(local_ray, border_bundle, tmp_path):
    """Ctrl-C while the driver handles a row (here: while it reports a broken image), not
    inside Ray's own calls, stops the run with nothing of Ray Data's iterator left running,
    while the exception is still on its way out: a thread of it still calling into Ray when
    the driver's session then shuts Ray down ends the process (exit 1)."""
    import threading

    from srexport.distributed.ray_run import ray_upscale
    from srexport.errors import Interrupted

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "00_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rng = np.random.default_rng(0)
    for i in range(1, 12):
        Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")

    def ctrl_c_while_reporting(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted, match=r"interrupted by SIGINT: 0 of 12 images written") as stopped:
        ray_upscale(border_bundle.root, sorted(folder.iterdir()), tmp_path / "out", workers=1, quiet=True,
                    backend="onnxruntime", patch=8, overlap=2, report_error=ctrl_c_while_reporting)
    alive = [t.name for t in threading.enumerate() if t.name.startswith(RAY_DATA_THREADS)]
    assert stopped.value.code == 130
    assert alive == []
