"""libsrexport's openvino backend through the C ABI (ctypes) against the Python runtime on
its openvino backend: same bundle, image and options give the same output (fp32 within
1e-5 of the output's range, identical 8-bit output), int8 stays within the accuracy the
bundle records, bf16 is refused in one line on CPUs without BF16 (and matches Python
where the CPU has it), `auto` picks OpenVINO, the discriminator is refused.

The library is built in build/cpp by tests/_cpp.py (configured with this Python, whose
openvino wheel carries OpenVINO's C++ SDK); without the wheel or the build tools every test
skips with the reason.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest

from _cpp import (ERR_ARGUMENT, ERR_BUNDLE, ERR_UNAVAILABLE, SR_ZOO, ZOO_IDS, Cpp, CppError, load_library,
                  python_runtime, two_by_two_case, u8_image)
from conftest import REPO, shared_file

ACCURACY_MARGIN_DB = 1.0  # as tests/test_backend_openvino.py: a recorded PSNR may be missed by this much


@pytest.fixture(scope="session")
def ov_lib() -> ctypes.CDLL:
    pytest.importorskip("openvino", reason="openvino is not installed (the test extra installs it)")
    return load_library("openvino")


@pytest.fixture(scope="session")
def caps() -> set[str]:
    from srexport.runtime.backends.openvino import cpu_capabilities

    return cpu_capabilities()


def python_openvino(bundle, **options):
    return python_runtime(bundle, backend="openvino", **options)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    from srexport.calib import accuracy

    return accuracy.psnr(np.clip(reference, 0, 1), np.clip(test, 0, 1))


def compare_openvino(lib, bundle, image: np.ndarray, **options) -> tuple[float, int, np.ndarray, np.ndarray]:
    """(max abs float difference, max 8-bit difference, Python's float output, C++'s) of
    C++ on openvino vs Python on openvino; the 8-bit outputs are the runtimes' own uint8 paths."""
    u8, image = u8_image(image)
    py, cpp = python_openvino(bundle, **options), Cpp(lib, bundle, backend="openvino", **options)
    assert cpp.info().backend == b"openvino"
    ref, out = py.upscale(image), cpp.upscale(image)
    assert out.shape == ref.shape and out.dtype == np.float32
    lsb = int(np.abs(cpp.upscale(u8).astype(int) - py.upscale(u8).astype(int)).max())
    return float(np.abs(out - ref).max()), lsb, ref, out


# --- fp32 parity on the zoo ---------------------------------------------------------
def test_pcarn_m_with_published_weights_matches_python_openvino(ov_lib, bundle_factory):
    from PIL import Image as PILImage

    bundle = bundle_factory("pcarn-m", "m", 2, shared_file("weights", "pcarn", "PCARN-M-L1.pth"))
    image = np.asarray(PILImage.open(REPO / "examples" / "sample.png").convert("RGB"), np.float32)[:64, :80] / 255
    for batch in (1, 3):  # LATENCY, and THROUGHPUT streams with one infer request per patch
        err, lsb, ref, _ = compare_openvino(ov_lib, bundle, image, patch=40, overlap=12, batch=batch)
        assert err <= 1e-5 and lsb == 0, (batch, err, lsb)
        assert ref.std() > 0.05  # a real picture came out, not a flat one


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name,variant,scale", SR_ZOO, ids=ZOO_IDS)
def test_zoo_fp32_on_openvino_matches_python(ov_lib, bundle_factory, name, variant, scale, batch):
    bundle = bundle_factory(name, variant, scale)
    image, options = two_by_two_case(bundle.manifest)
    err, lsb, ref, _ = compare_openvino(ov_lib, bundle, image, batch=batch, **options)
    # Randomly initialised networks have outputs far outside [0, 1]: the float tolerance is
    # relative to the output's range.
    scale = max(1.0, float(np.abs(ref).max()))
    # Batches of 2 run on OpenVINO THROUGHPUT streams: Python's streams and C++'s may split
    # the threads differently, and sums in another order can round 8-bit values apart by 1.
    assert err <= 1e-5 * scale and lsb <= 1, (err, scale, lsb)


# --- int8 and bf16 ------------------------------------------------------------------
@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory):
    """A pcarn-m x2 bundle with its QDQ graph, calibrated on CSet5 by the build, which
    records the int8 graph's PSNR vs FP32."""
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, build_bundle

    images = Path(shared_file("images", "CSet5"))
    out = tmp_path_factory.mktemp("cpp-ov-int8") / "pcarn-m-x2"
    options = PrecisionOptions(int8=True, calib_dir=images, calib_patches=8)
    request = BuildRequest(model="pcarn-m", variant="m", scale=2, out=out, precision=options)
    return build_bundle(request, warn=lambda message: None)


def cset5_crop() -> np.ndarray:
    from PIL import Image as PILImage

    image = PILImage.open(shared_file("images", "CSet5", "butterfly.png")).convert("RGB")
    return np.asarray(image, np.float32)[40:104, 60:140] / 255


@pytest.fixture(scope="module")
def int8_mgbp_bundle(tmp_path_factory):
    """MGBP track 2 (4x) with its published checkpoint and a QDQ graph calibrated on CSet5."""
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, build_bundle

    weights = shared_file("weights", "mgbp-ntire2018", "ntire2018-track2.pkl")
    images = Path(shared_file("images", "CSet5"))
    out = tmp_path_factory.mktemp("cpp-ov-int8") / "mgbp-track2"
    options = PrecisionOptions(int8=True, calib_dir=images, calib_patches=8)
    request = BuildRequest(model="mgbp", variant="ntire2018-track2", out=out, weights=weights, precision=options)
    return build_bundle(request, warn=lambda message: None)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["pcarn-m-x2", "mgbp-track2"])
def test_int8_matches_python_and_stays_within_the_recorded_accuracy(ov_lib, request, which):
    int8_bundle = request.getfixturevalue({"pcarn-m-x2": "int8_bundle", "mgbp-track2": "int8_mgbp_bundle"}[which])
    recorded = int8_bundle.manifest.precisions["int8"].psnr_vs_fp32_db
    assert recorded is not None and recorded > 20
    image = cset5_crop()
    options = dict(patch=40, overlap=8)
    err, lsb, _, int8 = compare_openvino(ov_lib, int8_bundle, image, precision="int8", **options)
    assert err <= 1e-5 and lsb == 0, (err, lsb)
    fp32 = Cpp(ov_lib, int8_bundle, backend="openvino", precision="fp32", **options).upscale(u8_image(image)[1])
    measured = psnr(fp32, int8)
    assert np.isfinite(measured) and measured >= recorded - ACCURACY_MARGIN_DB, (measured, recorded)
    assert measured < 200  # the int8 graph ran, not the fp32 one


def test_bf16_is_refused_in_one_line_where_the_cpu_lacks_it(ov_lib, bundle_factory, caps):
    if "BF16" in caps:
        pytest.skip("this CPU computes bf16 (the refusal is for CPUs without AVX512-BF16/AMX)")
    bundle = bundle_factory("pcarn-m", "m", 2)
    for backend in ("openvino", "auto"):
        with pytest.raises(CppError) as info:
            Cpp(ov_lib, bundle, backend=backend, precision="bf16")
        message = str(info.value)
        assert info.value.status == ERR_UNAVAILABLE
        assert "\n" not in message and "bf16 needs a CPU with AVX512-BF16 or AMX" in message
        assert "fp32 or int8" in message


def test_bf16_matches_python_where_the_cpu_has_it(ov_lib, bundle_factory, caps):
    if "BF16" not in caps:
        pytest.skip("this CPU has no BF16 (AVX512-BF16 or AMX): bf16 parity needs such a CPU")
    bundle = bundle_factory("pcarn-m", "m", 2, shared_file("weights", "pcarn", "PCARN-M-L1.pth"))
    image = cset5_crop()
    err, lsb, ref, out = compare_openvino(ov_lib, bundle, image, precision="bf16", patch=40, overlap=8)
    assert err <= 1e-5 and lsb == 0, (err, lsb)
    fp32 = Cpp(ov_lib, bundle, backend="openvino", patch=40, overlap=8).upscale(u8_image(image)[1])
    assert 30 < psnr(fp32, out) < 200  # bf16 really ran (not f32), and stayed close


def test_precisions_the_backend_cannot_run_are_refused(ov_lib, bundle_factory):
    bundle = bundle_factory("pcarn-m", "m", 2)
    with pytest.raises(CppError, match="not fp16: on a CPU fp16 brings no speed") as info:
        Cpp(ov_lib, bundle, backend="openvino", precision="fp16")
    assert info.value.status == ERR_ARGUMENT
    with pytest.raises(CppError, match="bf16 runs on the openvino backend only, not on opencv"):
        Cpp(ov_lib, bundle, backend="opencv", precision="bf16")
    with pytest.raises(CppError, match="has no int8 graph") as info:
        Cpp(ov_lib, bundle, backend="openvino", precision="int8")
    assert info.value.status == ERR_BUNDLE


# --- selection and refusals ---------------------------------------------------------
def _with_records(bundle, root: Path, int8: dict | None = None, bf16: dict | None = None) -> Path:
    """A copy of a tiny int8 bundle whose manifest records these int8 notes and bf16 entry."""
    import json
    import shutil

    shutil.copytree(bundle.root, root)
    manifest = json.loads((root / "manifest.json").read_text())
    if int8 is not None:
        manifest["precisions"]["int8"]["notes"] = int8
    if bf16 is not None:
        manifest["precisions"]["bf16"] = {"file": "model.fp32.onnx", **bf16}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_precision_auto_chooses_what_python_chooses_on_this_machine(ov_lib, tmp_path):
    """The default precision ("auto") of libsrexport against Python's on the same bundles and
    this machine: the same precision and the same reason, as the gates and the mixed-int8 rule
    see each record (the other machines' branches: cpp/tests/test_core.cpp)."""
    from srexport.bundle import load_bundle
    from srexport.runtime.backends import resolve_precision
    from test_precision_auto import tiny_int8_bundle

    built = tiny_int8_bundle(tmp_path / "build")
    bf16 = {"psnr_vs_fp32_db": 53.1, "notes": {"psnr_y_loss_vs_fp32_db": 0.0035}}
    met = {"selection": {"met": True}, "psnr_y_loss_vs_fp32_db": 0.087}
    cases = {
        "as built": {},
        "bf16 too": {"bf16": bf16},
        "mixed int8 and bf16": {"int8": {**met, "float_in_trunk": True}, "bf16": bf16},
        "excluded nodes, no float_in_trunk": {"int8": {**met, "excluded_nodes": ["/x/Conv"]}, "bf16": bf16},
        "int8 outside its gate": {"int8": {"selection": {"met": True}, "psnr_y_loss_vs_fp32_db": 0.5}, "bf16": bf16},
        "int8 target unmet": {"int8": {"selection": {"met": False}}},
        "bf16 outside its gate": {"int8": {"selection": {"met": False}},
                                  "bf16": {"psnr_vs_fp32_db": 45.0, "notes": {"psnr_y_loss_vs_fp32_db": 0.2}}},
        "bf16 by PSNR against fp32": {"bf16": {"psnr_vs_fp32_db": 61.25, "notes": {}}},
    }
    seen = set()
    for k, (name, records) in enumerate(cases.items()):
        root = _with_records(built, tmp_path / f"case{k}", **records)
        for backend in ("auto", "openvino"):
            python = resolve_precision(load_bundle(root), backend, "auto")
            cpp = Cpp(ov_lib, root, backend=backend, patch=16)  # TinySR's Resize: no C++ memory model
            assert (cpp.info().precision.decode(), cpp.precision_note()) == (python.precision, python.reason), name
            seen.add(python.precision)
    # What this CPU offers, by the probes (OpenVINO's capabilities, /proc/cpuinfo's flags): a CPU
    # with BF16 runs bf16 (and int8) where the records allow; with VNNI only, int8; with neither
    # (an AVX2-only EPYC), fp32.
    from srexport.runtime.backends.openvino import cpu_capabilities
    from srexport.runtime.backends.precision_auto import cpu_flags

    caps = cpu_capabilities()
    reduced = "BF16" in caps or bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    assert "fp32" in seen and ("bf16" in seen) == ("BF16" in caps) and (len(seen) >= 2) == reduced, (seen, caps)
    assert Cpp(ov_lib, built, backend="openvino", precision="fp32", patch=16).precision_note() == ""


def test_auto_picks_openvino_over_opencv_as_python_does(ov_lib, bundle_factory):
    from srexport.runtime.backends.selection import auto_backend

    if auto_backend("fp32", model="gmgbp")[0] != "openvino":
        pytest.skip("Python's auto picks a GPU backend here; the C++ comparison is for CPU machines")
    bundle = bundle_factory("gmgbp", None, 4)
    assert Cpp(ov_lib, bundle, backend="auto").info().backend == b"openvino"


def test_auto_falls_to_openvino_for_pcarn_m_fp32_without_onnxruntime_compiled_in(ov_lib, bundle_factory):
    # Python's auto runs PCARN-M fp32 on ONNX Runtime (selection.ORT_FP32_MODELS); this
    # libsrexport has no ONNX Runtime (its wheel ships no headers), so auto takes the next.
    from srexport.runtime.backends.selection import auto_backend

    cpu_choices = (auto_backend("fp32", model="pcarn-m")[0], auto_backend("fp32", model="gmgbp")[0])
    if cpu_choices != ("onnxruntime", "openvino"):
        pytest.skip("Python's auto picks a GPU backend here; the C++ comparison is for CPU machines")
    bundle = bundle_factory("pcarn-m", "m", 2)
    assert Cpp(ov_lib, bundle, backend="auto").info().backend == b"openvino"


def test_discriminator_is_refused_on_openvino_too(ov_lib, bundle_factory):
    bundle = bundle_factory("discriminator", None, None)
    with pytest.raises(CppError, match="holds a critic network, not a super-resolution one") as exc:
        Cpp(ov_lib, bundle, backend="openvino")
    assert exc.value.status == ERR_BUNDLE
