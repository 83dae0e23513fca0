"""Engine keys and optimization profiles: pure functions of the manifest and the device."""

from __future__ import annotations

import pytest
import torch

from srexport.errors import ShapeError
from srexport.models import registry
from srexport.runtime.tiler import plan_tiles
from srexport.tensorrt.keys import EngineKey, find_engine, list_engines, parse_engine_name, short_trt_version
from srexport.tensorrt.profiles import (
    PatchProfile,
    default_max_batch,
    derive_profile,
    input_shapes,
    smallest_legal,
)

DIGEST = "3fa9c2d1" + "0" * 56


def _every_model():
    for entry in registry.entries().values():
        for variant, scales in entry.variants.items():
            for scale in scales:
                yield pytest.param(entry.name, variant, scale, id=f"{entry.name}-{variant}-x{scale}")


def _model(name, variant, scale):
    with torch.device("meta"):  # sizes only: no weights allocated
        return registry.get(name).factory(variant, scale)


# -- keys --------------------------------------------------------------------------------
def test_engine_name_spells_precision_gpu_tensorrt_profile_and_graph():
    key = EngineKey.for_device("fp16", (8, 6), "11.4.0.106", PatchProfile(1, 4, 8, 16, 192, 192), DIGEST)
    assert key.filename == "fp16_sm86_trt11.4.0_b1-4-8_s16-192-192_g3fa9c2d1.plan"
    assert parse_engine_name(key.filename) == key


@pytest.mark.parametrize("name", ["timing.cache", "fp16_sm86.plan", "bf16_sm86_trt11.4.0_b1-1-1_s1-1-1_g3fa9c2d1.plan",
                                  "fp16_sm86_trt11.4.0_b4-2-8_s1-1-1_g3fa9c2d1.plan"])
def test_other_files_are_not_engines(name):
    assert parse_engine_name(name) is None


def test_tensorrt_version_in_keys_drops_the_build_number():
    assert short_trt_version("11.4.0.106") == "11.4.0"
    assert short_trt_version("11.4") == "11.4.0"


def test_mismatch_says_why_an_engine_cannot_serve():
    profile = PatchProfile(1, 4, 8, 16, 192, 192)
    here = EngineKey.for_device("fp16", (8, 6), "11.4.0", profile, DIGEST)
    other_gpu = EngineKey.for_device("fp16", (8, 0), "11.3.0", profile, "ffffffff" + DIGEST[8:])
    why = here.mismatch(other_gpu)
    assert "built for sm80, this GPU is sm86" in why
    assert "built by TensorRT 11.3.0, this is TensorRT 11.4.0" in why
    assert "another version of the graph" in why
    small = EngineKey.for_device("fp16", (8, 6), "11.4.0", PatchProfile(1, 2, 4, 16, 96, 96), DIGEST)
    assert "does not cover" in here.mismatch(small)
    big = EngineKey.for_device("fp16", (8, 6), "11.4.0", PatchProfile(1, 8, 16, 8, 192, 256), DIGEST)
    assert here.mismatch(big) == ""


def test_find_engine_prefers_the_exact_name_then_the_smallest_covering_profile(tmp_path):
    wanted = EngineKey.for_device("fp16", (8, 6), "11.4.0", PatchProfile(1, 4, 8, 16, 192, 192), DIGEST)
    big = EngineKey.for_device("fp16", (8, 6), "11.4.0", PatchProfile(1, 8, 16, 16, 192, 512), DIGEST)
    bigger = EngineKey.for_device("fp16", (8, 6), "11.4.0", PatchProfile(1, 8, 16, 1, 192, 1024), DIGEST)
    foreign = EngineKey.for_device("fp16", (7, 5), "11.4.0", PatchProfile(1, 4, 8, 16, 192, 192), DIGEST)
    for key in (big, bigger, foreign):
        (tmp_path / key.filename).write_bytes(b"plan")
    found, _ = find_engine([tmp_path / "missing", tmp_path], wanted)
    assert found.name == big.filename
    (tmp_path / wanted.filename).write_bytes(b"plan")
    assert find_engine([tmp_path], wanted)[0].name == wanted.filename
    assert [k for k, _ in list_engines(tmp_path)] == sorted([big, bigger, foreign, wanted], key=lambda k: k.filename)


def test_find_engine_reports_the_plans_it_passed_over(tmp_path):
    wanted = EngineKey.for_device("int8", (8, 9), "11.4.0", PatchProfile(1, 4, 8, 16, 192, 192), DIGEST)
    foreign = EngineKey.for_device("int8", (8, 6), "11.4.0", PatchProfile(1, 4, 8, 16, 192, 192), DIGEST)
    (tmp_path / foreign.filename).write_bytes(b"plan")
    found, passed = find_engine([tmp_path], wanted)
    assert found is None
    assert passed == [f"{foreign.filename}: built for sm86, this GPU is sm89"]


# -- profiles ----------------------------------------------------------------------------
@pytest.mark.parametrize("name,variant,scale", list(_every_model()))
def test_profile_follows_the_shape_rules_of_every_model(name, variant, scale):
    model = _model(name, variant, scale)
    rules, patch = model.shape_rules(), model.recommended_patch()
    profile = derive_profile(rules, patch)
    assert rules.is_legal(profile.min_edge) and rules.is_legal(profile.opt_edge) and rules.is_legal(profile.max_edge)
    assert profile.min_edge == smallest_legal(rules)
    assert not any(rules.is_legal(e) for e in range(1, profile.min_edge))
    assert profile.opt_edge == profile.max_edge == patch
    assert profile.max_batch == default_max_batch(patch) and profile.min_batch == 1
    bigger = derive_profile(rules, patch, max_patch=patch + 1)
    assert bigger.max_edge == rules.legal_at_least(patch + 1) and rules.is_legal(bigger.max_edge)
    # every tile the tiler can produce with the bundle's patch fits the profile
    for size in {1, 2, 7, profile.min_edge, patch - 1, patch, patch + 1, 2 * patch + 3}:
        plan = plan_tiles(size, max(1, size // 2), (patch, patch), min(8, patch - 1), rules)
        assert profile.accepts(1, plan.patch_h, plan.patch_w), (size, plan.patch_h, plan.patch_w)


@pytest.mark.parametrize("name,variant,scale", list(_every_model()))
def test_noise_inputs_get_the_shapes_of_their_level(name, variant, scale):
    model = _model(name, variant, scale)
    profile = derive_profile(model.shape_rules(), model.recommended_patch())
    shapes = input_shapes(profile, model.noise_inputs)
    assert list(shapes) == ["image", *(n.name for n in model.noise_inputs)]
    points = [(profile.min_batch, profile.min_edge), (profile.opt_batch, profile.opt_edge),
              (profile.max_batch, profile.max_edge)]
    assert shapes["image"] == tuple((n, 3, e, e) for n, e in points)
    for noise in model.noise_inputs:
        assert shapes[noise.name] == tuple(noise.shape(n, e, e) for n, e in points)
        low, opt, high = shapes[noise.name]
        assert all(a <= b <= c for a, b, c in zip(low, opt, high))


def test_profiles_of_the_papers_networks():
    """The shapes the GPU suite builds with (PCARN-M and G-MGBP at 4x)."""
    pcarn = _model("pcarn-m", "m", 4)
    gmgbp = _model("gmgbp", "pirm2018", 4)
    assert derive_profile(pcarn.shape_rules(), pcarn.recommended_patch()) == PatchProfile(1, 4, 8, 1, 192, 192)
    p = derive_profile(gmgbp.shape_rules(), gmgbp.recommended_patch())
    assert p == PatchProfile(1, 8, 16, 5, 96, 96)
    shapes = input_shapes(p, gmgbp.noise_inputs)
    assert shapes["noise0"] == ((1, 1, 13, 13), (8, 1, 104, 104), (16, 1, 104, 104))
    assert shapes["noise1"] == ((1, 1, 26, 26), (8, 1, 208, 208), (16, 1, 208, 208))


def test_batch_limit_shrinks_with_the_patch_area():
    assert [default_max_batch(p) for p in (32, 96, 192, 256, 767)] == [16, 16, 8, 4, 1]
    assert derive_profile(registry_rules := _model("bpp", "x4", 4).shape_rules(), 192, max_batch=3).max_batch == 3
    with pytest.raises(ShapeError):
        derive_profile(registry_rules, 192, max_batch=0)
    with pytest.raises(ShapeError):
        PatchProfile(1, 9, 8, 1, 2, 3)


def test_profile_prints_readably():
    assert str(PatchProfile(1, 4, 8, 16, 192, 256)) == "batch 1..8 (opt 4), patch 16..256 px (opt 192)"
    assert PatchProfile(1, 4, 8, 16, 192, 256).tag == "b1-4-8_s16-192-256"
