"""libsrexport (cpp/) through its C ABI via ctypes: the C++ runtime gives the Python
runtime's output on the same bundle, image and options (float to 1e-4, 8-bit to 1 LSB)
and the same noise fields bit for bit. The build and the ctypes side live in tests/_cpp.py.
"""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

from _cpp import (ERR_BUNDLE, ERR_CANCELLED, OK, SR_ZOO, ZOO_IDS, Cpp, CppError, load_library, python_runtime,
                  test_image, two_by_two_case)
from conftest import REPO, shared_file


@pytest.fixture(scope="session")
def lib() -> ctypes.CDLL:
    return load_library("opencv")


def compare(lib, bundle, image: np.ndarray, through_uint8: bool = False, **options) -> tuple[float, int, np.ndarray]:
    """(max abs float error, max 8-bit LSB difference, Python's output) of C++ (OpenCV DNN)
    vs Python (ONNX Runtime).

    The image is first made an 8-bit one (float = uint8 / 255, as both runtimes convert
    uint8 input), so the 8-bit outputs are the quantised float outputs; through_uint8 also
    runs both on the uint8 array itself."""
    u8 = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    image = u8.astype(np.float32) / np.float32(255)
    py, cpp = python_runtime(bundle, **options), Cpp(lib, bundle, **options)
    ref, out = py.upscale(image), cpp.upscale(image)
    assert out.shape == ref.shape and out.dtype == np.float32
    quantised = lambda a: np.rint(np.clip(a, 0, 1) * 255).astype(int)  # noqa: E731
    lsb = int(np.abs(quantised(out) - quantised(ref)).max())
    if through_uint8:
        lsb = max(lsb, int(np.abs(cpp.upscale(u8).astype(int) - py.upscale(u8).astype(int)).max()))
    return float(np.abs(out - ref).max()), lsb, ref


# --- noise and resize primitives ----------------------------------------------------
@pytest.mark.parametrize("seed,stream,top,left,h,w", [
    (0, 0, 0, 0, 64, 48), (7, 1, -8, -13, 37, 29), (2**40 + 3, 16, 1000, -2000, 17, 55),
    (2**64 - 1, 17, -(2**31), 2**31 - 40, 9, 80),
])
def test_noise_field_is_the_python_field_bit_for_bit(lib, seed, stream, top, left, h, w):
    from srexport.runtime.noise import normal_field

    out = np.empty((h, w), np.float32)
    assert lib.srx_normal_field(seed, stream, top, left, h, w, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))) == OK
    ref = normal_field(seed, stream, top, left, h, w)
    # Same integers (Philox4x32-10) and the same double Box-Muller rounded once to float32:
    # identical; libm and NumPy's SIMD log/cos may differ in the last double bit, which
    # could move a float32 by one ulp: allow that, count it.
    ulps = np.abs(out.view(np.int32).astype(np.int64) - ref.view(np.int32).astype(np.int64))
    assert ulps.max() <= 1 and (ulps > 0).mean() < 1e-3


@pytest.mark.parametrize("h,w,oh,ow", [(7, 5, 14, 10), (13, 21, 39, 63), (10, 10, 160, 160), (9, 4, 9, 12), (6, 6, 3, 4)])
def test_bicubic_is_pil_bicubic_bit_for_bit(lib, h, w, oh, ow):
    from srexport.runtime.resize import bicubic

    plane = np.random.default_rng(h * w).random((h, w), dtype=np.float32)
    out = np.empty((oh, ow), np.float32)
    ptr = ctypes.POINTER(ctypes.c_float)
    assert lib.srx_bicubic(plane.ctypes.data_as(ptr), h, w, out.ctypes.data_as(ptr), oh, ow) == OK
    np.testing.assert_array_equal(out, bicubic(plane[None], oh, ow)[0])


# --- toy bundles: noise tiling, borders, image kinds ---------------------------------
@pytest.fixture(scope="session")
def toy_bundles(tmp_path_factory):
    import torch
    from srexport.export.build import export_bundle
    from srexport.models.base import NoiseInput
    from toymodels import BorderModel, PixelModel

    class PixelModel3(PixelModel):
        """PixelModel with a 3-channel noise map: OpenCV DNN 4.6 cannot broadcast a 1-channel
        graph input over 3 channels in an Add (PixelModel(noisy=True) fails there)."""

        def __init__(self):
            super().__init__(noisy=True)
            self.noise_inputs = (NoiseInput("noise0", 3, 2, 0),)

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cpp-toys")
    identity = {"model": "toy", "variant": "v", "scale": 2, "task": "sr"}
    return {
        "pixel": export_bundle(PixelModel3(), root / "pixel", identity, patch=16),
        "border": export_bundle(BorderModel(), root / "border", identity, patch=16),
    }


@pytest.mark.parametrize("toy", ["pixel", "border"])
@pytest.mark.parametrize("patch,overlap,batch", [(16, 4, 1), (9, 2, 3), (64, 8, 2)])
def test_noise_tiles_agree_with_python_for_the_same_seed(lib, toy_bundles, toy, patch, overlap, batch):
    bundle = toy_bundles[toy]
    image = test_image(23, 31, seed=1)
    options = dict(patch=patch, overlap=overlap, batch=batch, noise=0.25, seed=2**33 + 5)
    err, lsb, _ = compare(lib, bundle, image, through_uint8=True, **options)
    assert err <= 1e-5 and lsb <= 1
    # ... and the noise really is there (a different seed changes the output).
    cpp = Cpp(lib, bundle, **{**options, "seed": 6})
    assert np.abs(cpp.upscale(image) - Cpp(lib, bundle, **options).upscale(image)).max() > 0.05


@pytest.mark.parametrize("shape,dtype", [((13, 17), np.uint8), ((13, 17, 1), np.uint16), ((13, 17, 4), np.uint8),
                                         ((13, 17, 4), np.float32), ((5, 3, 3), np.uint16)])
def test_image_kinds_match_the_python_array_rules(lib, toy_bundles, shape, dtype):
    bundle = toy_bundles["border"]
    rng = np.random.default_rng(3)
    peak = {np.uint8: 255, np.uint16: 65535}.get(dtype)
    image = (rng.integers(0, peak + 1, shape) if peak else rng.random(shape)).astype(dtype)
    py, cpp = python_runtime(bundle, patch=8, overlap=2), Cpp(lib, bundle, patch=8, overlap=2)
    ref, out = py.upscale(image), cpp.upscale(image)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    diff = np.abs(out.astype(np.float64) - ref.astype(np.float64)).max()
    assert diff <= (1e-5 if dtype == np.float32 else 1)


def test_errors_are_statuses_with_the_python_messages(lib, toy_bundles, tmp_path):
    with pytest.raises(CppError, match="bundle not found") as exc:
        Cpp(lib, tmp_path / "missing")
    assert exc.value.status == ERR_BUNDLE
    damaged = tmp_path / "damaged"
    shutil.copytree(toy_bundles["pixel"].root, damaged)
    with open(damaged / "model.fp32.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(CppError, match="is damaged: model.fp32.onnx does not match its SHA-256"):
        Cpp(lib, damaged)
    cpp = Cpp(lib, toy_bundles["pixel"])
    with pytest.raises(CppError, match="cancelled") as exc:
        cpp.upscale(test_image(40, 40), progress=lambda done, total, user: 1)
    assert exc.value.status == ERR_CANCELLED


# --- the zoo ------------------------------------------------------------------------
def test_pcarn_m_with_published_weights_matches_python(lib, bundle_factory):
    from PIL import Image as PILImage

    bundle = bundle_factory("pcarn-m", "m", 2, shared_file("weights", "pcarn", "PCARN-M-L1.pth"))
    image = np.asarray(PILImage.open(REPO / "examples" / "sample.png").convert("RGB"), np.float32)[:64, :80] / 255
    err, lsb, _ = compare(lib, bundle, image, through_uint8=True, patch=40, overlap=12, batch=2)
    assert err <= 1e-4 and lsb <= 1


# MGBP's channel shuffles are ONNX Gathers with an index vector, which OpenCV DNN 4.6 cannot
# import (the OpenVINO backend runs them; tests/test_cpp_openvino.py).
OPENCV_ZOO = [family for family in SR_ZOO if family[0] != "mgbp"]


def test_mgbp_is_refused_by_opencv_in_one_line_naming_the_gather(lib, bundle_factory):
    bundle = bundle_factory("mgbp", "ntire2018-track1", None)
    with pytest.raises(CppError, match=r"OpenCV DNN \S+ cannot import .*Gather") as info:
        Cpp(lib, bundle, patch=64)
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,scale", OPENCV_ZOO, ids=[f"{n}-{v}-{s}" for n, v, s in OPENCV_ZOO])
def test_zoo_graph_runs_on_opencv_and_matches_python(lib, bundle_factory, name, variant, scale):
    bundle = bundle_factory(name, variant, scale)
    image, options = two_by_two_case(bundle.manifest)
    err, lsb, ref = compare(lib, bundle, image, **options)
    # Randomly initialised networks (no published weights for most of the zoo) have outputs
    # far outside [0, 1]: measure the float error relative to the output's range.
    scale = max(1.0, float(np.abs(ref).max()))
    assert err <= 1e-4 * scale and lsb <= 1, (err, scale, lsb)


def test_discriminator_is_refused_as_not_super_resolution(lib, bundle_factory):
    bundle = bundle_factory("discriminator", None, None)
    with pytest.raises(CppError, match="holds a critic network, not a super-resolution one") as exc:
        Cpp(lib, bundle)
    assert exc.value.status == ERR_BUNDLE
