"""Runtime throughput, overhead, tiling cost and 8K peak memory, side by side in one run.

    python benchmarks/runtime.py [--quick] > runtime.json

Figures (output megapixels per second) for G-MGBP, PCARN-M x4 and BPP x4 on the same
input: ONNX Runtime vs the PyTorch backend through the same tiler; the runtime with one
patch covering the image vs a bare ONNX Runtime session on the same graph and input
(the runtime's own overhead); tiled (bundle's patch/overlap) vs one patch; and the peak
RSS of a 1920x1080 -> 7680x4320 (8K) upscale in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import build, timeit  # noqa: E402

MODELS = [("gmgbp", {}), ("pcarn-m", {"scale": 4}), ("bpp", {"variant": "x4"})]


def bench_model(name: str, kwargs: dict, workdir: Path, lr_size: int, repeat: int) -> dict:
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.backends.torch import TorchSession
    from srexport.runtime.upscaler import Upscaler

    bundle = build(name, workdir / name, **kwargs)
    m = bundle.manifest
    planes = np.random.default_rng(0).random((3, lr_size, lr_size), dtype=np.float32)
    out_px = (lr_size * m.scale) ** 2
    ort_session = OrtSession(bundle)
    torch_session = TorchSession(bundle)
    whole = (lr_size * (m.scale if m.input_kind == "upscaled" else 1) + 16,) * 2

    def mpx(stats: dict) -> float:
        return out_px / stats["median_s"] / 1e6

    result = {"model": m.model, "variant": m.variant, "scale": m.scale, "lr_size": lr_size,
              "output_px": out_px, "patch": m.patch, "overlap": m.overlap,
              "weights": m.checkpoint["file"] if m.checkpoint else None}
    # Backends through the same tiler (one patch covering the image).
    single_ort = Upscaler(bundle, ort_session, patch=whole, overlap=0)
    single_torch = Upscaler(bundle, torch_session, patch=whole, overlap=0)
    result["onnxruntime"] = timeit(lambda: single_ort.upscale_planes(planes), repeat)
    result["torch"] = timeit(lambda: single_torch.upscale_planes(planes), repeat)
    result["onnxruntime_mpx_s"] = mpx(result["onnxruntime"])
    result["torch_mpx_s"] = mpx(result["torch"])
    result["onnxruntime_vs_torch"] = result["onnxruntime_mpx_s"] / result["torch_mpx_s"]

    # Bare session on exactly the graph input the runtime feeds.
    from srexport.runtime.resize import bicubic

    graph_in = planes if m.input_kind == "lr" else bicubic(planes, lr_size * m.scale, lr_size * m.scale)
    feed = {"image": graph_in[None]}
    for spec in m.noise_inputs:
        feed[spec.name] = np.zeros(spec.shape(1, *graph_in.shape[1:]), np.float32)
    bare = timeit(lambda: ort_session.run(feed), repeat)
    result["bare_onnxruntime"] = bare
    result["runtime_vs_bare"] = bare["median_s"] / result["onnxruntime"]["median_s"]

    tiled = Upscaler(bundle, ort_session)
    result["tiles"] = len(tiled.plan(lr_size, lr_size).tiles)
    result["tiled"] = timeit(lambda: tiled.upscale_planes(planes), repeat)
    result["tiled_mpx_s"] = mpx(result["tiled"])
    result["tiled_vs_single_cost"] = result["tiled"]["median_s"] / result["onnxruntime"]["median_s"]
    return result


_8K_CHILD = """
import resource, sys, time, numpy as np, srexport
up = srexport.load(sys.argv[1], patch=int(sys.argv[2]), batch=1)
image = (np.random.default_rng(0).random((1080, 1920, 3)) * 255).astype(np.uint8)
start = time.perf_counter()
out = up.upscale(image)
seconds = time.perf_counter() - start
assert out.shape == (4320, 7680, 3), out.shape
print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def bench_8k(bundle_dir: Path, patch: int) -> dict:
    proc = subprocess.run([sys.executable, "-c", _8K_CHILD, str(bundle_dir), str(patch)],
                          capture_output=True, text=True, check=True)
    seconds, rss_kb = proc.stdout.split()
    return {"input": "1920x1080", "output": "7680x4320", "model": bundle_dir.name, "patch": patch,
            "seconds": float(seconds), "output_mpx_s": 7680 * 4320 / float(seconds) / 1e6,
            "peak_rss_mib": int(rss_kb) / 1024, "limit_mib": 3 * 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, one repeat, no 8K run")
    parser.add_argument("--lr-size", type=int, default=96)
    args = parser.parse_args()
    repeat = 1 if args.quick else 3
    lr_size = 48 if args.quick else args.lr_size
    report = {"machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(),
                          "threads": len(os.sched_getaffinity(0))}, "models": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, kwargs in MODELS:
            report["models"].append(bench_model(name, kwargs, work, lr_size, repeat))
        if not args.quick:
            report["8k"] = bench_8k(work / "pcarn-m", 192)
    report["peak_rss_mib_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
