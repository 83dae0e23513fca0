"""CPU backends side by side in one run: PyTorch eager, ONNX Runtime, OpenVINO (fp32/bf16/int8).

    python benchmarks/cpu_backends.py [--quick] [--models bpp,pcarn-m,gmgbp] > cpu_backends.json

For BPP x4 (random init), PCARN-M x4 (PCARN-M-L1 weights when ../shared has them) and
G-MGBP (BOE-R1 when present), on an input that the bundle's own patch and overlap tile
into `--tiles` x `--tiles` patches:

- end to end through the runtime (`Upscaler.upscale_planes`: bicubic pre-upscale where
  the model takes one, tiling, noise crops, backend, window blending): PyTorch eager FP32
  (the torch backend), ONNX Runtime FP32 / INT8, OpenVINO FP32 / BF16 / INT8 with batch 1
  (LATENCY: one stream) and batch `--batch` (THROUGHPUT: streams, one request per patch);
- OpenVINO called directly on the same graph and static patch shape (its own API: sync
  requests one patch after another, and an AsyncInferQueue over the patches), the same
  number of patches: what the runtime adds is runtime / direct;
- achieved GFLOP/s (FLOPs of the graph counted by srexport.profiling.flops at the patch
  shape, times the patches run) against FP32 and BF16 matrix-multiply peaks measured in the
  same run (before and after the models: shared machines drift): FP32 the better of
  torch.matmul and OpenVINO's MatMul, BF16 OpenVINO's MatMul in bf16 where the CPU has it;
- the issue's targets: best CPU configuration >= 6x PyTorch eager FP32, runtime >= 0.9x
  direct OpenVINO, INT8 >= BF16 where the CPU has AMX-INT8.

INT8 graphs come from the precision code (`srexport.calib.precisions.build_precisions`,
calibrated on ../shared/data/images/CSet5); where it is absent or fails, int8 is reported
unavailable with the reason. Timings: `--repeat` interleaved rounds after one warm-up call
per configuration (compiles happen there), median reported with p10/p90.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, build  # noqa: E402

from srexport.profiling.peak import openvino_matmul_peak  # noqa: E402

MODELS = {"bpp": {"variant": "x4"}, "pcarn-m": {"scale": 4}, "gmgbp": {}}
CALIB_DIR = SHARED / "images" / "CSet5"
TARGET_VS_TORCH = 6.0
TARGET_RUNTIME_VS_DIRECT = 0.9


# -- machine -------------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def matmul_peak(dtype_name: str, threads: int, seconds: float = 1.0) -> dict:
    """Best and median GFLOP/s of square torch.matmul in `dtype_name`: n = 1024 and up
    until one call takes 20 ms (FP32 on 2 threads: n = 1024-2048, as FACTS.md's 287
    GFLOP/s); bf16 without AMX / AVX512-BF16 is emulated by torch and far slower, so its
    size shrinks instead (down to 256) to keep the run short."""
    import torch

    dtype = getattr(torch, dtype_name)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def once(n: int) -> float:
        a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
        torch.matmul(a, b)
        start = time.perf_counter()
        torch.matmul(a, b)
        return time.perf_counter() - start

    try:
        n = 1024
        took = once(n)
        while took < 0.02 and n < 2048:
            n *= 2
            took = once(n)
        while took > 0.5 and n > 256:
            n //= 2
            took = once(n)
        a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
        rates = []
        deadline = time.perf_counter() + seconds
        while len(rates) < 3 or (time.perf_counter() < deadline and len(rates) < 200):
            start = time.perf_counter()
            torch.matmul(a, b)
            rates.append(2.0 * n**3 / (time.perf_counter() - start) / 1e9)
    finally:
        torch.set_num_threads(previous)
    return {"gflops": max(rates), "median_gflops": statistics.median(rates), "n": n, "calls": len(rates),
            "dtype": dtype_name, "threads": threads, "source": "torch.matmul"}


def peaks(threads: int, caps: set[str]) -> dict:
    """FP32 peak: the better of torch.matmul and OpenVINO's MatMul. BF16 peak: OpenVINO's
    MatMul in bf16 where the CPU computes bf16; elsewhere none (torch would emulate it in
    software, a figure of no use as a peak)."""
    fp32 = {"torch": matmul_peak("float32", threads)}
    try:
        fp32["openvino"] = openvino_matmul_peak("f32", threads)
    except Exception as exc:  # openvino missing: torch's figure stands alone
        fp32["openvino"] = {"unavailable": str(exc)}
    best = max((v for v in fp32.values() if "gflops" in v), key=lambda v: v["gflops"])
    result = {"fp32": {**best, "candidates": fp32}}
    if "BF16" in caps:
        result["bf16"] = openvino_matmul_peak("bf16", threads)
    else:
        result["bf16"] = {"gflops": None, "unavailable": "this CPU computes no bf16 (no AVX512-BF16 or AMX)"}
    return result


def machine(threads: int) -> dict:
    flags = cpu_flags()
    info = {
        "cpu_count": os.cpu_count(), "threads": threads, "python": platform.python_version(),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2", "fma"))),
        "amx_int8": "amx_int8" in flags, "amx_bf16": "amx_bf16" in flags,
        "load_average_start": os.getloadavg(),
    }
    try:
        from srexport.runtime.backends.openvino import cpu_capabilities, cpu_name

        import openvino

        info.update(cpu=cpu_name(), openvino=openvino.__version__.split("-")[0],
                    openvino_capabilities=sorted(cpu_capabilities()))
    except Exception as exc:  # openvino missing: reported, the rest still runs
        info["openvino"] = f"unavailable: {exc}"
    import onnxruntime
    import torch

    info.update(onnxruntime=onnxruntime.__version__, torch=torch.__version__)
    return info


# -- timing --------------------------------------------------------------------------------
def interleaved(configs: dict, repeat: int) -> dict:
    """Each config is a callable; one warm-up each, then `repeat` rounds over all of them."""
    results = {}
    for name, fn in list(configs.items()):
        start = time.perf_counter()
        try:
            fn()
        except Exception as exc:  # report and drop: one failing config must not end the run
            results[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            del configs[name]
            continue
        results[name] = {"warmup_s": time.perf_counter() - start, "times": []}
    for _ in range(repeat):
        for name, fn in configs.items():
            start = time.perf_counter()
            fn()
            results[name]["times"].append(time.perf_counter() - start)
    for entry in results.values():
        times = sorted(entry.pop("times", []))
        if times:
            entry.update(median_s=statistics.median(times), min_s=times[0], p10_s=times[int(0.1 * (len(times) - 1))],
                         p90_s=times[round(0.9 * (len(times) - 1))], runs=len(times))
    return results


# -- one model -----------------------------------------------------------------------------
def make_bundle(name: str, kwargs: dict, out: Path, int8: bool, log) -> tuple[object, str | None]:
    """The bundle, with an INT8 graph from the precision code when possible."""
    reason = None
    if int8:
        try:
            from srexport.calib.precisions import build_precisions  # noqa: F401
            from srexport.calib.options import PrecisionOptions
        except ImportError as exc:
            reason = f"srexport.calib.precisions is not available ({exc})"
        else:
            if not CALIB_DIR.is_dir():
                reason = f"no calibration images at {CALIB_DIR}"
            else:
                start = time.perf_counter()
                try:
                    options = PrecisionOptions(int8=True, calib_dir=CALIB_DIR, calib_patches=16)
                    bundle = build(name, out, precision=options, **kwargs)
                    log(f"{name}: bundle with int8 built in {time.perf_counter() - start:.0f} s")
                    return bundle, None
                except Exception as exc:
                    reason = f"int8 build failed: {type(exc).__name__}: {exc}"
    else:
        reason = "--no-int8"
    return build(name, out, **kwargs), reason


def input_size(patch: int, overlap: int, tiles: int) -> int:
    """Graph-input edge that the tiler covers with exactly `tiles` patches per axis."""
    stride = patch - overlap
    return patch + (tiles - 1) * stride - stride // 2 if tiles > 1 else patch


def direct_openvino(bundle, precision: str, feeds: list[dict], threads: int) -> dict:
    """OpenVINO's own API on the same graph, static patch shape and patches."""
    import openvino as ov

    graph = bundle.graph_path("int8" if precision == "int8" else "fp32")
    core = ov.Core()
    model = core.read_model(str(graph))
    model.reshape({k: list(v.shape) for k, v in feeds[0].items()})
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
    latency = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "LATENCY"})
    throughput = core.compile_model(model, "CPU", {**config, "PERFORMANCE_HINT": "THROUGHPUT"})
    request = latency.create_infer_request()
    queue = ov.AsyncInferQueue(throughput, int(throughput.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))

    def sync():
        for feed in feeds:
            request.infer(feed, share_inputs=True)

    def streams():
        for feed in feeds:
            queue.start_async(feed, share_inputs=True)
        queue.wait_all()

    return {"direct_latency": sync, "direct_throughput": streams}


def bench_model(name: str, kwargs: dict, work: Path, args, peaks: dict, caps: set[str], log) -> dict:
    from srexport.profiling.flops import count_bundle
    from srexport.runtime.backends.onnxruntime import OrtSession, physical_threads
    from srexport.runtime.backends.torch import TorchSession
    from srexport.runtime.upscaler import Upscaler

    threads = args.threads or physical_threads()
    prebuilt = dict(item.split("=", 1) for item in args.bundle)
    if name in prebuilt:
        from srexport.bundle import load_bundle

        bundle = load_bundle(prebuilt[name])
        int8_reason = f"the given bundle {prebuilt[name]} has no int8 graph"
    else:
        bundle, int8_reason = make_bundle(name, kwargs, work / name, not args.no_int8, log)
    m = bundle.manifest
    patch, overlap = (args.patch or m.patch), m.overlap
    graph_in = input_size(patch, overlap, args.tiles)
    up = m.input_kind == "upscaled"
    if up and graph_in % m.scale:
        graph_in += m.scale - graph_in % m.scale
    lr = graph_in // m.scale if up else graph_in
    planes = np.random.default_rng(0).random((3, lr, lr), dtype=np.float32)
    out_px = (lr * m.scale) ** 2

    def upscaler(session, batch=1):
        return Upscaler(bundle, session, patch=(patch, patch), overlap=overlap, batch=batch)

    probe = upscaler(OrtSession(bundle, "fp32", threads))
    plan = probe.plan(lr, lr)
    count = count_bundle(bundle, plan.patch_h, plan.patch_w)
    flops_run = count.flops * len(plan.tiles)
    has_int8 = "int8" in m.precisions
    result = {
        "model": m.model, "variant": m.variant, "scale": m.scale,
        "weights": m.checkpoint["file"] if m.checkpoint else "random init",
        "lr_size": lr, "graph_input_size": graph_in, "output_px": out_px,
        "patch": [plan.patch_h, plan.patch_w], "overlap": overlap, "tiles": len(plan.tiles),
        "mac_per_output_px_in_patch": count.macs / count.output_pixels,
        "gflop_per_patch": count.flops / 1e9, "gflop_per_run": flops_run / 1e9,
        "int8": "available (srexport.calib.precisions.build_precisions)" if has_int8 else f"unavailable: {int8_reason}",
    }
    def end_to_end(u):
        return lambda: u.upscale_planes(planes)

    configs = {"torch fp32": end_to_end(upscaler(TorchSession(bundle, "fp32", threads)))}
    configs["onnxruntime fp32"] = end_to_end(probe)
    if has_int8:
        configs["onnxruntime int8"] = end_to_end(upscaler(OrtSession(bundle, "int8", threads)))
    ov_precisions = []
    if caps:
        from srexport.runtime.backends.openvino import OvSession

        ov_precisions = ["fp32"] + (["bf16"] if "BF16" in caps else []) + (["int8"] if has_int8 else [])
        for precision in ov_precisions:
            for batch in sorted({1, args.batch}):
                session = OvSession(bundle, precision, threads, batch=batch)
                configs[f"openvino {precision} batch {batch}"] = end_to_end(upscaler(session, batch))
        # the same patches, as the runtime feeds them
        feeds = []
        captured = upscaler(_Recorder(OrtSession(bundle, "fp32", threads), feeds))
        captured.upscale_planes(planes)
        for precision in ov_precisions:
            for label, fn in direct_openvino(bundle, precision, feeds, threads).items():
                configs[f"openvino {precision} {label}"] = fn
    # the runtime's own work (bicubic, tiling, noise crops, blending) with the network
    # replaced by zeros of the output's shape: what the runtime adds to any backend
    configs["runtime without network"] = end_to_end(upscaler(_Zeros(m.shape_rules.output_scale)))
    if "BF16" not in caps:
        result["bf16"] = "unavailable: this CPU has no BF16 (AVX512-BF16 or AMX) in OpenVINO's capabilities"

    log(f"{name}: {len(configs)} configurations, {len(plan.tiles)} patches of {plan.patch_h}x{plan.patch_w}, "
        f"{args.repeat} rounds")
    timings = interleaved(configs, args.repeat)
    rows = {}
    for label, t in timings.items():
        if "median_s" not in t or label == "runtime without network":
            rows[label] = t
            continue
        gflops = flops_run / t["median_s"] / 1e9
        rows[label] = {**t, "mpx_s": out_px / t["median_s"] / 1e6, "gflops": gflops,
                       "of_fp32_peak": gflops / peaks["fp32"]["gflops"],
                       "of_bf16_peak": gflops / peaks["bf16"]["gflops"] if peaks["bf16"]["gflops"] else None}
    result["configs"] = rows
    result["summary"] = summarize(rows, ov_precisions, caps)
    return result


class _Zeros:
    """A session that returns zeros of the output's shape at once."""

    name, device = "zeros", "cpu"

    def __init__(self, scale: int):
        self.scale = scale

    def run(self, inputs):
        n, _, h, w = inputs["image"].shape
        return np.zeros((n, 3, self.scale * h, self.scale * w), np.float32)


class _Recorder:
    """A session that records the inputs it is given (for the direct OpenVINO runs)."""

    def __init__(self, session, store: list):
        self.session, self.store = session, store
        self.name, self.device = "recorder", "cpu"

    def run(self, inputs):
        self.store.append({k: np.ascontiguousarray(v) for k, v in inputs.items()})
        return self.session.run(inputs)


def summarize(rows: dict, ov_precisions: list[str], caps: set[str]) -> dict:
    rate = {k: v["mpx_s"] for k, v in rows.items() if "mpx_s" in v}
    best_s = {k: v["min_s"] for k, v in rows.items() if "mpx_s" in v}
    torch_rate = rate.get("torch fp32")
    runtime = {k: v for k, v in rate.items() if "direct" not in k}
    best = max(runtime, key=runtime.get)
    summary = {"best_runtime_config": best, "best_mpx_s": runtime[best],
               "vs_torch_eager": {k: v / torch_rate for k, v in runtime.items()} if torch_rate else None}
    if torch_rate:
        summary["best_vs_torch_eager"] = runtime[best] / torch_rate
        summary["target_vs_torch"] = {"target": TARGET_VS_TORCH, "met": runtime[best] / torch_rate >= TARGET_VS_TORCH}
    per_precision = {}
    for precision in ov_precisions:
        mine = {k: v for k, v in runtime.items() if k.startswith(f"openvino {precision} batch")}
        direct = {k: v for k, v in rate.items() if k.startswith(f"openvino {precision} direct")}
        if mine and direct:
            r, d = max(mine, key=mine.get), max(direct, key=direct.get)
            fastest_runs = min(best_s[k] for k in direct) / min(best_s[k] for k in mine)
            per_precision[precision] = {"runtime": r, "runtime_mpx_s": mine[r], "direct": d, "direct_mpx_s": direct[d],
                                        "runtime_vs_direct": mine[r] / direct[d],
                                        "runtime_vs_direct_fastest_runs": fastest_runs,
                                        "met": mine[r] / direct[d] >= TARGET_RUNTIME_VS_DIRECT}
    summary["runtime_vs_direct_openvino"] = per_precision
    summary["target_runtime_vs_direct"] = TARGET_RUNTIME_VS_DIRECT
    null = rows.get("runtime without network", {})
    if "median_s" in null and per_precision:
        fastest = max(v["runtime_mpx_s"] for v in per_precision.values())
        best_runtime_s = next(rows[v["runtime"]]["median_s"] for v in per_precision.values()
                              if v["runtime_mpx_s"] == fastest)
        summary["runtime_own_work_s"] = null["median_s"]
        summary["runtime_own_work_share_of_best_openvino"] = null["median_s"] / best_runtime_s
    if "bf16" in per_precision and "int8" in per_precision:
        summary["int8_vs_bf16"] = per_precision["int8"]["runtime_mpx_s"] / per_precision["bf16"]["runtime_mpx_s"]
    else:
        summary["int8_vs_bf16"] = "n/a: needs both bf16 (a BF16 CPU) and an int8 graph"
    if "fp32" in per_precision and "int8" in per_precision:
        int8, fp32 = per_precision["int8"]["runtime_mpx_s"], per_precision["fp32"]["runtime_mpx_s"]
        summary["openvino_int8_vs_fp32"] = int8 / fp32
    if "onnxruntime fp32" in rate and "fp32" in per_precision:
        summary["openvino_fp32_vs_onnxruntime_fp32"] = per_precision["fp32"]["runtime_mpx_s"] / rate["onnxruntime fp32"]
    if "onnxruntime int8" in rate and "int8" in per_precision:
        summary["openvino_int8_vs_onnxruntime_int8"] = per_precision["int8"]["runtime_mpx_s"] / rate["onnxruntime int8"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="bpp,pcarn-m,gmgbp")
    parser.add_argument("--tiles", type=int, default=2, help="patches per axis of the test input")
    parser.add_argument("--batch", type=int, default=2, help="OpenVINO batch for the THROUGHPUT configuration")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--patch", type=int, default=0, help="override the bundle's patch (quick runs)")
    parser.add_argument("--no-int8", action="store_true", help="skip building INT8 graphs")
    parser.add_argument("--bundle", action="append", default=[], metavar="MODEL=DIR",
                        help="use an already built bundle for MODEL (e.g. one built with --int8)")
    parser.add_argument("--quick", action="store_true", help="patch 48, 2 rounds, no INT8")
    args = parser.parse_args()
    if args.quick:
        args.patch, args.repeat, args.no_int8 = args.patch or 48, min(args.repeat, 2), True

    from srexport.runtime.backends.onnxruntime import physical_threads
    from srexport.runtime.backends.selection import auto_backend, available_backends, cpu_capabilities

    threads = args.threads or physical_threads()
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)

    report = {"machine": machine(threads)}
    caps = cpu_capabilities(available_backends())
    report["auto"] = {}
    for precision in ("fp32", "int8", "bf16"):
        try:
            report["auto"][precision] = list(auto_backend(precision))
        except Exception as exc:
            report["auto"][precision] = f"error: {exc}"
    start_peaks = peaks(threads, caps)
    log(f"peaks: fp32 {start_peaks['fp32']['gflops']:.1f} GFLOP/s ({start_peaks['fp32']['source']}), "
        f"bf16 {start_peaks['bf16']['gflops'] or 'none'}")
    report["matmul_peaks_start"] = start_peaks
    report["models"] = []
    with tempfile.TemporaryDirectory(prefix="srx-cpu-bench-") as tmp:
        for name in args.models.split(","):
            report["models"].append(bench_model(name, MODELS[name], Path(tmp), args, start_peaks, caps, log))
            log(f"{name}: done")
    report["matmul_peaks_end"] = peaks(threads, caps)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["seconds"] = time.perf_counter() - start
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
