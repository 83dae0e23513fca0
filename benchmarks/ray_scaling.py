"""Ray scale-out: images/s and output Mpx/s with 1 and 2 Ray workers on one folder.

    python benchmarks/ray_scaling.py [--quick] [--repeat N] > ray_scaling.json

Inputs: CSet14 bicubic-downscaled by 4 (the papers' LR inputs) upscaled 4x by PCARN-M
(PCARN-M-L1 weights) when ../shared/data is there, else synthetic images and an untrained
PCARN-M. A private local Ray (loopback only, 2 CPUs) runs `ray_upscale` with 1 and 2
CPU workers (1 ONNX Runtime thread each), alternating, `--repeat` times; the single-process
runtime with 1 thread is the baseline. Figures per worker count (medians):

- end_to_end: images / wall time of the whole call (actor start-up and bundle loading
  included, as a user sees it);
- steady: from the first result back to the last image written (start-up excluded).

scaling_efficiency = rate(2 workers) / (2 x rate(1 worker)). On a shared machine other
work caps what a second process can get, so the same run measures that ceiling too:
`machine_two_process_efficiency` is the same ratio for two plain CPU-bound processes
(before and after the Ray runs), and `scaling_efficiency_vs_machine` divides by it. The load
average is recorded (FACTS.md: timings vary 3x or more when other work runs).
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
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, build  # noqa: E402


def prepare_inputs(folder: Path, quick: bool) -> str:
    """LR images into `folder`; returns where they came from."""
    folder.mkdir(parents=True)
    source = SHARED / "images" / "CSet14"
    if source.is_dir():
        names = sorted(source.glob("*.png"))[: 5 if quick else None]
        for path in names:
            hr = Image.open(path)
            hr.resize((hr.width // 4, hr.height // 4), Image.BICUBIC).save(folder / path.name)
        return f"CSet14 ({len(names)} images) bicubic /4"
    rng = np.random.default_rng(0)
    count = 5 if quick else 14
    for i in range(count):
        small = rng.random((12, 16, 3))
        image = Image.fromarray((small * 255).astype(np.uint8)).resize((128, 96), Image.BICUBIC)
        image.save(folder / f"synthetic{i:02d}.png")
    return f"synthetic ({count} images, 128x96)"


def _spin(n: int) -> float:
    start = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - start


def two_process_efficiency(n: int = 10_000_000) -> float:
    """Work per second of 2 CPU-bound processes / (2 x that of 1): what this machine gives now."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_spin, [1000, 1000]))  # start both processes first
        start = time.perf_counter()
        pool.submit(_spin, n).result()
        one = time.perf_counter() - start
        start = time.perf_counter()
        list(pool.map(_spin, [n, n]))
        two = time.perf_counter() - start
    return one / two


def rates(images: int, pixels: int, seconds: float | None) -> dict:
    if not seconds:
        return {"seconds": seconds, "images_per_s": None, "output_mpx_per_s": None}
    return {"seconds": seconds, "images_per_s": images / seconds, "output_mpx_per_s": pixels / seconds / 1e6}


def median_of(runs: list[dict], phase: str, key: str) -> float | None:
    values = [r[phase][key] for r in runs if r[phase][key] is not None]
    return statistics.median(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 images")
    parser.add_argument("--repeat", type=int, default=1, help="runs per worker count (alternating)")
    parser.add_argument("--workers", default="1,2", help="worker counts, comma separated")
    parser.add_argument("--patch", type=int, default=64, help="patch edge in LR pixels (several per image)")
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    from srexport.distributed.ray_run import ray_upscale, start_local_ray
    from srexport.runtime.folder_run import run_images

    with tempfile.TemporaryDirectory(prefix="ray-scaling-") as tmp:
        work = Path(tmp)
        source = prepare_inputs(work / "in", args.quick)
        inputs = sorted((work / "in").iterdir())
        bundle = build("pcarn-m", work / "bundle", scale=4)
        m = bundle.manifest
        options = dict(patch=args.patch, overlap=args.overlap, batch=args.batch)
        from srexport.runtime.upscaler import Upscaler

        planner = Upscaler(bundle, None, (args.patch, args.patch), args.overlap, batch=args.batch)
        tiles = sum(len(planner.plan(*Image.open(p).size[::-1]).tiles) for p in inputs)

        result = {
            "benchmark": "ray_scaling", "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                     "load_average_start": os.getloadavg()},
            "inputs": source, "images": len(inputs), "patches": tiles,
            "model": {"name": m.model, "variant": m.variant, "scale": m.scale,
                      "weights": m.checkpoint["file"] if m.checkpoint else None},
            "options": options, "threads_per_worker": 1,
        }
        start = time.perf_counter()
        run_images(bundle.root, inputs, work / "single", quiet=True, backend="onnxruntime", threads=1, **options)
        single = time.perf_counter() - start
        pixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in (work / "single").iterdir())
        result["output_px"] = pixels
        ceiling = [two_process_efficiency()]
        result["single_process_1_thread"] = rates(len(inputs), pixels, single)

        started = time.perf_counter()
        ray = start_local_ray(num_cpus=2)
        result["ray_start_s"] = time.perf_counter() - started
        runs: dict[int, list[dict]] = {w: [] for w in counts}
        try:
            for repeat in range(args.repeat):
                for workers in counts:
                    out = work / f"ray{workers}-{repeat}"
                    report = ray_upscale(bundle.root, inputs, out, workers=workers, quiet=True,
                                         backend="onnxruntime", report_error=lambda m: print(m, file=sys.stderr),
                                         **options)
                    assert report.failures == 0
                    same = all((out / p.name).read_bytes() == p.read_bytes() for p in (work / "single").iterdir())
                    runs[workers].append({
                        "end_to_end": rates(len(inputs), report.output_px, report.wall_s),
                        "steady": rates(len(inputs), report.output_px, report.steady_s),
                        "first_result_s": report.first_result_s,
                        "batches_by_worker": sorted(report.batches_by_worker.values()),
                        "identical_to_single_process": same,
                    })
        finally:
            ray.shutdown()

        result["ray"] = {}
        for workers, items in runs.items():
            result["ray"][str(workers)] = {
                "runs": items,
                "end_to_end": {k: median_of(items, "end_to_end", k) for k in ("images_per_s", "output_mpx_per_s")},
                "steady": {k: median_of(items, "steady", k) for k in ("images_per_s", "output_mpx_per_s")},
            }
        if 1 in runs and 2 in runs:
            one, two = result["ray"]["1"], result["ray"]["2"]
            result["scaling_efficiency"] = {
                phase: (two[phase]["images_per_s"] / (2 * one[phase]["images_per_s"])
                        if one[phase]["images_per_s"] and two[phase]["images_per_s"] else None)
                for phase in ("end_to_end", "steady")
            }
        ceiling.append(two_process_efficiency())
        result["machine"]["two_process_efficiency"] = ceiling
        result["machine"]["load_average_end"] = os.getloadavg()
        if "scaling_efficiency" in result:
            mean = statistics.mean(ceiling)
            result["scaling_efficiency_vs_machine"] = {
                phase: value / mean if value else None for phase, value in result["scaling_efficiency"].items()}
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
