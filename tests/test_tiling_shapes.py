"""Few compiled shapes, exactly: the OpenVINO backend runs every image and tile size of a
network with a halo on one spatially dynamic compiled model, and its tiled output equals
the untiled network's. Padding an image up to a shape bucket is shown not to be exact
(DESIGN.md, "Tiling and stitching")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srexport.export.build import export_bundle
from srexport.runtime.backends.selection import available_backends
from srexport.runtime.upscaler import Upscaler
from toymodels import ConvStack

needs_openvino = pytest.mark.skipif(
    not available_backends()["openvino"], reason="openvino is not installed (pip install 'sr-export[openvino]')"
)
CSET14_LR = ((120, 125), (144, 180), (128, 128), (72, 88), (90, 62), (69, 69), (90, 125), (72, 88), (128, 128),
             (128, 128), (128, 192), (128, 128), (164, 132), (97, 146))  # the 14 images at x4, HxW


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    torch.manual_seed(0)
    model = ConvStack(depth=4)
    root = tmp_path_factory.mktemp("shapes") / "bundle"
    return model, export_bundle(model, root, {"model": "stack", "variant": "t", "scale": 2, "task": "sr"})


@pytest.fixture(scope="module")
def ov_session(stack):
    if not available_backends()["openvino"]:
        pytest.skip("openvino is not installed")
    from srexport.runtime.backends.openvino import OvSession

    return OvSession(stack[1], threads=2)


def _reference(model, planes):
    with torch.no_grad():
        return model(torch.from_numpy(planes)[None])[0].numpy()


@needs_openvino
def test_a_folder_of_cset14_sizes_compiles_one_model(stack, ov_session):
    from srexport.runtime.backends import openvino as ov

    model, bundle = stack
    ov.clear_cache()
    up = Upscaler(bundle, ov_session, patch="auto")
    for height, width in CSET14_LR:
        planes = np.random.default_rng(height * width).random((3, height, width), dtype=np.float32)
        np.testing.assert_allclose(up.upscale_planes(planes), _reference(model, planes), atol=2e-6)
    assert len(set(CSET14_LR)) == 10 and ov.cached_models() == 1


@needs_openvino
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 90), width=st.integers(1, 90), memory_mb=st.integers(1, 30), batch=st.integers(1, 3))
def test_openvino_default_run_equals_untiled_on_one_compiled_model(stack, ov_session, height, width, memory_mb,
                                                                     batch):
    from srexport.runtime.backends import openvino as ov

    model, bundle = stack
    planes = np.random.default_rng(height + 13 * width).random((3, height, width), dtype=np.float32)
    up = Upscaler(bundle, ov_session, patch="auto", batch=batch, memory=memory_mb / 1024)
    np.testing.assert_allclose(up.upscale_planes(planes), _reference(model, planes), atol=2e-6)
    # one LATENCY model for batch 1, one THROUGHPUT model for batches: no model per shape
    assert ov.cached_models(ov_session.graph_digest) <= 2


def test_reflect_padding_up_to_a_bucket_is_not_exact(stack):
    """Why buckets are not padded images: with zero-padded convs the output near the image
    border depends on what lies beyond it, and reflected pixels are not zeros-per-layer."""
    model, _ = stack
    planes = np.random.default_rng(3).random((3, 50, 45), dtype=np.float32)
    padded = np.pad(planes, ((0, 0), (0, 14), (0, 19)), mode="reflect")  # up to a 64x64 bucket
    bucketed = _reference(model, padded)[:, :100, :90]
    assert np.abs(bucketed - _reference(model, planes)).max() > 1e-3


def test_padding_beyond_the_halo_is_not_exact_either(stack):
    """Pad by more than the halo on every side and crop: border pixels of the image still
    differ, because the untiled network sees its zero padding right at the image edge."""
    model, _ = stack
    halo = model.shape_rules().halo
    planes = np.random.default_rng(4).random((3, 40, 40), dtype=np.float32)
    for mode in ("reflect", "constant"):
        padded = np.pad(planes, ((0, 0), (halo + 2, halo + 2), (halo + 2, halo + 2)), mode=mode)
        inner = _reference(model, padded)[:, 2 * (halo + 2) : 2 * (halo + 42), 2 * (halo + 2) : 2 * (halo + 42)]
        diff = np.abs(inner - _reference(model, planes))
        assert diff.max() > 1e-3, mode
        # ... while pixels a halo inside the image agree: the halo bounds the receptive field
        assert diff[:, 2 * halo : -2 * halo, 2 * halo : -2 * halo].max() < 2e-6, mode
