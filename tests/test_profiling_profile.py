"""`profile_bundle`: a real profile of a small bundle follows the documented schema, and
the Titan X comparison picks the papers' rows and states how it got this device's time.

Timings themselves are never asserted (shared 2-core machines vary by 3x): only their
structure and internal consistency.
"""

from __future__ import annotations

import json
import sys

import pytest

from srexport.errors import BundleError, SrExportError
from srexport.models import build_model
from srexport.profiling import PROFILE_SCHEMA, profile_bundle, run_profile, summary, validate
from srexport.profiling import titanx
from srexport.profiling.schema import SchemaError, errors
from srexport.runtime.backends.selection import available_backends
from srexport.runtime.tiler import plan_tiles


@pytest.fixture(scope="module")
def pcarn_bundle(bundle_factory):
    return bundle_factory("pcarn-m", "m", 4)


@pytest.fixture(scope="module")
def profile(pcarn_bundle):
    # 64x32 LR -> 256x128 output; 32 px patches with overlap 8: three tiles in a row.
    return profile_bundle(
        pcarn_bundle.root, size="256x128", patch=32, overlap=8, repeats=3, warmup=1, e2e_repeats=2, op_runs=2
    )


def test_profile_follows_the_schema(profile):
    validate(profile)
    text = json.dumps(profile, allow_nan=False)  # plain JSON types only, no NaN
    assert json.loads(text) == profile
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(PROFILE_SCHEMA)
    jsonschema.validate(profile, PROFILE_SCHEMA, cls=jsonschema.Draft202012Validator)


def test_profile_describes_the_run(profile):
    p = profile
    identity = (p["model"], p["variant"], p["scale"], p["precision"], p["backend"])
    from machine import expected_auto_backend_without_tensorrt

    # backend auto: the fastest on this machine (ONNX Runtime for PCARN-M fp32 on a CPU)
    assert identity == ("pcarn-m", "m", 4, "fp32", expected_auto_backend_without_tensorrt("fp32", "pcarn-m"))
    assert p["size"] == {"width": 256, "height": 128} and p["input_size"] == {"width": 64, "height": 32}
    assert p["patch"] == {"height": 32, "width": 32} and p["tiles"] == 3 and p["overlap"] == 8
    for stats in (p["latency_ms"], p["end_to_end_s"], p["best_batch"]["per_patch_ms"]):
        assert 0 < stats["p10"] <= stats["median"] <= stats["p90"]
    # repeats=3 patch calls at batch 1, e2e_repeats=2 whole images, op_runs=2 profiled runs
    assert p["latency_ms"]["runs"] == 3 and p["end_to_end_s"]["runs"] == 2 and p["op_times"]["runs"] == 2
    assert p["batches"][0]["per_patch_ms"] == p["batches"][0]["call_ms"] == p["latency_ms"]
    assert p["batches"][0]["batch"] == 1 and p["best_batch"]["batch"] in [b["batch"] for b in p["batches"]]
    assert p["mpx_per_s"] == pytest.approx(256 * 128 / p["end_to_end_s"]["median"] / 1e6)
    # FLOPs per output pixel of the 32x32 patch: PCARN-M x4 costs the same per pixel at
    # any size (same padding), 35,253.6 MAC as at 1280x720, less what the build's CPU
    # rewrites remove: the add-mean 1x1 (3 x 3 MAC per output pixel, folded into the exit
    # convolution) and the sub-mean 1x1 (3 x 3 MAC per LR pixel = 9 / 16 per output pixel,
    # now an Add); and the exit convolution (64 -> 3, 3x3: 1,728 MAC per output pixel) moved
    # before the last pixel shuffle, onto the coarse grid (one pixel = 2 x 2 output pixels)
    # and split into its 48 non-zero (sub-pixel, tap) pairs: a 256 -> 48 1x1, a 3x3
    # depthwise shift of the 48 and a 48 -> 12 1x1 sum.
    exit_split = (256 * 48 + 48 * 9 + 48 * 12) / 4
    assert p["macs_per_px"] == pytest.approx(35_253.5625 - 9 - 9 / 16 - 1728 + exit_split)
    assert p["flops_per_px"] > 2 * p["macs_per_px"]  # plus ReLU and Add
    patch_flops = p["flops"]["flops"]
    assert patch_flops == pytest.approx(p["flops_per_px"] * 128 * 128)  # a 32 px LR patch: 128 x 128 output
    assert p["achieved_gflops"] == pytest.approx(patch_flops / p["best_batch"]["per_patch_ms"]["median"] / 1e6)
    assert p["peak"]["source"] == "measured" and p["peak"]["gflops"] > 0
    assert p["peak"]["fraction"] == pytest.approx(p["achieved_gflops"] / p["peak"]["gflops"])
    assert p["peak_rss_mb"] > 0 and p["peak_device_mb"] is None
    ops = p["op_times"]["ops"]
    assert ops and abs(sum(o["share"] for o in ops) - 1) < 1e-6
    assert any("Conv" in o["op_type"] for o in ops)


def test_profile_compares_with_the_pcarn_workload(profile):
    t = profile["titan_x"]
    assert t["workload"] == "pcarn-720p"
    assert t["seconds"] is None and t["ratio"] is None  # PCARN's Fig. 13 is a plot only
    assert not t["size_matches"] and t["method"].startswith("extrapolated")
    # 320x180 LR as one tile vs three 32x32 tiles measured.
    factor = 320 * 180 / (3 * 32 * 32)
    assert t["device_seconds"] == pytest.approx(profile["end_to_end_s"]["median"] * factor)
    assert [r["workload"] for r in profile["titan_x_all"]] == ["pcarn-720p"]


def test_schema_rejects_broken_documents(profile):
    broken = json.loads(json.dumps(profile))
    del broken["titan_x"]
    broken["mpx_per_s"] = -1.0
    broken["latency_ms"]["median"] = "fast"
    broken["precision"] = "fp8"
    problems = errors(broken)
    assert any("missing 'titan_x'" in e for e in problems)
    assert any("$.mpx_per_s" in e for e in problems)
    assert any("$.latency_ms.median" in e for e in problems)
    assert any("$.precision" in e for e in problems)
    with pytest.raises(SchemaError):
        validate(broken)


def test_run_profile_writes_json_and_plot(pcarn_bundle, tmp_path):
    """What `sr-export profile --json J --plot P` does: the patch-size sweep, the JSON
    (validated) and the PNG."""
    pytest.importorskip("matplotlib")
    json_path, png = tmp_path / "out" / "profile.json", tmp_path / "plot" / "profile.png"
    result = run_profile(
        pcarn_bundle.root, json_path=json_path, plot_path=png, size="128x128", patch=32, overlap=8, batch=1,
        repeats=1, warmup=0, e2e_repeats=1, op_profile=False, peak=False, sweep_patches=[16, 32],
    )
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(result))
    assert [(r["precision"], r["patch"]) for r in result["sweep"]] == [("fp32", 16), ("fp32", 32)]
    assert [b["batch"] for b in result["batches"]] == [1]
    assert result["peak"] is None and result["op_times"] is None
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any("end to end" in line for line in summary(result))


@pytest.mark.parametrize("memory, tiled", [(None, False), (0.02, True)])
def test_profile_defaults_to_the_tiling_of_run(pcarn_bundle, memory, tiled):
    """patch auto and crop stitching as `sr-export run` (srexport.load) plans them, with
    compile time kept apart from the inference times."""
    import srexport

    result = profile_bundle(pcarn_bundle.root, size="400x240", memory=memory, repeats=1, warmup=0, e2e_repeats=1,
                            op_profile=False, peak=False)
    validate(result)
    run_plan = srexport.load(pcarn_bundle.root, memory=memory).plan(60, 100)
    assert result["patch_mode"] == "auto" and result["stitch"] == "crop" and result["batch"] == 1
    assert result["patch"] == {"height": run_plan.patch_h, "width": run_plan.patch_w}
    assert result["tiles"] == len(run_plan.tiles)
    assert (result["tiles"] > 1) == tiled
    # an image that fits runs whole at its own size
    assert (result["patch"] == {"height": 60, "width": 100}) == (not tiled)
    halo = pcarn_bundle.manifest.shape_rules.halo
    assert result["overlap"] == 2 * halo
    assert result["compile_s"] >= 0 and result["session_open_s"] >= 0
    assert any("crop stitching" in line and "patch auto" in line for line in summary(result))


def test_plot_without_matplotlib_fails_before_profiling(pcarn_bundle, profile, tmp_path, monkeypatch):
    import srexport.profiling.profile as profile_module
    from srexport.profiling import write_plot

    measured = []
    real_measure = profile_module.measure

    def spied(bundle_path, request, log=None):  # the real profiling, recording that it began
        measured.append(request)
        return real_measure(bundle_path, request, log)

    monkeypatch.setattr(profile_module, "measure", spied)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(SrExportError, match="pip install matplotlib"):
        write_plot(profile, tmp_path / "x.png")
    with pytest.raises(SrExportError, match="pip install matplotlib"):
        run_profile(pcarn_bundle.root, json_path=tmp_path / "y.json", plot_path=tmp_path / "y.png", size="128x64",
                    patch=32, overlap=8, repeats=1, warmup=0, e2e_repeats=1, op_profile=False, peak=False)
    assert measured == [], "the profiling began before the missing matplotlib was found"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "nothing is written"
    # without a plot the same call does reach the profiling (so the record above can fail)
    result = run_profile(pcarn_bundle.root, json_path=tmp_path / "p.json", size="128x64", patch=32,
                         overlap=8, repeats=1, warmup=0, e2e_repeats=1, op_profile=False, peak=False)
    assert [(r.size, r.sweep) for r in measured] == [("128x64", False)]
    assert json.loads((tmp_path / "p.json").read_text()) == result


def test_bad_requests_are_clear_errors(pcarn_bundle):
    with pytest.raises(BundleError, match="no int8 graph"):
        profile_bundle(pcarn_bundle.root, precision="int8")
    with pytest.raises(SrExportError, match="size takes WxH"):
        profile_bundle(pcarn_bundle.root, size="big")
    with pytest.raises(SrExportError, match="not pcarn-m"):
        profile_bundle(pcarn_bundle.root, workload="bpp-1080p")


# ------------------------------------------------------------------ the Titan X table
def test_presets_are_the_papers_workloads():
    assert titanx.parse_size("1920x1080") == titanx.parse_size("1080p") == (1920, 1080)
    assert titanx.parse_size("8k") == (7680, 4320)
    assert titanx.parse_size("mgbpv2-1000") == (1000, 1000)
    w, h = titanx.parse_size("pirm")
    assert abs(w * h / 1e6 - 0.29) < 0.005  # the PIRM average output size
    assert titanx.default_workload("bpp").key == "bpp-1080p"
    assert titanx.default_workload("mgbpv2", "aim2019-16x").key == "mgbpv2-1000"
    assert titanx.default_workload("mgbpv2", "8x") is None  # no published time for Table I models
    assert titanx.default_workload("gmgbp").seconds == 0.2
    assert titanx.default_workload("pcarn-m").size == "1280x720"
    seconds = {w.key: w.seconds for w in titanx.WORKLOADS}
    assert seconds == {
        "bpp-1080p": 3.7, "mgbpv2-1000": 1.42, "mgbpv2-1000-667": 4.16, "mgbpv2-1000-767": 2.06,
        "mgbpv2-8k": 47.11, "gmgbp-pirm": 0.2, "pcarn-720p": None,
    }


def test_mgbpv2_rows_are_told_apart_by_tiling():
    with __import__("torch").device("meta"):
        rules = build_model("mgbpv2", "aim2019-16x", 16).shape_rules()
    args = ("mgbpv2", "aim2019-16x", 1008, 1008)  # 63 LR px x 16: the nearest to 1000
    row, flags = titanx.match(*args, 1, (1023, 1023), 0, rules, 16)
    assert row.key == "mgbpv2-1000" and flags == {"size_matches": True, "tiling_matches": True}
    row, flags = titanx.match(*args, 25, (767, 767), 703, rules, 16)
    assert row.key == "mgbpv2-1000-767" and flags["tiling_matches"]
    row, flags = titanx.match(*args, 16, (671, 671), 543, rules, 16)
    assert row.key == "mgbpv2-1000-667" and flags["tiling_matches"]
    row, flags = titanx.match(*args, 4, (767, 767), 384, rules, 16)
    assert row.key == "mgbpv2-1000" and flags == {"size_matches": True, "tiling_matches": False}
    plan = titanx.workload_plan(titanx.workload("mgbpv2-1000-767"), rules, 16, "upscaled", (767, 767), 384)
    assert (plan.patch_h, plan.patch_w, len(plan.tiles)) == (767, 767, 25)  # 5 x 5 patches 64 px apart


def test_device_time_is_measured_or_extrapolated_by_pixels_processed():
    with __import__("torch").device("meta"):
        rules = build_model("bpp", "x4", 4).shape_rules()
    row = titanx.workload("bpp-1080p")
    full = titanx.workload_plan(row, rules, 4, "upscaled", (192, 192), 48)
    assert (full.height, full.width) == (1080, 1920)
    same = titanx.compare(row, {"size_matches": True}, measured_seconds=37.0, measured_plan=full, workload_plan=full)
    assert same["method"] == "measured" and same["ratio"] == pytest.approx(10.0)
    small = plan_tiles(384, 384, (192, 192), 48, rules)
    out = titanx.compare(row, {}, measured_seconds=2.0, measured_plan=small, workload_plan=full, flops_per_px=1.55e6)
    factor = len(full.tiles) / len(small.tiles)
    assert out["device_seconds"] == pytest.approx(2.0 * factor)
    assert out["ratio"] == pytest.approx(2.0 * factor / 3.7)
    assert out["method"].startswith("extrapolated")
    # models.md: BPP's 3.7 s at 1.55 MFLOP per pixel is about 0.86 TFLOP/s on the Titan X
    assert out["titan_x_implied_tflops"] == pytest.approx(0.87, abs=0.02)


def test_profile_defaults_to_the_precision_run_chooses(tmp_path, monkeypatch):
    """No --precision: the profile runs what `run` runs (precision auto), and says why."""
    from srexport.runtime.backends import precision_auto as pa
    from test_precision_auto import machine, tiny_int8_bundle

    bundle = tiny_int8_bundle(tmp_path)
    quick = dict(size="48x32", patch=16, overlap=4, repeats=1, warmup=0, e2e_repeats=1, op_profile=False, peak=False)
    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend, gpu=True, openvino=False))
    chosen = profile_bundle(bundle.root, backend="onnxruntime", **quick)  # as on a GPU: the int8 graph
    assert chosen["precision"] == "int8"
    assert any(note.startswith("precision auto: int8") for note in chosen["notes"])
    monkeypatch.setattr(pa, "this_machine", lambda backend: machine(backend, openvino=False))
    assert profile_bundle(bundle.root, backend="onnxruntime", **quick)["precision"] == "fp32"
    asked = profile_bundle(bundle.root, backend="onnxruntime", precision="int8", **quick)
    assert asked["precision"] == "int8" and not any(n.startswith("precision auto") for n in asked["notes"])


@pytest.mark.skipif(not available_backends()["openvino"], reason="openvino is not installed; CI installs it")
def test_an_int8_graph_on_openvino_is_measured_against_the_int8_peak(tmp_path):
    from test_precision_auto import tiny_int8_bundle

    bundle = tiny_int8_bundle(tmp_path)
    p = profile_bundle(bundle.root, backend="openvino", precision="int8", size="48x32", patch=16, overlap=4,
                       repeats=1, warmup=0, e2e_repeats=1, op_profile=False)
    assert p["peak"]["kind"].startswith("int8 OpenVINO MatMul") and p["peak"]["source"] == "measured"
    assert p["peak"]["fraction"] == pytest.approx(p["achieved_gflops"] / p["peak"]["gflops"])
    assert not any("fp32 matmul" in note for note in p["notes"])
