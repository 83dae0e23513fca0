"""TensorRT profiles for patch auto: the engine's shape range covers every patch the memory
budget chooses (a pure function, checked on the CPU), and the simulated TensorRT backend
runs a folder of sizes on one engine. Real engines: test_tensorrt_gpu.py (gpu-marked)."""

from __future__ import annotations

import numpy as np
import pytest

from srexport.models.base import ShapeRules
from srexport.runtime.budget import MemoryModel, budget_patch
from srexport.tensorrt.profiles import AUTO_MAX_EDGE, auto_profile

GIB = 2**30
# graph bytes per input pixel and weight bytes of the x4 bundles (budget.memory_model)
PCARN_M = (MemoryModel(8192.0, 1_176_648.0, 2.5), ShapeRules(min_size=1, output_scale=4, halo=21), 192)
GMGBP = (MemoryModel(20923.3125, 1_124_560.0, 2.5), ShapeRules(min_size=5, output_scale=4, halo=85), 96)
ALIGNED = (MemoryModel(6000.0, 2e6, 2.5), ShapeRules(multiple_of=8, offset=4, min_size=12, output_scale=2, halo=10), 64)
SIZES = [(120, 125), (144, 180), (69, 69), (97, 146), (164, 132),  # CSet14 LR
         (180, 320), (270, 480), (360, 640), (540, 960), (720, 1280), (1080, 1920), (2160, 3840),
         (30, 4000), (3000, 45), (1, 1), (7, 300)]


def _chosen(model, rules, budget, height, width, batch, max_edge):
    """What the Upscaler runs under patch auto (crop stitching): the budget's patch, or the
    whole image at its legal size."""
    chosen = budget_patch(model, budget, rules, height, width, batch, False, 2 * rules.halo + 1, 2 * rules.halo,
                           max_edge)
    return (rules.legal_at_least(height), rules.legal_at_least(width)) if chosen is None else chosen


@pytest.mark.parametrize("case", [PCARN_M, GMGBP, ALIGNED], ids=["pcarn-m", "gmgbp", "aligned"])
@pytest.mark.parametrize("gib", [0.25, 2, 10, 100])
@pytest.mark.parametrize("batch", [1, 4])
def test_every_patch_the_budget_chooses_lies_in_the_auto_profile(case, gib, batch):
    model, rules, patch = case
    budget = int(gib * GIB)
    profile = auto_profile(rules, patch, model, budget, batch)
    assert profile.max_batch == batch and profile.min_batch == 1
    assert profile.min_edge <= profile.opt_edge <= profile.max_edge <= AUTO_MAX_EDGE
    for edge in (profile.min_edge, profile.opt_edge, profile.max_edge):
        assert (edge - rules.offset) % rules.multiple_of == 0 and edge >= rules.min_size
    for height, width in SIZES:
        ph, pw = _chosen(model, rules, budget, height, width, batch, profile.max_edge)
        assert profile.accepts(batch, ph, pw), (height, width, ph, pw, profile)
        assert profile.accepts(1, ph, pw)  # the last, partial batch of an image


@pytest.mark.parametrize("case", [PCARN_M, GMGBP, ALIGNED], ids=["pcarn-m", "gmgbp", "aligned"])
def test_the_auto_profile_is_the_largest_square_the_budget_holds(case):
    model, rules, patch = case
    for gib, batch in ((0.5, 1), (4, 2), (12, 1)):
        budget = gib * GIB
        top = auto_profile(rules, patch, model, budget, batch).max_edge
        # re-derived: peak = weights + 2.5 x bytes/px x px x batch must fit; one legal step more must not
        floor = rules.legal_at_least(2 * rules.halo + 1)
        assert top == floor or model.fixed + 2.5 * model.per_pixel * top * top * batch <= budget
        step = top + rules.multiple_of
        assert step > AUTO_MAX_EDGE or model.fixed + 2.5 * model.per_pixel * step * step * batch > budget


def test_a_tiny_budget_still_allows_the_smallest_crop_patch():
    model, rules, patch = GMGBP
    profile = auto_profile(rules, patch, model, 1e6)
    assert profile.max_edge == 2 * 85 + 1 and profile.opt_edge == 96


def test_without_the_engine_limit_the_budget_would_leave_the_bundle_profile():
    """What the auto profile fixes: under a GPU-sized budget a 1080p input runs whole,
    far beyond a profile sized from the bundle's patch (192)."""
    model, rules, _ = PCARN_M
    assert budget_patch(model, 100 * GIB, rules, 1080, 1920, 1, False, 43, 42) is None
    ph, pw = _chosen(model, rules, 100 * GIB, 1080, 1920, 1, 192)
    assert max(ph, pw) <= 192


# -- the simulated TensorRT backend (tests/trt_stubs) ---------------------------------------
@pytest.fixture
def machine(monkeypatch, tmp_path):
    from trt_stubs.fake import installed_machine

    yield from installed_machine(monkeypatch, tmp_path)


def test_patch_auto_runs_every_size_on_one_engine(machine, tmp_path_factory, tmp_path):
    import srexport
    from trt_stubs.bundles import toy_bundle

    bundle = toy_bundle(tmp_path_factory, tmp_path / "bundle")
    logs: list[str] = []
    trt = srexport.load(bundle.root, backend="tensorrt", memory=0.002, noise=0.5, seed=3)
    trt.session._log = logs.append
    ort = srexport.load(bundle.root, backend="onnxruntime", memory=0.002, noise=0.5, seed=3)
    top = trt.session.profile.max_edge
    assert top > bundle.manifest.patch  # sized from the budget, not from the bundle's patch
    for height, width in ((20, 31), (64, 64), (top + 9, 40), (150, 2 * top + 3)):
        image = np.random.default_rng(height * width).random((height, width, 3), dtype=np.float32)
        plan = trt.plan(height, width)
        assert trt.session.profile.accepts(1, plan.patch_h, plan.patch_w)
        np.testing.assert_allclose(trt.upscale(image), ort.upscale(image), atol=1e-6)
    assert len(machine.state.builds) == 1 and not any("switching" in line for line in logs)


# -- a real GPU -------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.slow
def test_patch_auto_on_a_real_engine_covers_a_folder_and_a_1080p_input(tmp_path_factory):
    """CPU twin: test_patch_auto_runs_every_size_on_one_engine (simulated TensorRT)."""
    import torch

    import srexport
    from srexport.export.build import export_bundle
    from srexport.tensorrt.builder import engine_environment
    from srexport.tensorrt.lazy import EngineUnavailable
    from toymodels import ConvStack

    try:
        engine_environment()
    except EngineUnavailable as exc:
        pytest.skip(f"needs an NVIDIA GPU with TensorRT >= 11 and cuda-python: {exc}")
    torch.manual_seed(0)
    model = ConvStack(depth=4)
    root = tmp_path_factory.mktemp("gpu-auto") / "bundle"
    bundle = export_bundle(model, root, {"model": "stack", "variant": "t", "scale": 2, "task": "sr"})
    up = srexport.load(bundle.root, backend="tensorrt")
    profile = up.session.profile
    engine = up.session.engine_path
    for height, width in ((120, 125), (69, 69), (164, 132), (1080, 1920)):
        planes = np.random.default_rng(height).random((3, height, width), dtype=np.float32)
        plan = up.plan(height, width)
        assert profile.accepts(1, plan.patch_h, plan.patch_w)
        with torch.no_grad():
            expected = model(torch.from_numpy(planes)[None])[0].numpy()
        np.testing.assert_allclose(up.upscale_planes(planes), expected, atol=5e-3)  # TF32 convolutions
    assert up.session.engine_path == engine  # no rebuild
