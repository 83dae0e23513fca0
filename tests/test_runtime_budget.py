"""The memory model against measured peak RSS, and a small budget respected end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from srexport.runtime.backends.selection import available_backends
from srexport.runtime.budget import MemoryModel, budget_patch
from srexport.models.base import ShapeRules

_MEASURE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from srexport.bundle import load_bundle
    from srexport.profiling.profile import peak_rss_mb, reset_peak_rss, rss_mb
    from srexport.runtime.backends import open_session
    from srexport.runtime.upscaler import Upscaler
    bundle = load_bundle(sys.argv[1])
    session = open_session(bundle, sys.argv[2], "fp32", 2)  # the work buffers grow with the threads
    mode, edge = sys.argv[3], int(sys.argv[4])
    session.run({"image": np.random.rand(1, 3, 16, 16).astype(np.float32)})  # arena and kernels set up
    if mode == "patch":
        image = np.random.rand(1, 3, edge, edge).astype(np.float32)
        assert reset_peak_rss()
        base = rss_mb()
        session.run({"image": image})
        print(json.dumps({"peak_mb": peak_rss_mb() - base}))
    else:
        up = Upscaler(bundle, session, patch="auto", memory=float(sys.argv[5]))
        planes = np.random.default_rng(0).random((3, edge, edge), dtype=np.float32)
        tiles = len(up.plan(edge, edge).tiles)
        assert reset_peak_rss()
        base = rss_mb()
        up.upscale_planes(planes)
        print(json.dumps({"peak_mb": peak_rss_mb() - base, "tiles": tiles}))
""")


def _measure(*args) -> dict:
    done = subprocess.run([sys.executable, "-c", _MEASURE, *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def pcarn_x2(bundle_factory):
    return bundle_factory("pcarn-m", None, 2)  # random initialisation: memory does not depend on weights


BACKENDS = ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(
    not available_backends()["openvino"], reason="openvino is not installed"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_model_bounds_the_measured_peak_of_one_patch(pcarn_x2, backend):
    from srexport.runtime.budget import memory_model

    model = memory_model(pcarn_x2, "fp32", backend)
    measured = _measure(pcarn_x2.root, backend, "patch", 160)["peak_mb"] * 2**20
    predicted = model.patch_bytes(160, 160)
    # safe, and the graph's live tensors alone (the prediction before the backend's factor
    # for its work buffers) never exceed what the backend really used
    assert measured <= predicted
    assert model.fixed + model.per_pixel * 160 * 160 <= measured


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_small_budget_is_respected_by_a_tiled_run(pcarn_x2, backend):
    budget_gib = 0.25
    result = _measure(pcarn_x2.root, backend, "run", 640, budget_gib)
    assert result["tiles"] > 1, "the image must need tiling under this budget"
    assert result["peak_mb"] <= budget_gib * 1024


def _tiles(length: int, p: int, overlap: int) -> int:
    """Tiles along an axis: ceil((L - P) / (P - overlap)) + 1 (one when the patch covers it)."""
    return 1 if length <= p else -(-(length - p) // (p - overlap)) + 1


def test_budget_patch_fits_and_computes_the_fewest_pixels():
    rules = ShapeRules(multiple_of=4, offset=1, min_size=5, output_scale=2, halo=3)
    model = MemoryModel(per_pixel=1000.0, fixed=1e6, factor=2.0)
    budget, height, width, overlap = 300e6, 500, 700, 6
    ph, pw = budget_patch(model, budget, rules, height, width, 1, False, 7, overlap)
    image = 2 * 12.0 * height * width + 4 * height * width * 27.0

    def computed(a, b):
        return _tiles(height, a, overlap) * a * _tiles(width, b, overlap) * b

    assert rules.is_legal(ph) and rules.is_legal(pw)
    assert model.patch_bytes(ph, pw) + image <= budget
    legal = range(9, 1000, 4)
    fitting = [(a, b) for a in legal for b in legal if a <= 501 and b <= 701 and model.patch_bytes(a, b) + image <= budget]
    assert computed(ph, pw) == min(computed(a, b) for a, b in fitting)
    assert budget_patch(model, 10e9, rules, height, width, 1, False, 7, overlap) is None  # fits whole


def test_a_halo_too_wide_for_the_budget_blends_tiles_within_it(bundle_factory):
    """Crop-stitched tiles must be at least 2 * halo + 1 wide; where even those exceed the
    budget (MGBP NTIRE-2018 track 3 has a 1,159-pixel halo), patch auto blends smaller tiles
    instead of running over the budget. Memory model stated here, not read from the graph."""
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.upscaler import Upscaler

    bundle = bundle_factory("gmgbp", None, 4)  # halo 85, default blend overlap 48
    rules = bundle.manifest.shape_rules
    height = width = 4 * rules.halo
    model = MemoryModel(per_pixel=1000.0, fixed=0.0, factor=1.0)
    image = 2 * 12.0 * height * width + 4 * height * width * (12.0 + 12.0 + 3.0 + 4.0)  # blend canvas
    crop_floor = 2 * rules.halo + 1
    budget_bytes = image + 1000.0 * (3 * crop_floor // 4) ** 2  # blended tiles 3/4 of the floor fit, no crop tile
    up = Upscaler(bundle, OrtSession(bundle), patch="auto", memory=budget_bytes / 2**30)
    up._memory_model = model
    assert up.overlap < 2 * rules.halo
    plan = up.graph_plan(height, width)
    assert not plan.owned, "crop stitching was kept although its smallest tile exceeds the budget"
    assert len(plan.tiles) > 1
    assert max(plan.patch_h, plan.patch_w) < crop_floor
    assert image + 1000.0 * plan.patch_h * plan.patch_w <= up.budget.bytes


def test_a_budget_too_small_for_any_tile_still_steps_blended_tiles_by_the_overlap(bundle_factory):
    """Below the smallest useful tile the budget cannot be kept anyway; patch auto then takes
    tiles of twice the overlap (each pixel computed at most 4x), not overlap + 1 (a tile per
    pixel: G-MGBP at --memory 0.1 computed a 128x128 image 938 times over)."""
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.upscaler import Upscaler

    bundle = bundle_factory("gmgbp", None, 4)
    up = Upscaler(bundle, OrtSession(bundle), patch="auto", memory=0.001)
    up._memory_model = MemoryModel(per_pixel=1000.0, fixed=0.0, factor=1.0)
    plan = up.graph_plan(128, 128)
    assert not plan.owned
    assert (plan.patch_h, plan.patch_w) == (2 * up.overlap, 2 * up.overlap) == (96, 96)
    assert len(plan.tiles) == 4  # tiles at 0 and 32 along each axis
    assert plan.computed_pixels == 4 * 96 * 96


# PCARN-M-L1 x4 and G-MGBP on ONNX Runtime / OpenVINO (budget.memory_model of their bundles)
PCARN_ORT = MemoryModel(8192.0, 1_227_516.0, 2.5, 1_178_880.0, 290.0)
GMGBP_OV = MemoryModel(20923.3, 1_147_660.0, 1.9, 13_856_657.0, 60.0)


CPU_CASES = [  # (model, stitching halo, height, width, streams, a tiling within 1.3x fits 11 GiB)
    (PCARN_ORT, 21, 1080, 1920, 2, True), (PCARN_ORT, 21, 1080, 1920, 1, True),
    (PCARN_ORT, 21, 540, 960, 2, True), (PCARN_ORT, 21, 2160, 3840, 2, True),
    # G-MGBP BOE-R1's measured stitch halo (manifest.stitch_halo: 33 px)
    (GMGBP_OV, 33, 1080, 1920, 1, True), (GMGBP_OV, 33, 540, 960, 1, True),
    (GMGBP_OV, 33, 1080, 1920, 2, False), (GMGBP_OV, 33, 2160, 3840, 2, False),
]


@pytest.mark.parametrize("model, halo, height, width, streams, bound", CPU_CASES)
def test_cpu_tiles_take_the_least_time_within_the_recompute_bound(model, halo, height, width, streams, bound):
    """On the CPU the budget is a ceiling: among the tilings computing at most CPU_RECOMPUTE
    times the image, the one of least FLOPs plus touched bytes at the model's rate; without
    such a tiling, the fewest pixels. Re-derived by brute force over every patch pair."""
    from srexport.runtime.budget import CPU_RECOMPUTE

    rules = ShapeRules(min_size=1, output_scale=4, halo=halo)
    budget, overlap, floor = 11 * 2**30, 2 * halo, 2 * halo + 1
    image = 2 * 12.0 * height * width + 16 * height * width * 27.0
    assert model.patch_bytes(height, width, streams) + image > budget  # the image must tile
    ph, pw = budget_patch(model, budget, rules, height, width, streams, False, floor, overlap, None, CPU_RECOMPUTE)
    fitting = [(a, b) for a in range(floor, height + 1) for b in range(floor, width + 1)
               if model.patch_bytes(a, b, streams) + image <= budget]

    def computed(a, b):
        return _tiles(height, a, overlap) * a * _tiles(width, b, overlap) * b

    def seconds_in_flops(a, b):
        return computed(a, b) * model.flops_per_pixel + model.touch_flops_per_byte * model.patch_bytes(a, b, streams)

    assert CPU_RECOMPUTE == 1.3
    within = [(a, b) for a, b in fitting if computed(a, b) <= 1.3 * height * width]
    assert (ph, pw) in fitting
    assert bool(within) == bound and ((ph, pw) in within) == bound
    rank, candidates = (seconds_in_flops, within) if bound else (computed, fitting)
    assert rank(ph, pw) == pytest.approx(min(rank(a, b) for a, b in candidates), rel=1e-9)


def test_pcarn_8k_tiles_on_the_cpu_use_a_fraction_of_the_default_budget():
    """The case the CPU cost model was measured on: PCARN-M x4 from 1920x1080 on ONNX Runtime
    (2 sessions) computes at most 1.3x the image in tiles far smaller than the budget holds,
    while without the recompute bound (a GPU) the largest tiles that fit are taken."""
    rules = ShapeRules(min_size=1, output_scale=4, halo=21)
    budget = 11 * 2**30
    cpu = budget_patch(PCARN_ORT, budget, rules, 1080, 1920, 2, False, 43, 42, None, 1.3)
    gpu = budget_patch(PCARN_ORT, budget, rules, 1080, 1920, 2, False, 43, 42)
    assert gpu == (388, 668)  # what patch auto took on the CPU before (7.9 GB peak RSS)
    assert PCARN_ORT.patch_bytes(*cpu, 2) < 0.35 * PCARN_ORT.patch_bytes(*gpu, 2)
    assert _tiles(1080, cpu[0], 42) * cpu[0] * _tiles(1920, cpu[1], 42) * cpu[1] <= 1.3 * 1080 * 1920
