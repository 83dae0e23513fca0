"""libsrexport's tiling through the C ABI: crop stitching for networks with a finite halo,
patch auto from a memory budget and split padding, with the Python runtime's rules
(srexport/runtime/tiler.py, budget.py, pipeline.py):

- the same plan as the Python runtime for the same image and budget (the memory model
  is read from the graph on both sides);
- the same output as the Python runtime on crop-stitched tiles;
- tiled equals untiled in C++ (crop stitching is exact to float rounding);
- split padding places the padding as the model's pad_align says (checked against the
  PyTorch model on the padded image).
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch

from _cpp import ERR_ARGUMENT, ERR_SHAPE, Cpp, CppError, load_library, python_runtime, test_image, u8_image
from srexport.export.build import export_bundle
from srexport.runtime.budget import image_bytes, memory_model
from toymodels import ConvStack


@pytest.fixture(scope="session")
def lib() -> ctypes.CDLL:
    return load_library("opencv")


@pytest.fixture(scope="session")
def ov_lib() -> ctypes.CDLL:
    pytest.importorskip("openvino", reason="openvino is not installed (the test extra installs it)")
    return load_library("openvino")


def _toy(tmp_path_factory, name: str, model):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp(name) / "bundle"
    return model, export_bundle(model, root, {"model": name, "variant": "t", "scale": 2, "task": "sr"})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return _toy(tmp_path_factory, "stack", ConvStack(depth=4))


def _torch(model, planes: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(planes))[None])[0].numpy()


def _plan_fields(cpp_plan) -> tuple:
    return (cpp_plan.patch_h, cpp_plan.patch_w, cpp_plan.tiles, bool(cpp_plan.crop), cpp_plan.pad_top,
            cpp_plan.pad_bottom, cpp_plan.pad_left, cpp_plan.pad_right)


def _python_fields(plan) -> tuple:
    return (plan.patch_h, plan.patch_w, len(plan.tiles), bool(plan.owned), plan.before_h, plan.extra_h - plan.before_h,
            plan.before_w, plan.extra_w - plan.before_w)


def _budgets_around(bundle, height: int, width: int, areas: list[int], backend: str | None = None) -> list[float]:
    """Budgets (GiB) at which a patch of about each area fits, by the Python memory model:
    where the chosen patch is decided by the model's two numbers."""
    model = memory_model(bundle, "fp32", backend)
    rules = bundle.manifest.shape_rules
    own = image_bytes(height, width, rules.output_scale, False)
    return [(own + model.fixed + model.factor * model.per_pixel * area) / 2**30 for area in areas]


# --- planning -----------------------------------------------------------------------
def test_plans_equal_pythons_for_any_budget_on_a_toy(lib, stack):
    _, bundle = stack
    for height, width in ((200, 300), (620, 90), (257, 411)):
        for memory in [*_budgets_around(bundle, height, width, [20 * 20, 33 * 47, 64 * 64, 90 * 130]), 1.0]:
            py = python_runtime(bundle, memory=memory)
            cpp = Cpp(lib, bundle, memory=memory)
            assert _plan_fields(cpp.plan(width, height)) == _python_fields(py.plan(height, width)), (height, width,
                                                                                                    memory)
    # an image that fits runs whole at its own size; a tight budget tiles it
    assert _plan_fields(Cpp(lib, bundle, memory=1.0).plan(53, 37))[:3] == (37, 53, 1)
    assert Cpp(lib, bundle, memory=2 / 1024).plan(300, 300).tiles > 1
    with pytest.raises(CppError, match="memory must be between 0.001 and 1.04858e\\+06, got 0.0001") as info:
        Cpp(lib, bundle, memory=1e-4)
    assert info.value.status == ERR_ARGUMENT


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,scale", [("pcarn-m", "m", 2), ("gmgbp", None, None), ("mgbpv2", "2x", None),
                                                ("pcarn", "full", 4)])
def test_plans_equal_pythons_on_zoo_graphs(lib, bundle_factory, name, variant, scale):
    """The memory model is read from each zoo graph (Conv, ConvTranspose, Concat, Pad, Slice,
    DepthToSpace ...) in C++ as in Python: the same budget gives the same tiles."""
    bundle = bundle_factory(name, variant, scale)
    kind = bundle.manifest.input_kind
    for lr_h, lr_w in ((90, 160), (270, 480)):
        h, w = (lr_h * bundle.manifest.scale, lr_w * bundle.manifest.scale) if kind == "upscaled" else (lr_h, lr_w)
        for memory in _budgets_around(bundle, h, w, [150 * 150, 240 * 300, 400 * 400]):
            py = python_runtime(bundle, memory=memory)
            cpp = Cpp(lib, bundle, memory=memory)
            assert _plan_fields(cpp.plan(lr_w, lr_h)) == _python_fields(py.plan(lr_h, lr_w)), (lr_h, lr_w, memory)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["ntire2018-track1", "ntire2018-track2"])
def test_plans_equal_pythons_on_mgbp_on_openvino(ov_lib, bundle_factory, variant):
    """MGBP's graphs (track 1: crops from Shape / Gather / Sub / Unsqueeze / Concat; both:
    channel shuffles as Gathers) give the C++ memory model the Python one's figures. Both
    runtimes on OpenVINO with batch 2 (two patches in flight on either side)."""
    bundle = bundle_factory("mgbp", variant, None)
    tiles = set()
    for lr_h, lr_w in ((90, 160), (270, 480)):
        for memory in _budgets_around(bundle, lr_h, lr_w, [150 * 150, 240 * 300, 400 * 400], backend="openvino"):
            py = python_runtime(bundle, "openvino", memory=memory, batch=2)
            cpp = Cpp(ov_lib, bundle, backend="openvino", memory=memory, batch=2)
            assert _plan_fields(cpp.plan(lr_w, lr_h)) == _python_fields(py.plan(lr_h, lr_w)), (lr_h, lr_w, memory)
            tiles.add(cpp.plan(lr_w, lr_h).tiles)
    assert len(tiles) >= 3  # the budgets give different tilings, not one plan throughout


def test_plans_equal_pythons_at_the_measured_stitch_halo(lib, bundle_factory):
    """A bundle built from G-MGBP's published weights records a stitching halo (about 30 px)
    far below the geometric one (85): C++ reads it as Python does, so crop tiles narrower
    than 2 * 85 + 1 are planned alike on both sides."""
    from conftest import shared_file

    bundle = bundle_factory("gmgbp", None, None, shared_file("weights", "gmgbp-pirm2018", "BOE-R1.model"))
    halo = bundle.manifest.stitch_halo.pixels
    assert halo < bundle.manifest.shape_rules.halo
    narrow = 0
    for lr_h, lr_w in ((90, 160), (270, 480)):
        for memory in _budgets_around(bundle, lr_h, lr_w, [80 * 80, 120 * 150, 240 * 300]):
            py = python_runtime(bundle, memory=memory)
            cpp = Cpp(lib, bundle, memory=memory)
            plan = py.plan(lr_h, lr_w)
            assert _plan_fields(cpp.plan(lr_w, lr_h)) == _python_fields(plan), (lr_h, lr_w, memory)
            narrow += bool(plan.owned) and min(plan.patch_h, plan.patch_w) < 2 * bundle.manifest.shape_rules.halo + 1
    assert narrow >= 2


def test_the_run_line_matches_pythons(lib, stack):
    _, bundle = stack
    assert Cpp(lib, bundle, patch=20).tiling_note() == python_runtime(bundle, patch=20).tiling_note()
    assert Cpp(lib, bundle, patch=20, overlap=4).tiling_note() == python_runtime(bundle, patch=20, overlap=4).tiling_note()
    note = Cpp(lib, bundle, memory=0.5).tiling_note()
    assert note == "patch auto (memory budget 0.5 GiB, memory option; images that fit run whole), crop stitching, batch 1"


def test_stitch_and_patch_refusals(lib, stack, tmp_path_factory):
    _, bundle = stack
    with pytest.raises(CppError, match="unknown stitching 'seams' \\(auto, crop, blend\\)") as info:
        Cpp(lib, bundle, stitch="seams")
    assert info.value.status == ERR_ARGUMENT
    with pytest.raises(CppError, match="too small for crop stitching: it must exceed twice the halo \\(8\\)") as info:
        Cpp(lib, bundle, patch=8, stitch="crop").upscale(test_image(30, 30))
    assert info.value.status == ERR_SHAPE
    with pytest.raises(CppError, match="memory must be between 0.001 and 1.04858e\\+06, got -1"):
        Cpp(lib, bundle, memory=-1.0)


def test_patch_auto_keeps_the_bundle_patch_without_a_finite_halo(lib, tmp_path_factory):
    from toymodels import PixelModel

    class NoHalo(PixelModel):
        def shape_rules(self):
            from dataclasses import replace

            return replace(super().shape_rules(), halo=None)

    _, bundle = _toy(tmp_path_factory, "nohalo", NoHalo())
    cpp = Cpp(lib, bundle)
    assert cpp.info().patch_h == bundle.manifest.patch  # not auto
    plan = cpp.plan(300, 200)
    assert not plan.crop and (plan.patch_h, plan.patch_w) == (bundle.manifest.patch, bundle.manifest.patch)
    with pytest.raises(CppError, match="has no finite receptive field"):
        Cpp(lib, bundle, stitch="crop")


# --- outputs ------------------------------------------------------------------------
@pytest.mark.parametrize("height,width,patch,batch", [(41, 67, 20, 1), (70, 30, 13, 3), (9, 80, 17, 2)])
def test_crop_stitched_output_equals_pythons(lib, stack, height, width, patch, batch):
    _, bundle = stack
    _, image = u8_image(test_image(height, width, seed=height))
    options = dict(patch=patch, batch=batch, stitch="crop")
    cpp, py = Cpp(lib, bundle, **options), python_runtime(bundle, **options)
    assert cpp.plan(width, height).crop and cpp.plan(width, height).tiles >= 2
    np.testing.assert_allclose(cpp.upscale(image), py.upscale(image), atol=1e-5)


@pytest.mark.parametrize("height,width,area,batch", [(64, 90, 30 * 30, 1), (120, 47, 40 * 25, 2), (33, 150, 20 * 50, 3)])
def test_tiled_equals_untiled_in_cpp(lib, stack, height, width, area, batch):
    """Crop stitching is exact: tiles under a small budget give the whole-image call's output
    (and the torch model's), to float rounding."""
    model, bundle = stack
    image = test_image(height, width, seed=width)
    memory = max(1e-3, _budgets_around(bundle, height, width, [area * batch])[0])
    tiled = Cpp(lib, bundle, memory=memory, batch=batch)
    assert tiled.plan(width, height).tiles >= 2 and tiled.plan(width, height).crop
    whole = Cpp(lib, bundle, memory=4.0)
    assert whole.plan(width, height).tiles == 1
    reference = whole.upscale(image)
    np.testing.assert_allclose(tiled.upscale(image), reference, atol=2e-6)
    np.testing.assert_allclose(reference, _torch(model, image.transpose(2, 0, 1)).transpose(1, 2, 0), atol=1e-5)


def test_blending_the_same_tiles_is_not_exact(lib, stack):
    """The property above can fail: blended tiles with a small overlap leave seams."""
    model, bundle = stack
    image = test_image(60, 60, seed=1)
    blended = Cpp(lib, bundle, patch=20, overlap=2, stitch="blend").upscale(image)
    assert np.abs(blended - _torch(model, image.transpose(2, 0, 1)).transpose(1, 2, 0)).max() > 1e-3


@pytest.mark.parametrize("align", ["split", "end"])
def test_split_padding_matches_the_model_on_the_padded_image(lib, tmp_path_factory, align):
    model, bundle = _toy(tmp_path_factory, f"align-{align}", ConvStack(depth=2, multiple_of=8, pad_align=align))
    image = test_image(19, 13, seed=2)  # legal: 24 x 16, 5 and 3 pixels of padding
    before = {"split": (3, 2), "end": (0, 0)}[align]
    planes = image.transpose(2, 0, 1)
    padded = np.pad(planes, ((0, 0), (before[0], 5 - before[0]), (before[1], 3 - before[1])), mode="reflect")
    expected = _torch(model, padded)[:, 2 * before[0]: 2 * (before[0] + 19), 2 * before[1]: 2 * (before[1] + 13)]
    for stitch in ("crop", "blend"):
        cpp = Cpp(lib, bundle, stitch=stitch)
        plan = cpp.plan(13, 19)
        assert (plan.pad_top, plan.pad_bottom, plan.pad_left, plan.pad_right) == (
            before[0], 5 - before[0], before[1], 3 - before[1])
        np.testing.assert_allclose(cpp.upscale(image), expected.transpose(1, 2, 0), atol=1e-5)


def test_noise_fields_follow_split_padding_as_in_python(lib, tmp_path_factory):
    """Noise crops are taken in image coordinates (tile position minus the padding before)."""
    from srexport.models.base import NoiseInput
    from toymodels import PixelModel

    class Noisy(PixelModel):
        def __init__(self):
            super().__init__(noisy=True, multiple_of=8)
            self.noise_inputs = (NoiseInput("noise0", 3, 2, 0),)

        def shape_rules(self):
            from dataclasses import replace

            return replace(super().shape_rules(), pad_align="split")

    _, bundle = _toy(tmp_path_factory, "noisy-split", Noisy())
    _, image = u8_image(test_image(21, 11, seed=3))
    options = dict(noise=0.3, seed=9)
    out, ref = Cpp(lib, bundle, **options).upscale(image), python_runtime(bundle, **options).upscale(image)
    assert Cpp(lib, bundle).plan(11, 21).pad_top == 2
    np.testing.assert_allclose(out, ref, atol=1e-5)


# --- the zoo and OpenVINO -----------------------------------------------------------
def test_crop_stitching_on_openvino_equals_python_openvino(ov_lib, bundle_factory):
    """PCARN-M x2 (halo 21) with its published weights, crop-stitched tiles and patch auto
    under a small budget, C++ and Python both on OpenVINO: identical 8-bit output."""
    from conftest import shared_file

    bundle = bundle_factory("pcarn-m", "m", 2, shared_file("weights", "pcarn", "PCARN-M-L1.pth"))
    u8, image = u8_image(test_image(70, 101, seed=4))
    for options in (dict(patch=48, stitch="crop"), dict(memory=_budgets_around(bundle, 70, 101, [50 * 60])[0])):
        cpp, py = Cpp(ov_lib, bundle, backend="openvino", **options), python_runtime(bundle, "openvino", **options)
        assert cpp.plan(101, 70).tiles >= 2 and cpp.plan(101, 70).crop
        out, ref = cpp.upscale(image), py.upscale(image)
        assert np.abs(out - ref).max() <= 1e-5, options
        assert np.array_equal(cpp.upscale(u8), py.upscale(u8)), options


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,scale,size,patch", [
    ("pcarn-m", "m", 2, (71, 97), 50),
    ("gmgbp", None, None, (181, 40), 176),
    ("mgbp", "ntire2018-track1", None, (61, 83), 60),  # halo 17: 2 x 3 tiles
    ("mgbp", "ntire2018-track2", None, (300, 24), 258),  # halo 128: 2 x 1 tiles
])
def test_zoo_models_with_a_halo_crop_stitch_exactly_in_cpp(ov_lib, bundle_factory, name, variant, scale, size, patch):
    """Random-initialised zoo networks (the receptive field does not depend on the weights):
    C++ crop-stitched tiles equal C++'s one whole-image call of the same graph."""
    bundle = bundle_factory(name, variant, scale)
    m = bundle.manifest
    image = test_image(*size, seed=sum(size))
    options = dict(backend="openvino", noise=0.2 if m.noise_inputs else 0.0, seed=3)
    tiled = Cpp(ov_lib, bundle, patch=patch, stitch="crop", **options)
    assert tiled.plan(size[1], size[0]).tiles >= 2
    whole = Cpp(ov_lib, bundle, memory=8.0, **options)
    assert whole.plan(size[1], size[0]).tiles == 1
    reference = whole.upscale(image)
    np.testing.assert_allclose(tiled.upscale(image), reference, atol=1e-5 * max(1.0, np.abs(reference).max()))
