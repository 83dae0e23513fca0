"""libsrexport (cpp/) through its C ABI via ctypes: the C++ runtime gives the Python
runtime's output on the same bundle, image and options (float to 1e-4, 8-bit to 1 LSB)
and the same noise fields bit for bit.

The library is looked for in $SREXPORT_CPP_BUILD_DIR, then build/cpp (what .ci/cpp.sh
builds); it is (re)built there when cmake, a C++ compiler, nlohmann-json and OpenCV's dnn
module are present, else every test here skips with the reason.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, shared_file

BUILD_DIR = Path(os.environ.get("SREXPORT_CPP_BUILD_DIR", REPO / "build" / "cpp"))

# Which zoo graphs OpenCV DNN 4.6 (Debian's libopencv-dnn-dev) runs, with the inputs pinned
# to the patch shape (cpp/src/onnx_pin.cpp). Keys are the test suite's shared bundles
# (tests/test_export.py FAMILIES), so a full run builds each bundle once.
ZOO = [
    ("gmgbp", None, None),
    ("pcarn-m", "m", 2),
    ("pcarn", "full", 4),
    ("mgbpv2", "2x", None),
    ("bpp", "x2", None),
]


# --- the C ABI ---------------------------------------------------------------------
class Image(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("channels", ctypes.c_int), ("dtype", ctypes.c_int), ("stride", ctypes.c_size_t)]


class Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("overlap", ctypes.c_int),
                ("window", ctypes.c_char_p), ("batch", ctypes.c_int), ("noise", ctypes.c_double),
                ("seed", ctypes.c_uint64), ("threads", ctypes.c_int), ("verify_hashes", ctypes.c_int),
                ("cache_dir", ctypes.c_char_p), ("device", ctypes.c_int)]


class Info(ctypes.Structure):
    _fields_ = [("model", ctypes.c_char_p), ("variant", ctypes.c_char_p), ("scale", ctypes.c_int),
                ("input_kind", ctypes.c_char_p), ("backend", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("overlap", ctypes.c_int),
                ("batch", ctypes.c_int), ("noise_inputs", ctypes.c_int), ("window", ctypes.c_char_p)]


PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
DTYPES = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.float32): 3}
OK, ERR_BUNDLE, ERR_BACKEND, ERR_IMAGE, ERR_CANCELLED = 0, 2, 3, 5, 7


class CppError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    c = ctypes
    lib.srx_version.restype = c.c_char_p
    lib.srx_last_error.restype = c.c_char_p
    lib.srx_backend_available.argtypes = [c.c_char_p]
    lib.srx_options_init.argtypes = [c.POINTER(Options)]
    lib.srx_open.argtypes = [c.c_char_p, c.POINTER(Options), c.POINTER(c.c_void_p)]
    lib.srx_close.argtypes = [c.c_void_p]
    lib.srx_get_info.argtypes = [c.c_void_p, c.POINTER(Info)]
    lib.srx_output_size.argtypes = [c.c_void_p, c.c_int, c.c_int, c.POINTER(c.c_int), c.POINTER(c.c_int)]
    lib.srx_upscale.argtypes = [c.c_void_p, c.POINTER(Image), c.POINTER(Image), PROGRESS, c.c_void_p]
    lib.srx_cancel.argtypes = [c.c_void_p]
    lib.srx_normal_field.argtypes = [c.c_uint64, c.c_uint32, c.c_int64, c.c_int64, c.c_int, c.c_int,
                                     c.POINTER(c.c_float)]
    lib.srx_bicubic.argtypes = [c.POINTER(c.c_float), c.c_int, c.c_int, c.POINTER(c.c_float), c.c_int, c.c_int]
    return lib


def _build(build_dir: Path) -> Path | str:
    """Configure (if needed) and build the shared library; a reason string when it cannot be."""
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (the C++ build needs cmake and g++)"
    if not any(Path(p, "opencv2", "dnn.hpp").exists() for p in ("/usr/include/opencv4", "/usr/local/include/opencv4")):
        return "OpenCV's dnn headers are missing (apt-get install libopencv-dnn-dev): no CPU backend to test"
    if not Path("/usr/include/nlohmann/json.hpp").exists() and not Path("/usr/local/include/nlohmann/json.hpp").exists():
        return "nlohmann/json.hpp is missing (apt-get install nlohmann-json3-dev)"
    if not (build_dir / "CMakeCache.txt").exists() or _openvino_missed(build_dir):
        # SREXPORT_PYTHON: the OpenVINO SDK comes from this interpreter's openvino wheel.
        done = subprocess.run(["cmake", "-S", str(REPO / "cpp"), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
                               f"-DSREXPORT_PYTHON={sys.executable}"], capture_output=True, text=True)
        if done.returncode:
            return f"cmake configure failed: {done.stderr.strip().splitlines()[-1:]}"
    done = subprocess.run(["cmake", "--build", str(build_dir), "--target", "srexport", "-j2"],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"building libsrexport failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return build_dir / "libsrexport.so"


def _openvino_missed(build_dir: Path) -> bool:
    """The build was configured without OpenVINO (AUTO), but this Python has the openvino
    wheel (CI configures build/cpp before the test extra installs it): configure again."""
    cache = (build_dir / "CMakeCache.txt").read_text(errors="replace")
    if "SREXPORT_WITH_OPENVINO:STRING=AUTO" not in cache or importlib.util.find_spec("openvino") is None:
        return False
    found = [line for line in cache.splitlines() if line.startswith("OpenVINO_DIR:")]
    return not found or found[0].endswith("NOTFOUND")


@pytest.fixture(scope="session")
def lib() -> ctypes.CDLL:
    built = _build(BUILD_DIR)
    if isinstance(built, str):
        pytest.skip(built)
    library = _declare(ctypes.CDLL(str(built)))
    if not library.srx_backend_available(b"opencv"):
        pytest.skip("libsrexport was built without the opencv backend (no CPU backend to compare)")
    return library


class Cpp:
    """A libsrexport handle (srx_open ... srx_close)."""

    def __init__(self, lib: ctypes.CDLL, bundle, **options):
        self.lib = lib
        opt = Options()
        lib.srx_options_init(ctypes.byref(opt))
        opt.backend = options.pop("backend", "opencv").encode()
        patch = options.pop("patch", None)
        if patch is not None:
            opt.patch_h = opt.patch_w = patch
        for key, value in options.items():
            setattr(opt, key, value.encode() if isinstance(value, str) else value)
        if not opt.threads:
            opt.threads = 2
        self.handle = ctypes.c_void_p()
        root = bundle if isinstance(bundle, (str, Path)) else bundle.root
        status = lib.srx_open(str(root).encode(), ctypes.byref(opt), ctypes.byref(self.handle))
        if status != OK:
            raise CppError(status, lib.srx_last_error().decode())

    def info(self) -> Info:
        info = Info()
        assert self.lib.srx_get_info(self.handle, ctypes.byref(info)) == OK
        return info

    def upscale(self, array: np.ndarray, progress=None) -> np.ndarray:
        array = np.ascontiguousarray(array)
        h, w = array.shape[:2]
        c = 1 if array.ndim == 2 else array.shape[2]
        ow, oh = ctypes.c_int(), ctypes.c_int()
        assert self.lib.srx_output_size(self.handle, w, h, ctypes.byref(ow), ctypes.byref(oh)) == OK
        out = np.zeros((oh.value, ow.value, c), array.dtype)
        src = Image(array.ctypes.data, w, h, c, DTYPES[array.dtype], 0)
        dst = Image(out.ctypes.data, ow.value, oh.value, c, DTYPES[array.dtype], 0)
        callback = PROGRESS(progress) if progress else PROGRESS()
        status = self.lib.srx_upscale(self.handle, ctypes.byref(src), ctypes.byref(dst), callback, None)
        if status != OK:
            raise CppError(status, self.lib.srx_last_error().decode())
        return out[..., 0] if array.ndim == 2 else out

    def close(self):
        if self.handle:
            self.lib.srx_close(self.handle)
            self.handle = ctypes.c_void_p()

    def __del__(self):
        self.close()


def python_runtime(bundle, **options):
    import srexport

    options.setdefault("threads", 2)
    return srexport.load(bundle.root, backend="onnxruntime", **options)


def test_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth image with texture and the full range (not random noise, which no SR net sees)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    planes = [0.5 + 0.45 * np.sin(x / (3 + c) + y / (5 + 2 * c) + c) + 0.05 * rng.standard_normal((h, w))
              for c in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 1).astype(np.float32)


test_image.__test__ = False  # a helper, not a test


def compare(lib, bundle, image: np.ndarray, through_uint8: bool = False, **options) -> tuple[float, int, np.ndarray]:
    """(max abs float error, max 8-bit LSB difference, Python's output) of C++ vs Python.

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


@pytest.mark.slow
@pytest.mark.parametrize("name,variant,scale", ZOO, ids=[f"{n}-{v}-{s}" for n, v, s in ZOO])
def test_zoo_graph_runs_on_opencv_and_matches_python(lib, bundle_factory, name, variant, scale):
    bundle = bundle_factory(name, variant, scale)
    m = bundle.manifest
    rules = m.shape_rules
    # A small image that still needs 2 x 2 legal tiles, in the graph's input pixels.
    patch = rules.legal_at_least(max(rules.min_size, 24))
    overlap = min(m.overlap, patch // 3) // 2 * 2
    lr = 20 if m.input_kind == "lr" else patch // m.scale + 6
    image = test_image(lr + 1, lr + 6, seed=5)
    options = dict(patch=patch, overlap=overlap, noise=0.1 if m.noise_inputs else 0.0, seed=11)
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
