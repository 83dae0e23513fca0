"""sr-export's default run against its CPU peers, in one run, on the same graphs and frames.

    flock /tmp/bench.lock python benchmarks/cpu_peers.py [--workloads pcarn-frames,...] > cpu_peers.json

Workloads (issue 17's): PCARN-M x4 (PCARN-M-L1 weights) on 320x180 frames and on CSet14
(bicubic 1/4 of the HR images); G-MGBP R1 (BOE-R1) on CSet5 (1/4); BPP x4 on 192x192 graph
patches (the bicubic x4 of 48x48 crops of a 1080p frame made from CSet14 images). Per workload:

- OpenVINO called directly on the exported graph (before sr-export's CPU rewrites), every
  configuration: INFERENCE_PRECISION_HINT f32 and, where the CPU computes it, bf16 (OpenVINO's
  default there), PERFORMANCE_HINT LATENCY and THROUGHPUT, one and two requests in flight
  (two: two threads each running a request of the item's compiled shape), the same graph
  inputs as sr-export's (padded to legal sizes, zero noise), compiles in the warm-up;
- sr-export's default: `srexport.load(bundle)` (backend auto, precision auto, patch auto)
  and `up.upscale_frames(items)` (uint8 frames in, uint8 frames out: conversion, padding,
  tiling, stitching and quantising included), on the bundle built with its CPU rewrites and,
  where the CPU computes bf16, with `--bf16` (so precision auto runs bf16, as OpenVINO's own
  default does there); the fp32-only bundle's default beside it;
  and, to split the gains, the same on the bundle built without rewrites, and one item at
  a time (`up.upscale` in a loop). With `--int8`, also the default run of the PCARN-M and
  G-MGBP bundles built with `--int8` (calibrated as `sr-export build` does by default, 64
  patches, on the benchmark folder the model is not measured on: CSet5 for PCARN-M, CSet14
  for G-MGBP) and, where the CPU computes it,
  `--bf16`: precision auto then picks what a user's full build runs (summary
  "with_int8_bundle": the precision, why, and its ratios). `upscale_frames` treats its items as frames of a stream:
  on OpenVINO it compiles each item size static (as the direct configurations do), while
  `up.upscale` and folder runs use one dynamic compile for every size; on CSet14 and CSet5,
  folders of different sizes, "one item at a time" is therefore what a folder run computes;
- vs-mlrt (vapoursynth + vapoursynth-mlrt-ov, its OpenVINO plugin `core.ov.Model` on the
  same graph, frames pipelined by VapourSynth over 1 and 2 streams, f32 and OpenVINO's
  default precision) where `--vsmlrt-python` names a Python with them installed (their own
  virtual environment: vapoursynth 81 needs Python >= 3.12); otherwise the reason;
- the FP32 matrix-multiply peak (torch / OpenVINO MatMul), BF16 where the CPU computes it,
  INT8 (OpenVINO MatMul between QDQ pairs), measured before and after the workloads.

Each configuration runs once to warm up, then `--rounds` interleaved rounds; medians reported.
Throughput is output Mpx/s; achieved GFLOP/s counts the graph's FLOPs (srexport.profiling.flops)
over the items' graph shapes, as a fraction of the BF16 peak where the CPU computes bf16
(issue 17's targets: 25% for PCARN-M and G-MGBP, 50% for BPP), else of the FP32 peak (50%).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, weights_for  # noqa: E402
from cpu_backends import machine, peaks  # noqa: E402

from srexport.profiling.peak import openvino_matmul_peak  # noqa: E402

MODEL_OF = {  # workload -> (model, build arguments)
    "pcarn-frames": ("pcarn-m", {"scale": 4}), "pcarn-cset14": ("pcarn-m", {"scale": 4}),
    "gmgbp-cset5": ("gmgbp", {}), "bpp-patches": ("bpp", {"variant": "x4"}),
}
WORKLOADS = tuple(MODEL_OF)
INT8_MODELS = ("pcarn-m", "gmgbp")  # published weights to calibrate (BPP's are random)
CALIBRATION = {"pcarn-m": "CSet5", "gmgbp": "CSet14"}  # not the folders their workloads run on
FULL_BUNDLE = "sr-export default, bundle built with --int8 (and --bf16)"
TARGET_VS_DIRECT = 1.2
TARGET_OF_FP32_PEAK = 0.5  # CPUs without bf16


def target_of_peak(workload: str, bf16: bool) -> float:
    """Issue 17's FLOP/s target: with bf16, 25% of its peak for PCARN-M and G-MGBP and 50%
    for BPP (dense 3x3 convolutions); without, 50% of the FP32 peak."""
    if not bf16:
        return TARGET_OF_FP32_PEAK
    return 0.5 if workload.startswith("bpp") else 0.25


# -- inputs --------------------------------------------------------------------------------
def _downscale(path: Path, factor: int = 4) -> np.ndarray:
    image = Image.open(path).convert("RGB")
    w, h = image.size
    return np.asarray(image.resize((max(1, w // factor), max(1, h // factor)), Image.BICUBIC))


def frames_320x180(count: int) -> list[np.ndarray]:
    """320x180 frames: CSet14 images resized to 320x180 (a 16:9 frame of real content each)."""
    files = sorted((SHARED / "images" / "CSet14").glob("*.png"))
    return [np.asarray(Image.open(files[k % len(files)]).convert("RGB").resize((320, 180), Image.BICUBIC))
            for k in range(count)]


def folder(name: str, limit: int) -> list[np.ndarray]:
    files = sorted((SHARED / "images" / name).glob("*.png"))
    return [_downscale(f) for f in files[:limit or None]]


def bpp_patches(count: int) -> list[np.ndarray]:
    """48x48 LR crops of a 1080p frame (BPP's graph input is their bicubic x4: 192x192)."""
    files = sorted((SHARED / "images" / "CSet14").glob("*.png"))
    frame = np.asarray(Image.open(files[1]).convert("RGB").resize((1920, 1080), Image.BICUBIC))
    rng = np.random.default_rng(0)
    crops = []
    for _ in range(count):
        y, x = int(rng.integers(0, 1080 - 48)), int(rng.integers(0, 1920 - 48))
        crops.append(np.ascontiguousarray(frame[y:y + 48, x:x + 48]))
    return crops


def graph_feeds(bundle, items: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The graph inputs sr-export computes for each whole item: planes, bicubic where the
    model takes an upscaled input, reflect-padded to the next legal size, zero noise."""
    from srexport.runtime.padding import pad_to_legal
    from srexport.runtime.pipeline import pre_upscale

    m = bundle.manifest
    feeds = []
    for item in items:
        planes = np.ascontiguousarray(item.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
        planes = pre_upscale(planes, m.input_kind, m.scale)
        image = pad_to_legal(planes[None], m.shape_rules)
        feed = {"image": np.ascontiguousarray(image, dtype=np.float32)}
        for spec in m.noise_inputs:
            feed[spec.name] = np.zeros(spec.shape(1, *image.shape[2:]), np.float32)
        feeds.append(feed)
    return feeds


# -- OpenVINO called directly --------------------------------------------------------------
class DirectOpenVINO:
    """One OpenVINO configuration on a graph: a compiled model (and two requests) per shape."""

    def __init__(self, graph: Path, hint: str, inflight: int, threads: int, precision: str = "f32"):
        import openvino as ov

        self.core = ov.Core()
        self.model = self.core.read_model(str(graph))
        self.hint, self.inflight, self.threads, self.precision = hint, inflight, threads, precision
        self.compiled: dict[tuple, list] = {}
        self.lock = threading.Lock()

    def requests(self, feed: dict) -> list:
        key = tuple((k, v.shape) for k, v in feed.items())
        if key not in self.compiled:
            self.model.reshape({k: list(v.shape) for k, v in feed.items()})
            config = {"PERFORMANCE_HINT": self.hint, "INFERENCE_NUM_THREADS": self.threads}
            if self.precision != "default":  # "default": OpenVINO's own choice (bf16 on AMX CPUs)
                config["INFERENCE_PRECISION_HINT"] = self.precision
            compiled = self.core.compile_model(self.model, "CPU", config)
            pool = [compiled.create_infer_request() for _ in range(self.inflight)]
            self.compiled[key] = (compiled, pool)
        return self.compiled[key][1]

    def __call__(self, feeds: list[dict]) -> None:
        if self.inflight == 1:
            for feed in feeds:
                request = self.requests(feed)[0]
                request.infer(feed, share_inputs=True)
                np.array(request.get_output_tensor(0).data, copy=True)
            return
        slots: dict[tuple, list[int]] = {}
        guard = threading.Lock()

        def one(feed):
            key = tuple((k, v.shape) for k, v in feed.items())
            with guard:
                pool = self.requests(feed)
                index = slots.setdefault(key, list(range(self.inflight))).pop()
            try:
                pool[index].infer(feed, share_inputs=True)
                np.array(pool[index].get_output_tensor(0).data, copy=True)
            finally:
                with guard:
                    slots[key].append(index)

        with ThreadPoolExecutor(self.inflight) as pool:
            list(pool.map(one, feeds))


# -- vs-mlrt ---------------------------------------------------------------------------------
VSMLRT_SCRIPT = r"""
import json, sys, time
import vapoursynth as vs
graph, h, w, count, streams, precision = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
core = vs.core
warm = 2 * streams  # compile and first inferences, not timed
clip = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=warm + count, color=[0.25, 0.5, 0.75])
config = (lambda: {}) if precision == "default" else (lambda: {"INFERENCE_PRECISION_HINT": precision})
out = core.ov.Model(clip, graph, device="CPU", num_streams=streams, config=config)
for f in out[:warm].frames(): pass
start = time.perf_counter()  # frames not computed before (VapourSynth caches the ones it has)
for f in out[warm:].frames(): pass
print(json.dumps({"seconds": time.perf_counter() - start, "frames": count, "vapoursynth": vs.__version__}))
"""


def vsmlrt(python: str | None, graph: Path, feeds: list[dict], out_px: int, precisions: tuple[str, ...]) -> dict:
    """vs-mlrt's OpenVINO plugin (`core.ov.Model`) on the same graph, frames of the graph
    input's size, each precision with 1 and 2 streams."""
    if not python:
        return {"unavailable": "no --vsmlrt-python given"}
    if len(feeds[0]) != 1:
        return {"unavailable": "vs-mlrt runs graphs of one input; this one also takes noise inputs"}
    shapes = {f["image"].shape[2:] for f in feeds}
    if len(shapes) != 1:
        return {"unavailable": "vs-mlrt runs clips of one frame size; this workload's items differ in size"}
    (h, w), = shapes
    items = feeds
    result = {}
    for precision in precisions:
        for streams in (1, 2):  # frames pipelined by VapourSynth over 1 or 2 OpenVINO streams
            with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
                f.write(VSMLRT_SCRIPT)
            run = subprocess.run([python, f.name, str(graph), str(h), str(w), str(len(items)), str(streams),
                                  precision], capture_output=True, text=True, timeout=1800)
            os.unlink(f.name)
            key = f"{precision} {streams} stream{'s' if streams > 1 else ''}"
            if run.returncode:
                result[key] = {"error": (run.stderr.strip().splitlines() or ["?"])[-1]}
                continue
            got = json.loads(run.stdout.strip().splitlines()[-1])
            result[key] = {"seconds": got["seconds"], "mpx_s": out_px / got["seconds"] / 1e6}
    return result


# -- one workload ----------------------------------------------------------------------------
def build_pair(model: str, kwargs: dict, root: Path, log):
    """The bundle with sr-export's CPU rewrites, and the plain export (the peers' graph)."""
    from srexport.bundle import load_bundle
    from srexport.export.build import build_bundle, BuildRequest

    if (root / f"{model}-tuned" / "manifest.json").exists() and (root / f"{model}-plain" / "manifest.json").exists():
        return load_bundle(root / f"{model}-tuned"), load_bundle(root / f"{model}-plain")
    start = time.perf_counter()
    tuned = build_bundle(BuildRequest(model=model, weights=weights_for(model), out=root / f"{model}-tuned", **kwargs),
                         warn=lambda m: None)
    from srexport.export.build import export_bundle
    from srexport.export.model_bundle import model_from_bundle

    m = tuned.manifest
    identity = {"model": m.model, "variant": m.variant, "scale": m.scale, "task": m.task}
    plain = export_bundle(model_from_bundle(tuned), root / f"{model}-plain", identity, tuned.manifest.checkpoint,
                          log=lambda msg: None, cpu_rewrites=False)
    log(f"{model}: bundles built in {time.perf_counter() - start:.0f} s")
    return tuned, plain


def build_bf16(model: str, kwargs: dict, root: Path, log):
    """The bundle built with `--bf16` (bf16 measured and recorded), or None where this CPU
    computes no bf16 (then precision auto stays fp32 and the fp32 bundle is the default)."""
    from srexport.bundle import load_bundle
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, build_bundle
    from srexport.runtime.backends.openvino import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        return None
    out = root / f"{model}-bf16"
    if (out / "manifest.json").exists():
        return load_bundle(out)
    start = time.perf_counter()
    bundle = build_bundle(BuildRequest(model=model, weights=weights_for(model), out=out,
                                       precision=PrecisionOptions(bf16=True), **kwargs), warn=lambda m: None)
    log(f"{model}: bf16 bundle built in {time.perf_counter() - start:.0f} s")
    return bundle


def build_int8(model: str, kwargs: dict, root: Path, log):
    """The bundle built with every CPU precision the build offers: `--int8` (calibrated by
    srexport.calib with the build's default patch count on `CALIBRATION[model]`, images the
    model's workloads do not use) and, where this CPU computes it, `--bf16`, so precision auto
    chooses between them as it does for a user's full build (a mixed INT8 graph comes after
    bf16 there)."""
    from srexport.bundle import load_bundle
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, build_bundle
    from srexport.runtime.backends.openvino import cpu_capabilities

    bf16 = "BF16" in cpu_capabilities()
    out = root / f"{model}-int8{'-bf16' if bf16 else ''}"
    if (out / "manifest.json").exists():
        return load_bundle(out)
    start = time.perf_counter()
    options = PrecisionOptions(int8=True, bf16=bf16, calib_dir=SHARED / "images" / CALIBRATION[model])
    bundle = build_bundle(BuildRequest(model=model, weights=weights_for(model), out=out, precision=options, **kwargs),
                          warn=lambda m: None)
    log(f"{model}: int8{' + bf16' if bf16 else ''} bundle built in {time.perf_counter() - start:.0f} s")
    return bundle


def measure(configs: dict, rounds: int, release=None) -> dict:
    """Each configuration once to warm up, then `rounds` interleaved rounds. With `release`
    (a workload whose compiled models do not fit in memory together), one configuration
    after another instead, `release()` dropping its compiled models before the next."""
    results = {}

    def warm(name, fn) -> bool:
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:
            results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            return False
        results[name] = {"warmup_s": time.perf_counter() - start, "times": []}
        return True

    def timed(name, fn) -> None:
        start = time.perf_counter()
        fn()
        results[name]["times"].append(time.perf_counter() - start)

    if release is not None:
        for name, fn in configs.items():
            if warm(name, fn):
                for _ in range(rounds):
                    timed(name, fn)
            release()
    else:
        live = [(name, fn) for name, fn in configs.items() if warm(name, fn)]
        for k in range(rounds):
            # every other round in reverse, so that no configuration always follows the same
            # one (OpenVINO's THROUGHPUT streams keep their threads spinning a moment after)
            for name, fn in live if k % 2 == 0 else live[::-1]:
                time.sleep(SETTLE_S)
                timed(name, fn)
    for entry in results.values():
        times = entry.pop("times", [])
        if times:
            entry.update(median_s=statistics.median(times), min_s=min(times), runs=len(times))
    return results


SETTLE_S = 0.2  # idle before each timed run: the previous configuration's threads go to sleep


# G-MGBP on whole CSet5 images holds about 1 GB per compiled shape and request: the 16
# configurations' compiled models together exceed 24 GB, so they run one after another.
# PCARN-M on CSet14 (10 sizes, a static compile per size for each of the 8 direct
# configurations) left the process at 22 GB when the next workload began: one after
# another too, and every workload's compiled models are dropped when it ends.
SEQUENTIAL_WORKLOADS = ("pcarn-cset14", "gmgbp-cset5")


def workload(name: str, items: list[np.ndarray], tuned, plain, args, peak: dict, log, int8=None,
             tuned_bf16=None) -> dict:
    """Every configuration on the workload's items; the peak fraction is taken against the
    BF16 matrix-multiply peak where the CPU computes bf16, else the FP32 one."""
    import srexport
    from srexport.profiling.flops import count_bundle
    from srexport.runtime.folder_run import describe

    threads = args.threads or len(os.sched_getaffinity(0))
    bf16 = peak.get("bf16", {}).get("gflops") is not None
    direct_precisions = ("f32", "bf16") if bf16 else ("f32",)
    reference = peak["bf16"] if bf16 else peak["fp32"]
    feeds = graph_feeds(plain, items)
    flops = sum(count_bundle(plain, *f["image"].shape[2:]).flops for f in feeds)
    scale = plain.manifest.scale
    out_px = sum(item.shape[0] * item.shape[1] for item in items) * scale * scale
    configs = {}
    direct_runners: list[DirectOpenVINO] = []
    for precision in direct_precisions:
        for hint in ("LATENCY", "THROUGHPUT"):
            for inflight in (1, 2):
                direct = DirectOpenVINO(plain.graph_path("fp32"), hint, inflight, threads, precision)
                direct_runners.append(direct)
                configs[f"openvino direct {precision} {hint} {inflight} in flight"] = (lambda d=direct: d(feeds))
    # "default": `srexport.load(bundle)` with no options; on a bundle built with --bf16 that
    # is bf16 (precision auto) on a CPU that computes it, else the same as the fp32 bundle
    default = srexport.load((tuned_bf16 or tuned).root)
    fp32_bundle = srexport.load(tuned.root)
    unrewritten = srexport.load(plain.root)
    configs["sr-export default"] = lambda: list(default.upscale_frames(items))
    if tuned_bf16 is not None:
        configs["sr-export default, fp32-only bundle"] = lambda: list(fp32_bundle.upscale_frames(items))
    configs["sr-export default, graph without rewrites"] = lambda: list(unrewritten.upscale_frames(items))
    configs["sr-export default, one item at a time"] = lambda: [default.upscale(x) for x in items]
    if name in args.onnxruntime.split(","):  # the rewrites on the fallback backend
        ort_tuned = srexport.load(tuned.root, "onnxruntime", "fp32")
        ort_plain = srexport.load(plain.root, "onnxruntime", "fp32")
        configs["onnxruntime, rewritten graph"] = lambda: list(ort_tuned.upscale_frames(items))
        configs["onnxruntime, graph without rewrites"] = lambda: list(ort_plain.upscale_frames(items))
    full = srexport.load(int8.root) if int8 is not None else None
    if full is not None:
        configs[FULL_BUNDLE] = lambda: list(full.upscale_frames(items))
    log(f"{name}: {len(items)} items, {len(configs)} configurations, {args.rounds} rounds")
    def release() -> None:
        import gc

        from srexport.runtime.backends import openvino

        for runner in direct_runners:
            runner.compiled.clear()
        openvino.clear_cache()
        gc.collect()

    try:
        rows = measure(configs, args.rounds, release if name in SEQUENTIAL_WORKLOADS else None)
    finally:
        release()
    for row in rows.values():
        if "median_s" in row:
            row["mpx_s"] = out_px / row["median_s"] / 1e6
            row["gflops"] = flops / row["median_s"] / 1e9
            row["of_fp32_peak"] = row["gflops"] / peak["fp32"]["gflops"]
            if bf16:
                row["of_bf16_peak"] = row["gflops"] / peak["bf16"]["gflops"]
    direct_rows = {k: v for k, v in rows.items() if k.startswith("openvino direct") and "mpx_s" in v}
    best = max(direct_rows, key=lambda k: direct_rows[k]["mpx_s"]) if direct_rows else None
    mine = rows.get("sr-export default", {})
    summary = {"fastest_direct": best}
    if best and "mpx_s" in mine:
        ratio = mine["mpx_s"] / direct_rows[best]["mpx_s"]
        target = target_of_peak(name, bf16)
        of_peak = mine["gflops"] / reference["gflops"]
        summary |= {"default_precision": default.for_frames().session.precision,  # what upscale_frames ran
                    "default_vs_fastest_direct": ratio, "target_vs_direct": TARGET_VS_DIRECT,
                    "met_vs_direct": ratio >= TARGET_VS_DIRECT,
                    "peak_used": "bf16" if bf16 else "fp32", "default_of_peak": of_peak,
                    "target_of_peak": target, "met_of_peak": of_peak >= target}
        if "mpx_s" in rows.get("onnxruntime, rewritten graph", {}) and "mpx_s" in rows.get(
                "onnxruntime, graph without rewrites", {}):
            summary["onnxruntime_rewritten_vs_plain"] = (rows["onnxruntime, rewritten graph"]["mpx_s"]
                                                         / rows["onnxruntime, graph without rewrites"]["mpx_s"])
        if "mpx_s" in rows.get(FULL_BUNDLE, {}):  # measured only where the int8 bundle was built
            full_ratio = rows[FULL_BUNDLE]["mpx_s"] / direct_rows[best]["mpx_s"]
            full_of_peak = rows[FULL_BUNDLE]["gflops"] / reference["gflops"]
            streamed = full.for_frames().session  # what upscale_frames ran
            summary["with_int8_bundle"] = {
                "precision": streamed.precision, "why": streamed.precision_reason,
                "vs_fastest_direct": full_ratio, "met_vs_direct": full_ratio >= TARGET_VS_DIRECT,
                "of_peak": full_of_peak, "met_of_peak": full_of_peak >= target,
                "vs_default": rows[FULL_BUNDLE]["mpx_s"] / mine["mpx_s"]}
        # the rewrites' share, fp32 against fp32 (the graph without rewrites is fp32-only)
        fp32_row = rows.get("sr-export default, fp32-only bundle", mine)
        plain_row = rows.get("sr-export default, graph without rewrites", {})
        if "mpx_s" in plain_row and "mpx_s" in fp32_row:
            summary["rewritten_vs_without_rewrites_fp32"] = fp32_row["mpx_s"] / plain_row["mpx_s"]
        if "mpx_s" in rows.get("sr-export default, one item at a time", {}):
            summary["default_vs_one_item_at_a_time"] = (mine["mpx_s"]
                                                        / rows["sr-export default, one item at a time"]["mpx_s"])
    return {"workload": name, "model": plain.manifest.model, "variant": plain.manifest.variant, "scale": scale,
            "weights": plain.manifest.checkpoint.file if plain.manifest.checkpoint else "random init",
            "items": len(items), "item_sizes": sorted({tuple(i.shape[:2]) for i in items}),
            "output_px": out_px, "gflop": flops / 1e9, "run_line": describe(default),
            "rewrites": tuned.manifest.graph_rewrites, "configs": rows, "summary": summary,
            "order": "one configuration after another" if name in SEQUENTIAL_WORKLOADS else "interleaved rounds",
            "vs_mlrt": vsmlrt(args.vsmlrt_python, plain.graph_path("fp32"), feeds, out_px,
                              ("f32", "default") if bf16 else ("f32",))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    # 20, as issue 17's protocol: with 4 a stream's fill and drain weigh on every figure (PCARN-M
    # int8 bundle against bf16, AMX Xeon: 1.14x at 4 frames, 1.30x at 20)
    parser.add_argument("--frames", type=int, default=20, help="320x180 frames (pcarn-frames)")
    parser.add_argument("--images", type=int, default=0, help="images of CSet14/CSet5 (0: all)")
    parser.add_argument("--patches", type=int, default=4, help="BPP patches")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--vsmlrt-python", default=os.environ.get("VSMLRT_PYTHON"),
                        help="a Python with vapoursynth and vapoursynth-mlrt-ov (its own venv)")
    parser.add_argument("--onnxruntime", default="pcarn-frames",
                        help="workloads that also run ONNX Runtime on both graphs")
    parser.add_argument("--int8", action="store_true",
                        help="also the default run of PCARN-M and G-MGBP bundles built with --int8 (and --bf16)")
    parser.add_argument("--out", type=Path, help="also write the report here after each workload")
    parser.add_argument("--work", type=Path, help="keep (and reuse) the built bundles here")
    parser.add_argument("--build-only", action="store_true", help="build the bundles into --work and stop")
    parser.add_argument("--vsmlrt-note", default="", help="why vs-mlrt is not measured (recorded as given)")
    args = parser.parse_args()
    if args.vsmlrt_python and not os.access(args.vsmlrt_python, os.X_OK):
        parser.error(f"--vsmlrt-python {args.vsmlrt_python}: no such executable")  # before minutes of work
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)

    from srexport.runtime.backends.openvino import cpu_capabilities

    if args.build_only:
        if not args.work:
            raise SystemExit("--build-only needs --work")
        for model, kwargs in dict(MODEL_OF.values()).items():
            build_pair(model, kwargs, args.work, log)
            build_bf16(model, kwargs, args.work, log)
            if args.int8 and model in INT8_MODELS:
                build_int8(model, kwargs, args.work, log)
        return
    threads = args.threads or len(os.sched_getaffinity(0))
    caps = cpu_capabilities()
    report = {"machine": machine(threads), "matmul_peaks_start": peaks(threads, caps)}
    report["matmul_peaks_start"]["int8"] = openvino_matmul_peak("int8", threads, n=1024)
    peak = report["matmul_peaks_start"]
    log(f"peaks: fp32 {peak['fp32']['gflops']:.1f}, int8 {peak['int8']['gflops']:.1f} GFLOP/s")
    if args.vsmlrt_note and not args.vsmlrt_python:
        report["vs_mlrt"] = {"unavailable": args.vsmlrt_note}
    report["workloads"] = []
    wanted = args.workloads.split(",")
    with tempfile.TemporaryDirectory(prefix="srx-peers-") as tmp:
        built = {}
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)

        items_of = {"pcarn-frames": lambda: frames_320x180(args.frames),
                    "pcarn-cset14": lambda: folder("CSet14", args.images),
                    "gmgbp-cset5": lambda: folder("CSet5", args.images),
                    "bpp-patches": lambda: bpp_patches(args.patches)}
        for name in wanted:
            if name not in MODEL_OF:
                raise SystemExit(f"unknown workload {name} ({', '.join(WORKLOADS)})")
            model, kwargs = MODEL_OF[name]
            if model not in built:
                built[model] = build_pair(model, kwargs, work, log), build_bf16(model, kwargs, work, log)
            items = items_of[name]()
            int8 = build_int8(model, kwargs, work, log) if args.int8 and model in INT8_MODELS else None
            (tuned, plain), bf16_bundle = built[model]
            report["workloads"].append(workload(name, items, tuned, plain, args, peak, log, int8, bf16_bundle))
            log(f"{name}: done")
            if args.out:  # what is measured so far survives an interrupted run
                args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
            print(json.dumps(report["workloads"][-1]["summary"]), file=sys.stderr, flush=True)
    report["matmul_peaks_end"] = peaks(threads, caps)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - start
    json.dump(report, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
