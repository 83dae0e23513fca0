"""What the tests of libsrexport (cpp/) share: building the library, its C ABI through
ctypes (`Cpp`, one srx_open handle), the Python runtimes it is compared with, the zoo of
super-resolution models and the small 2 x 2-tile case each zoo test runs.

The library is looked for in $SREXPORT_CPP_BUILD_DIR, then build/cpp (what .ci/cpp.sh
builds); it is (re)built there when cmake, a C++ compiler, nlohmann-json and OpenCV's dnn
module are present, else the tests that need it skip with the reason.
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

from conftest import REPO
from srexport.cabi import (ERR_ARGUMENT, ERR_BACKEND, ERR_BUNDLE, ERR_CANCELLED, ERR_IMAGE, ERR_SHAPE,  # noqa: F401
                           ERR_UNAVAILABLE, OK, PATCH_AUTO, PATCH_BUNDLE, PROGRESS, Image, Info, Options, Plan,
                           declare)
from test_export import FAMILIES

BUILD_DIR = Path(os.environ.get("SREXPORT_CPP_BUILD_DIR", REPO / "build" / "cpp"))

# Every super-resolution family of the zoo (tests/test_export.py FAMILIES, the same keys, so
# a full run builds each bundle once) and MGBP's 4x design (track 2; FAMILIES has the 8x
# track 1); the discriminator is a critic the runtime refuses.
SR_ZOO = [family for family in FAMILIES if family[0] != "discriminator"] + [("mgbp", "ntire2018-track2", None)]
ZOO_IDS = [f"{n}-{v}-{s}" for n, v, s in SR_ZOO]

DTYPES = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2, np.dtype(np.float32): 3}


class CppError(RuntimeError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def build(build_dir: Path = BUILD_DIR) -> Path | str:
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


def load_library(backend: str) -> ctypes.CDLL:
    """The built library, or skip when it cannot be built or lacks `backend`."""
    built = build()
    if isinstance(built, str):
        pytest.skip(built)
    library = declare(ctypes.CDLL(str(built)))
    if not library.srx_backend_available(backend.encode()):
        pytest.skip(f"libsrexport was built without the {backend} backend")
    return library


class Cpp:
    """A libsrexport handle (srx_open ... srx_close). `patch` is an int (square), "auto"
    (the default, as the Python runtime's) or "bundle" (the manifest's)."""

    def __init__(self, lib: ctypes.CDLL, bundle, **options):
        self.lib = lib
        opt = Options()
        lib.srx_options_init(ctypes.byref(opt))
        opt.backend = options.pop("backend", "opencv").encode()
        patch = options.pop("patch", "auto")
        if patch != "auto":
            opt.patch_h = opt.patch_w = PATCH_BUNDLE if patch == "bundle" else patch
        memory = options.pop("memory", None)
        if memory is not None:
            opt.memory_gib = memory
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

    def plan(self, width: int, height: int) -> Plan:
        plan = Plan()
        status = self.lib.srx_get_plan(self.handle, width, height, ctypes.byref(plan))
        if status != OK:
            raise CppError(status, self.lib.srx_last_error().decode())
        return plan

    def tiling_note(self) -> str:
        return self.lib.srx_tiling_note(self.handle).decode()

    def precision_note(self) -> str:
        return self.lib.srx_precision_note(self.handle).decode()

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


# --- the Python side ---------------------------------------------------------------
def python_runtime(bundle, backend: str = "onnxruntime", **options):
    """The Python runtime as the C++ library runs: one item at a time (libsrexport serializes
    its calls), so on ONNX Runtime one session rather than the throughput mode's streams,
    whose shared budget can plan an image in more tiles."""
    import srexport
    from srexport.runtime.backends.options import OrtOptions

    options.setdefault("threads", 2)
    if backend == "onnxruntime":
        options.setdefault("backend_options", OrtOptions(streams=1))
    return srexport.load(bundle.root, backend=backend, **options)


def test_image(h: int, w: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth image with texture and the full range (not random noise, which no SR net sees)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    planes = [0.5 + 0.45 * np.sin(x / (3 + c) + y / (5 + 2 * c) + c) + 0.05 * rng.standard_normal((h, w))
              for c in range(channels)]
    return np.clip(np.stack(planes, -1), 0, 1).astype(np.float32)


test_image.__test__ = False  # a helper, not a test


def u8_image(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, the float image both runtimes see for it)."""
    u8 = np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
    return u8, u8.astype(np.float32) / np.float32(255)


def two_by_two_case(manifest) -> tuple[np.ndarray, dict]:
    """(image, options) of a small image that still needs 2 x 2 legal tiles of a blended
    patch, in the graph's input pixels, with noise where the model has noise inputs."""
    rules = manifest.shape_rules
    patch = rules.legal_at_least(max(rules.min_size, 24))
    overlap = min(manifest.overlap, patch // 3) // 2 * 2
    lr = 20 if manifest.input_kind == "lr" else patch // manifest.scale + 6
    image = test_image(lr + 1, lr + 6, seed=5)
    options = dict(patch=patch, overlap=overlap, noise=0.1 if manifest.noise_inputs else 0.0, seed=11)
    return image, options
