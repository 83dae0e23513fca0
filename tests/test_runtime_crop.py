"""Crop stitching, pad_align and the box-weight GPU form against untiled references
(DESIGN.md, "Tiling and stitching")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srexport.export.build import export_bundle
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.pipeline import CropStitcher, box_windows
from srexport.runtime.tiler import plan_crop
from srexport.runtime.upscaler import Upscaler
from toymodels import ConvStack


def _bundle(tmp_path_factory, name, model):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp(name) / "bundle"
    return model, export_bundle(model, root, {"model": name, "variant": "t", "scale": 2, "task": "sr"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    model, bundle = _bundle(tmp_path_factory, "stack", ConvStack(depth=4))
    return model, bundle, OrtSession(bundle, threads=1)


def _reference(model, planes):
    with torch.no_grad():
        return model(torch.from_numpy(planes)[None])[0].numpy()


def test_crop_plan_owns_every_pixel_once_a_halo_inside():
    rules = ConvStack(depth=5).shape_rules()
    for height, width, patch in ((100, 37, 20), (11, 64, 11), (57, 57, 12), (30, 200, 31)):
        plan = plan_crop(height, width, (patch, patch), rules)
        count = np.zeros(plan.padded_size, np.int32)
        for (top, left), (y0, y1, x0, x1) in zip(plan.tiles, plan.owned):
            count[y0:y1, x0:x1] += 1
            # owned pixels are >= halo from every tile edge that is not an image edge
            assert top == 0 or y0 - top >= rules.halo
            assert left == 0 or x0 - left >= rules.halo
            assert top + plan.patch_h == plan.padded_size[0] or top + plan.patch_h - y1 >= rules.halo
            assert left + plan.patch_w == plan.padded_size[1] or left + plan.patch_w - x1 >= rules.halo
        assert (count == 1).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 70), width=st.integers(1, 70), patch=st.integers(9, 40), batch=st.integers(1, 4))
def test_crop_stitched_equals_untiled(stack, height, width, patch, batch):
    model, bundle, session = stack
    planes = np.random.default_rng(height * 100 + width).random((3, height, width), dtype=np.float32)
    up = Upscaler(bundle, session, patch=(patch, patch), batch=batch, stitch="crop")
    assert up.plan(height, width).owned  # crop stitching, not blending
    np.testing.assert_allclose(up.upscale_planes(planes), _reference(model, planes), atol=2e-6)


def test_a_lone_tile_is_the_result_without_a_copy():
    """One tile owns the whole image: the stitcher hands back that tile's output, cropped
    to the image where the plan padded it, sharing its memory (no canvas)."""
    from srexport.runtime.tiler import TilePlan

    plan = TilePlan(height=5, width=7, patch_h=8, patch_w=9, extra_h=3, extra_w=2, tiles=((0, 0),),
                    before_h=1, before_w=2, owned=((0, 8, 0, 9),))
    out = np.random.default_rng(0).random((3, 16, 18), dtype=np.float32)
    crop = CropStitcher(3, plan, 2)
    crop.add(out, 0)
    assert np.array_equal(crop.result(), out[:, 2:12, 4:18])
    assert np.shares_memory(crop.result(), out)


def test_several_tiles_fill_a_canvas_of_their_owned_rectangles():
    from srexport.runtime.tiler import TilePlan

    plan = TilePlan(height=4, width=6, patch_h=4, patch_w=4, extra_h=0, extra_w=0, tiles=((0, 0), (0, 2)),
                    owned=((0, 4, 0, 3), (0, 4, 3, 6)))
    left, right = np.full((3, 4, 4), 1.0, np.float32), np.full((3, 4, 4), 2.0, np.float32)
    crop = CropStitcher(3, plan, 1)
    crop.add(left, 0)
    crop.add(right, 1)
    expected = np.concatenate([np.full((3, 4, 3), 1.0), np.full((3, 4, 3), 2.0)], axis=2)
    assert np.array_equal(crop.result(), expected)
    assert not np.shares_memory(crop.result(), left) and not np.shares_memory(crop.result(), right)


def test_blending_the_same_tiles_is_not_exact(stack):
    """The property above can fail: blending with a small overlap leaves seams."""
    model, bundle, session = stack
    planes = np.random.default_rng(1).random((3, 60, 60), dtype=np.float32)
    blended = Upscaler(bundle, session, patch=(20, 20), overlap=2, stitch="blend").upscale_planes(planes)
    assert np.abs(blended - _reference(model, planes)).max() > 1e-3


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(20, 90), width=st.integers(20, 90), memory_mb=st.integers(1, 40), batch=st.integers(1, 3))
def test_auto_patch_under_any_budget_equals_untiled(stack, height, width, memory_mb, batch):
    model, bundle, session = stack
    planes = np.random.default_rng(height + 7 * width).random((3, height, width), dtype=np.float32)
    up = Upscaler(bundle, session, patch="auto", batch=batch, memory=memory_mb / 1024)
    np.testing.assert_allclose(up.upscale_planes(planes), _reference(model, planes), atol=2e-6)


def test_auto_patch_runs_an_image_that_fits_whole_at_its_own_size(stack):
    _, bundle, session = stack
    up = Upscaler(bundle, session, patch="auto", memory=1.0)
    plan = up.plan(37, 53)
    assert (plan.patch_h, plan.patch_w, len(plan.tiles), plan.extra_h, plan.extra_w) == (37, 53, 1, 0, 0)
    small = Upscaler(bundle, session, patch="auto", memory=2 / 1024)
    assert len(small.plan(300, 300).tiles) > 1


@pytest.mark.parametrize("align", ["split", "end"])
def test_pad_align_places_the_padding_and_crops_the_same_way(tmp_path_factory, align):
    model, bundle = _bundle(tmp_path_factory, f"align-{align}", ConvStack(depth=2, multiple_of=8, pad_align=align))
    session = OrtSession(bundle, threads=1)
    planes = np.random.default_rng(2).random((3, 19, 13), dtype=np.float32)  # legal: 24 x 16, d = 5 and 3
    before = {"split": (3, 2), "end": (0, 0)}[align]
    padded = np.pad(planes, ((0, 0), (before[0], 5 - before[0]), (before[1], 3 - before[1])), mode="reflect")
    full = _reference(model, padded)
    expected = full[:, 2 * before[0] : 2 * (before[0] + 19), 2 * before[1] : 2 * (before[1] + 13)]
    for stitch in ("crop", "blend"):
        out = Upscaler(bundle, session, patch="auto", stitch=stitch).upscale_planes(planes)
        np.testing.assert_allclose(out, expected, atol=2e-6)


def test_split_and_end_alignment_give_different_images(tmp_path_factory):
    outputs = []
    planes = np.random.default_rng(2).random((3, 19, 13), dtype=np.float32)
    for align in ("split", "end"):
        _, bundle = _bundle(tmp_path_factory, f"differ-{align}", ConvStack(depth=2, multiple_of=8, pad_align=align))
        outputs.append(Upscaler(bundle, OrtSession(bundle, threads=1), patch="auto").upscale_planes(planes))
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-3


def test_box_weights_in_the_gpu_blenders_host_twin_give_crop_stitching(stack):
    host = pytest.importorskip("srexport.kernels.host")
    try:
        host.library()
    except Exception as exc:  # no g++ here
        pytest.skip(f"host twin library unavailable: {exc}")
    _, bundle, session = stack
    rules = bundle.manifest.shape_rules
    planes = np.random.default_rng(4).random((3, 45, 61), dtype=np.float32)
    plan = plan_crop(45, 61, (20, 24), rules)
    crop = CropStitcher(3, plan, 2)
    canvas = np.zeros((3, 90, 122), np.float32)
    weight = np.zeros((90, 122), np.float32)
    for index, (top, left) in enumerate(plan.tiles):
        patch = planes[:, top : top + plan.patch_h, left : left + plan.patch_w]
        out = session.run({"image": np.ascontiguousarray(patch[None])})
        crop.add(out[0], index)
        wy, wx = box_windows(plan, index, 2)
        host.blend_accumulate(canvas, weight, out, [(2 * top, 2 * left)], wy, wx)
    stitched = host.blend_finalize(canvas, weight, dtype=np.float32).transpose(2, 0, 1)
    assert np.array_equal(stitched, crop.result())


def test_gpu_blender_crop_stitches_with_per_tile_box_weights(monkeypatch):
    """GpuBlender on the simulated driver (the host twin runs each launch): per-tile box
    windows give exactly the CPU crop stitcher's image."""
    pytest.importorskip("srexport.kernels.host")
    import test_kernels_cuda_sim as simulation
    from srexport.kernels import cuda

    driver = simulation.SimDriver()
    monkeypatch.setattr(cuda, "_driver", lambda: driver)
    monkeypatch.setattr(cuda.Kernels, "_image", lambda self, name: (b"", "simulated"))
    monkeypatch.setattr(cuda, "_kernels", {})
    rules = ConvStack(depth=3).shape_rules()
    plan = plan_crop(41, 57, (16, 20), rules)
    rng = np.random.default_rng(6)
    outputs = rng.random((len(plan.tiles), 3, 2 * plan.patch_h, 2 * plan.patch_w), dtype=np.float32)
    crop = CropStitcher(3, plan, 2)
    for index, out in enumerate(outputs):
        crop.add(out, index)
    k = cuda.kernels()
    ones_y, ones_x = np.ones(2 * plan.patch_h, np.float32), np.ones(2 * plan.patch_w, np.float32)
    with cuda.GpuBlender(3, 82, 114, ones_y, ones_x) as blender:
        for index, ((top, left), out) in enumerate(zip(plan.tiles, outputs)):
            d = k.upload(out[None])
            blender.add_batch(d, [(2 * top, 2 * left)], window=box_windows(plan, index, 2))
            k.free(d)
        got = blender.download(dtype=np.float32).transpose(2, 0, 1)
    assert np.array_equal(got, crop.result())


@pytest.mark.parametrize("name,scale,size,patch,batch", [
    ("pcarn-m", 2, (71, 97), (50, 60), 2),
    ("pcarn-m", 4, (60, 45), (44, 44), 1),
    ("gmgbp", 4, (181, 40), (176, 40), 1),
])
def test_registry_models_with_a_halo_crop_stitch_exactly(bundle_factory, name, scale, size, patch, batch):
    """Random-initialised registry networks (their receptive field does not depend on the
    weights): crop-stitched tiles equal one whole-image call of the same graph."""
    bundle = bundle_factory(name, None, scale)
    session = OrtSession(bundle)
    planes = np.random.default_rng(sum(size)).random((3, *size), dtype=np.float32)
    tiled = Upscaler(bundle, session, patch=patch, batch=batch, stitch="crop")
    assert len(tiled.plan(*size).tiles) >= 2
    whole = Upscaler(bundle, session, patch=(max(size) + 8,) * 2, stitch="crop")
    assert len(whole.plan(*size).tiles) == 1
    reference = whole.upscale_planes(planes)
    np.testing.assert_allclose(tiled.upscale_planes(planes), reference, atol=1e-5 * max(1.0, np.abs(reference).max()))
