"""Real TensorRT engines on a real GPU (marked `gpu`: skipped with the reason elsewhere).

Run on a machine with an NVIDIA GPU, its driver, and `pip install -e ".[tensorrt,test]"`:

    pytest -m gpu tests/test_tensorrt_gpu.py -v

PCARN-M and G-MGBP (4x, the published checkpoints in ../shared/data) are exported with
FP16 and INT8 graphs, engines are built from them, and the tiled runtime's output on
CSet5 is compared with ONNX Runtime's FP32 graph:
- FP16 engines: PSNR >= 45 dB against FP32;
- INT8 engines: within 0.1 dB of the accuracy ONNX Runtime gives for the same Q/DQ
  graph on the same images (the figure the bundle records for its INT8 graph, measured
  here for the TensorRT variant of the graph, which the bundle records on patches only).
Plus engine reuse from the bundle and the fallbacks for an engine of another GPU.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import shared_file

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

FP16_MIN_DB = 45.0
INT8_TOLERANCE_DB = 0.1
OPT_LEVEL = 2  # quicker builds; the comparison does not depend on tactic choice
MODELS = {
    "pcarn-m": ("m", 4, ("weights", "pcarn", "PCARN-M.pth")),
    "gmgbp": ("pirm2018", 4, ("weights", "gmgbp-pirm2018", "BOE-R1.model")),
}


@pytest.fixture(scope="module")
def gpu():
    from srexport.tensorrt.builder import engine_environment
    from srexport.lazy import EngineUnavailable

    try:
        trt, info = engine_environment()
    except EngineUnavailable as exc:
        pytest.skip(f"needs an NVIDIA GPU with TensorRT >= 11 and cuda-python: {exc}")
    return trt, info


@pytest.fixture(scope="module")
def bundles(gpu, tmp_path_factory):
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, build_bundle

    images = shared_file("images", "CSet14")
    made = {}

    def make(name):
        if name not in made:
            variant, scale, weights = MODELS[name]
            options = PrecisionOptions(fp16=True, int8=True, calib_dir=images, calib_patches=32,
                                       calib_method="percentile", eval_dir=shared_file("images", "CSet5"))
            request = BuildRequest(model=name, variant=variant, scale=scale, weights=shared_file(*weights),
                                   out=tmp_path_factory.mktemp("gpu-bundles") / name, precision=options)
            made[name] = build_bundle(request, warn=print)
        return made[name]

    return make


def _lr_images(scale: int):
    from srexport.calib import accuracy as acc

    return [acc.lr_from_hr(img.astype(np.float32) / 255.0, scale)[0]
            for img in (_read(p) for p in sorted(shared_file("images", "CSet5").glob("*.png")))]


def _read(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def _outputs(bundle, session, images):
    from srexport.calib.accuracy import upscale_rgb
    from srexport.runtime.upscaler import Upscaler

    upscaler = Upscaler(bundle, session, batch=4)
    return [np.clip(upscale_rgb(upscaler, lr), 0, 1) for lr in images]


def _mean_psnr(reference, test):
    from srexport.calib.accuracy import psnr

    return float(np.mean([psnr(r, t, peak=1.0) for r, t in zip(reference, test)]))


@pytest.mark.parametrize("name", list(MODELS))
def test_fp16_and_int8_engines_match_the_fp32_graph(bundles, name):
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.backends.tensorrt import TrtSession
    from srexport.tensorrt.builder import build_engines, engine_graph_file

    bundle = bundles(name)
    results = build_engines(bundle.root, bundle.manifest, ["fp16", "int8"], OPT_LEVEL, None, print)
    assert [r.status for r in results] == ["built", "built"], [r.line() for r in results]
    images = _lr_images(bundle.manifest.scale)
    reference = _outputs(bundle, OrtSession(bundle, "fp32"), images)

    fp16 = _outputs(bundle, TrtSession(bundle, "fp16", build=False), images)
    assert _mean_psnr(reference, fp16) >= FP16_MIN_DB

    int8 = _outputs(bundle, TrtSession(bundle, "int8", build=False), images)
    graph = bundle.root / engine_graph_file(bundle.manifest, "int8", bundle.root)
    same_graph = _outputs(bundle, _ort_on(bundle, graph), images)
    expected = _mean_psnr(reference, same_graph)
    measured = _mean_psnr(reference, int8)
    recorded = bundle.manifest.precisions["int8"].psnr_vs_fp32_db
    assert abs(measured - expected) <= INT8_TOLERANCE_DB, (
        f"TensorRT INT8 {measured:.3f} dB vs ONNX Runtime on {graph.name} {expected:.3f} dB "
        f"(bundle records {recorded} dB for {bundle.manifest.precisions['int8'].file})")


def _ort_on(bundle, graph):
    """An ONNX Runtime session (CPU) on a graph file of the bundle."""
    from srexport.runtime.backends.onnxruntime import OrtSession

    class _View:
        root = bundle.root
        manifest = bundle.manifest

        @staticmethod
        def graph_path(precision):
            return graph

    return OrtSession(_View, "int8", providers=["CPUExecutionProvider"])


def test_engines_in_the_bundle_are_reused(bundles):
    from srexport.runtime.backends import open_session
    from srexport.tensorrt.builder import build_engines

    bundle = bundles("pcarn-m")
    first = build_engines(bundle.root, bundle.manifest, ["fp16"], OPT_LEVEL, None, print)
    again = build_engines(bundle.root, bundle.manifest, ["fp16"], OPT_LEVEL, None, pytest.fail)
    assert again[0].status == "cached" and again[0].path == first[0].path
    session = open_session(bundle, "auto", "fp16", log=pytest.fail)  # found, not rebuilt
    assert session.name == "tensorrt" and session.engine_path == first[0].path
    assert session.selection_note.startswith("auto: TensorRT and a GPU are available; engine ")


def test_an_engine_for_another_gpu_falls_back_or_rebuilds(bundles, gpu, tmp_path, monkeypatch):
    from srexport.bundle import load_bundle
    from srexport.runtime.backends import open_session
    from srexport.runtime.backends.tensorrt import EngineUnavailable, TrtSession
    from srexport.tensorrt.builder import build_engines
    from srexport.tensorrt.keys import list_engines, parse_engine_name

    _, info = gpu
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "cache"))
    original = bundles("pcarn-m")
    copy = tmp_path / "bundle"
    shutil.copytree(original.root, copy, ignore=shutil.ignore_patterns("*.plan"))
    bundle = load_bundle(copy)
    (built,) = build_engines(bundle.root, bundle.manifest, ["fp16"], OPT_LEVEL, None, print)
    key = parse_engine_name(built.path.name)
    other_sm = "75" if key.sm != "75" else "80"
    foreign = built.path.with_name(built.path.name.replace(f"_sm{key.sm}_", f"_sm{other_sm}_"))
    built.path.rename(foreign)
    with pytest.raises(EngineUnavailable, match=f"built for sm{other_sm}, this GPU is {info.sm}"):
        TrtSession(bundle, "fp16", build=False)
    monkeypatch.setattr("srexport.runtime.backends.tensorrt._writable_engine_dir", lambda b: None)
    session = open_session(bundle, "auto", "fp16")
    assert session.name == "onnxruntime" and f"built for sm{other_sm}" in session.selection_note
    monkeypatch.undo()
    monkeypatch.setenv("SREXPORT_CACHE", str(tmp_path / "cache"))
    logs = []
    rebuilt = TrtSession(bundle, "fp16", log=logs.append)
    assert "no matching fp16 TensorRT engine" in logs[0]
    assert {p.name for _, p in list_engines(copy / "engines")} == {foreign.name, rebuilt.engine_path.name}
    # a damaged plan: a clear error, never a crash
    rebuilt.close()
    rebuilt.engine_path.write_bytes(b"\0" * 1024)
    with pytest.raises(EngineUnavailable, match="could not load"):
        TrtSession(bundle, "fp16", build=False)
