"""Reduced-precision figures of the published checkpoints, printed as JSON.

For each model: build a bundle with FP16 and INT8 graphs (INT8 calibrated on CSet5, accuracy
measured on CSet14 at 4x, LR by PIL bicubic, as `sr-export build --fp16 --int8 --calib-dir
... --eval-dir ...` does), then time FP32 and INT8 in the same run with the runtime's own
tiling (`srexport.load(bundle, precision=...)`, the bundle's patch and overlap, batch 1),
on ONNX Runtime and (where installed) OpenVINO, alternating the configurations so that
other load on the machine hits all alike; with every core (what `sr-export run` uses), and
with `--single-thread` once more on one thread.

    python benchmarks/precision.py [--models pcarn-m-l1 gmgbp-r1] [--calib-patches 64]
        [--method percentile] [--reps 3] [--timing-images 3] [--single-thread] [--out bundles/bench] [--reuse]
        [--json results.json]

Targets (issue "Precision"): INT8 PSNR-Y loss vs FP32 <= 0.2 dB, INT8 throughput >= 2x
FP32, FP16 PSNR vs FP32 >= 50 dB; where OpenVINO runs bf16 (AVX512-BF16/AMX), bf16 is timed
too and INT8 >= 1.5x BF16 is the target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
MODELS = {
    "pcarn-m-l1": ("pcarn-m", "m", 4, SHARED / "weights" / "pcarn" / "PCARN-M-L1.pth"),
    "gmgbp-r1": ("gmgbp", "pirm2018", 4, SHARED / "weights" / "gmgbp-pirm2018" / "BOE-R1.model"),
}
TIMING_IMAGES = ("lenna", "comic", "zebra", "baboon", "pepper", "man")


def cpu_features() -> dict:
    flags: set[str] = set()
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")
    return {"model": model, "cores": os.cpu_count(), **{f: f in flags for f in wanted}}


def build(name: str, args) -> Path:
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, build_bundle

    model, variant, scale, weights = MODELS[name]
    out = Path(args.out) / name
    if args.reuse and (out / "manifest.json").is_file():
        return out
    options = PrecisionOptions(
        fp16=True, int8=True, bf16=True, calib_dir=SHARED / "images" / "CSet5", calib_patches=args.calib_patches,
        calib_method=args.method, seed=args.seed, eval_dir=SHARED / "images" / "CSet14",
    )
    request = BuildRequest(model=model, variant=variant, scale=scale, weights=weights, out=out, precision=options)
    build_bundle(request, warn=lambda m: print(f"warning: {m}", file=sys.stderr))
    return out


def timing_inputs(scale: int, count: int) -> list[np.ndarray]:
    from srexport.calib.accuracy import lr_from_hr
    from srexport.calib.patches import read_rgb

    folder = SHARED / "images" / "CSet14"
    return [lr_from_hr(read_rgb(folder / f"{stem}.png"), scale)[0] for stem in TIMING_IMAGES[:count]]


def cpu_backends() -> list[str]:
    """ONNX Runtime (the default that always works) and OpenVINO where installed."""
    from srexport.runtime.backends.selection import available_backends

    return ["onnxruntime"] + (["openvino"] if available_backends()["openvino"] else [])


def throughput(bundle: Path, configs: list[tuple[str, str]], images: list[np.ndarray], reps: int,
               threads: int) -> dict:
    """Best-of-`reps` seconds per pass over `images` for each (backend, precision),
    alternating them so that other load on the machine hits every one alike."""
    import srexport
    from srexport.calib.accuracy import upscale_rgb

    upscalers = {f"{b} {p}": srexport.load(bundle, backend=b, precision=p, threads=threads) for b, p in configs}
    first = next(iter(upscalers.values()))
    out_pixels = sum(i.shape[0] * i.shape[1] * first.scale * first.scale for i in images)
    for up in upscalers.values():  # warm-up: session initialisation, arena growth, compiles
        upscale_rgb(up, images[0])
    best = {k: float("inf") for k in upscalers}
    cpu = {k: float("inf") for k in upscalers}
    for _ in range(reps):
        for k, up in upscalers.items():
            wall, proc = time.perf_counter(), time.process_time()
            for image in images:
                upscale_rgb(up, image)
            best[k] = min(best[k], time.perf_counter() - wall)
            cpu[k] = min(cpu[k], time.process_time() - proc)
    patches = sum(len(first.plan(*i.shape[:2]).tiles) for i in images)
    return {
        "images": len(images), "output_megapixels": round(out_pixels / 1e6, 3), "patches": patches,
        "seconds": {k: round(best[k], 3) for k in upscalers},
        "cpu_seconds": {k: round(cpu[k], 3) for k in upscalers},
        "mpx_per_s": {k: round(out_pixels / 1e6 / best[k], 4) for k in upscalers},
    }


def bf16_cpu() -> bool:
    """OpenVINO runs bf16 here (its OPTIMIZATION_CAPABILITIES list BF16: AVX512-BF16 or AMX)."""
    from srexport.runtime.backends.selection import available_backends, cpu_capabilities

    available = available_backends()
    return bool(available["openvino"]) and "BF16" in cpu_capabilities(available)


def speedups(speed: dict, backends: list[str]) -> dict:
    """INT8 vs FP32 (and vs BF16 where timed) on each backend, and the fastest INT8 vs ONNX
    Runtime FP32 (the default)."""
    s = speed["seconds"]
    out = {f"{b} int8 / {b} fp32": round(s[f"{b} fp32"] / s[f"{b} int8"], 3) for b in backends}
    out.update({f"{b} int8 / {b} bf16": round(s[f"{b} bf16"] / s[f"{b} int8"], 3) for b in backends
                if f"{b} bf16" in s})
    fastest = min((k for k in s if k.endswith("int8")), key=s.get)
    out[f"{fastest} / onnxruntime fp32"] = round(s["onnxruntime fp32"] / s[fastest], 3)
    return out


def report(name: str, bundle_dir: Path, args) -> dict:
    from srexport.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    fp16, int8, bf16 = m.precisions["fp16"], m.precisions["int8"], m.precisions.get("bf16")
    fp32_y = int8.notes.get("psnr_y_fp32_db")
    images = timing_inputs(m.scale, args.timing_images)
    backends = cpu_backends()
    configs = [(b, p) for b in backends for p in ("fp32", "int8")]
    if "openvino" in backends and bf16 is not None and bf16_cpu():
        configs.append(("openvino", "bf16"))
    speed = throughput(bundle_dir, configs, images, args.reps, args.threads)
    gains = speedups(speed, backends)
    single = None
    if args.single_thread:
        single = throughput(bundle_dir, configs, images, max(1, args.reps - 1), 1)
        single["speedups"] = speedups(single, backends)
    loss = None if fp32_y is None or int8.psnr_y_db is None else round(fp32_y - int8.psnr_y_db, 3)
    same_backend = [gains[f"{b} int8 / {b} fp32"] for b in backends]
    return {
        "model": f"{m.model} {m.variant} x{m.scale}",
        "bundle": str(bundle_dir),
        "patch": m.patch, "overlap": m.overlap,
        "psnr_y_set14_db": {"fp32": fp32_y, "fp16": fp16.psnr_y_db, "int8": int8.psnr_y_db,
                            "bf16": None if bf16 is None else bf16.psnr_y_db},
        "int8_psnr_y_loss_db": loss,
        "fp16_psnr_vs_fp32_db": fp16.psnr_vs_fp32_db,
        "fp16_psnr_vs_fp32_float16_storage_db": fp16.notes.get("psnr_vs_fp32_float16_storage_db"),
        "int8_psnr_vs_fp32_db": int8.psnr_vs_fp32_db,
        "fp16_fp32_blocked_nodes": fp16.notes.get("fp32_blocked_nodes"),
        "int8_exclusions": {"choice": int8.notes.get("exclusion_choice"),
                            "nodes": int8.notes.get("excluded_nodes"),
                            "candidates": int8.notes.get("exclusion_candidates")},
        "int8_calibration": {k: int8.notes["calibration"][k] for k in ("method", "patches", "patch_size", "seed")},
        "int8_tensorrt_graph": int8.notes.get("tensorrt"),
        "throughput": speed,
        "int8_speedups": gains,
        "throughput_one_thread": single,
        "targets": {
            "int8_psnr_y_loss_le_0.2_db": None if loss is None else loss <= 0.2,
            "int8_speedup_ge_2x_same_backend": max(same_backend) >= 2.0,
            "int8_speedup_ge_1.5x_bf16_openvino": (gains["openvino int8 / openvino bf16"] >= 1.5
                                                   if "openvino int8 / openvino bf16" in gains else None),
            "int8_speedup_ge_2x_vs_onnxruntime_fp32": max(gains.values()) >= 2.0,
            "fp16_psnr_vs_fp32_ge_50_db": fp16.psnr_vs_fp32_db is not None and fp16.psnr_vs_fp32_db >= 50,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--calib-patches", type=int, default=64)
    parser.add_argument("--method", default="percentile", choices=["entropy", "percentile", "minmax"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: every CPU this process may use")
    parser.add_argument("--single-thread", action="store_true", help="also time every config on one thread")
    parser.add_argument("--timing-images", type=int, default=3, help="CSet14 images (LR) timed per pass")
    parser.add_argument("--out", default=str(REPO / "bundles" / "bench-precision"))
    parser.add_argument("--reuse", action="store_true", help="reuse bundles already built under --out")
    parser.add_argument("--json", help="also write the JSON here")
    args = parser.parse_args(argv)
    results = {"cpu": cpu_features(), "args": vars(args), "models": {}}
    for name in args.models:
        if not MODELS[name][3].is_file():
            results["models"][name] = {"skipped": f"{MODELS[name][3]} is absent"}
            continue
        started = time.perf_counter()
        bundle_dir = build(name, args)
        built = time.perf_counter()
        results["models"][name] = report(name, bundle_dir, args)
        results["models"][name]["build_seconds"] = round(built - started, 1)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
