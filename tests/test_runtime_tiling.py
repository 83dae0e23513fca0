"""The tiler + blender against untiled references (DESIGN.md, "Tiling and blending")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srexport.export.build import export_bundle
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.noise import normal_field
from srexport.runtime.tiler import axis_starts, plan_tiles
from srexport.runtime.upscaler import Upscaler
from srexport.models.base import ShapeRules
from toymodels import BorderModel, PixelModel


def _bundle(tmp_path_factory, name, model):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp(name) / "bundle"
    return model, export_bundle(model, root, {"model": name, "variant": "t", "scale": 2, "task": "sr"})


@pytest.fixture(scope="module")
def pixel(tmp_path_factory):
    model, bundle = _bundle(tmp_path_factory, "pixel", PixelModel())
    return model, bundle, OrtSession(bundle, threads=1)


@pytest.fixture(scope="module")
def pixel_odd_rules(tmp_path_factory):
    model, bundle = _bundle(tmp_path_factory, "pixel4", PixelModel(multiple_of=4, offset=1, min_size=5))
    return model, bundle, OrtSession(bundle, threads=1)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    model, bundle = _bundle(tmp_path_factory, "noisy", PixelModel(noisy=True))
    return model, bundle, OrtSession(bundle, threads=1)


def _reference(model, planes, *noise):
    with torch.no_grad():
        return model(torch.from_numpy(planes)[None], *noise)[0].numpy()


def test_axis_starts_cover_the_axis_with_the_overlap():
    for length in range(1, 60):
        for patch in range(1, 20):
            for overlap in range(0, patch):
                starts = axis_starts(length, patch, overlap)
                end = max(length, patch)
                assert starts[0] == 0 and starts[-1] + patch == end
                assert all(b - a <= patch - overlap for a, b in zip(starts, starts[1:]))


def test_plan_uses_only_legal_patches():
    rules = ShapeRules(multiple_of=8, offset=3, min_size=11)
    plan = plan_tiles(100, 37, (40, 40), 10, rules)
    assert rules.is_legal(plan.patch_h) and rules.is_legal(plan.patch_w)
    pad_h, pad_w = plan.padded_size
    assert all(t + plan.patch_h <= pad_h and l + plan.patch_w <= pad_w for t, l in plan.tiles)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    height=st.integers(1, 45), width=st.integers(1, 45), patch=st.integers(4, 40),
    overlap_frac=st.floats(0, 0.9), window=st.sampled_from(["hamming", "bartlett", "none"]),
    batch=st.integers(1, 5),
)
def test_pixelwise_model_tiled_equals_untiled(pixel, height, width, patch, overlap_frac, window, batch):
    model, bundle, session = pixel
    overlap = int(overlap_frac * (patch - 1))
    planes = np.random.default_rng(height * 100 + width).random((3, height, width), dtype=np.float32)
    up = Upscaler(bundle, session, patch=(patch, patch), overlap=overlap, window=window, batch=batch)
    np.testing.assert_allclose(up.upscale_planes(planes), _reference(model, planes), atol=1e-6)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 40), width=st.integers(1, 40), patch=st.integers(5, 30), overlap=st.integers(0, 4))
def test_tiles_are_padded_to_the_models_legal_sizes(pixel_odd_rules, height, width, patch, overlap):
    model, bundle, session = pixel_odd_rules
    planes = np.random.default_rng(height * 100 + width).random((3, height, width), dtype=np.float32)
    up = Upscaler(bundle, session, patch=(patch, patch), overlap=overlap)
    np.testing.assert_allclose(up.upscale_planes(planes), _reference(model, planes), atol=1e-6)


def test_same_seed_same_image_whatever_the_patch_size(noisy):
    model, bundle, session = noisy
    planes = np.random.default_rng(3).random((3, 33, 47), dtype=np.float32)
    outputs = [
        Upscaler(bundle, session, patch=(p, p), overlap=o, noise=0.3, seed=11).upscale_planes(planes)
        for p, o in ((64, 0), (16, 4), (9, 2), (21, 6))
    ]
    field = 0.3 * normal_field(11, 0, 0, 0, 66, 94)
    expected = _reference(model, planes, torch.from_numpy(field)[None, None])
    for out in outputs:
        np.testing.assert_allclose(out, expected, atol=1e-5)
    other_seed = Upscaler(bundle, session, noise=0.3, seed=12).upscale_planes(planes)
    assert np.abs(other_seed - expected).max() > 0.1


def test_noise_border_is_cropped_from_the_image_coordinates(tmp_path_factory):
    model, bundle = _bundle(tmp_path_factory, "border", BorderModel())
    session = OrtSession(bundle, threads=1)
    planes = np.random.default_rng(5).random((3, 19, 23), dtype=np.float32)
    for overlap in (0, 4, 9):
        out = Upscaler(bundle, session, patch=(64, 64), overlap=overlap, noise=0.5, seed=3).upscale_planes(planes)
        field = 0.5 * normal_field(3, 0, -2, -2, 23, 27)
        expected = _reference(model, planes, torch.from_numpy(field)[None, None])
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_single_patch_result_is_exact_for_every_window(pixel):
    model, bundle, session = pixel
    planes = np.random.default_rng(9).random((3, 20, 30), dtype=np.float32)
    for window in ("hamming", "bartlett", "none"):
        out = Upscaler(bundle, session, patch=(64, 64), overlap=0, window=window).upscale_planes(planes)
        np.testing.assert_allclose(out, _reference(model, planes), atol=1e-6)
