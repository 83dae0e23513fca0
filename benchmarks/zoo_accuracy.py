"""PSNR-Y of the published checkpoints through `sr-export run`'s runtime, and CPU time per image.

    python benchmarks/zoo_accuracy.py [--set CSet5] > zoo_accuracy.json

Protocol (issue "Foundation"): HR cropped to a multiple of the scale, LR = PIL bicubic
downscale rounded to 8 bits, output clamped and rounded to 8 bits, Y per BT.601, `scale`
pixels shaved, PSNR averaged over the set. Images run through the tiled ONNX Runtime
runtime with the bundle's default patch and overlap, one image at a time; the time per
image is the median wall time of those runs. Bicubic upscaling is the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED  # noqa: E402

CHECKPOINTS = [
    ("gmgbp", None, "gmgbp-pirm2018/BOE-R1.model"),
    ("gmgbp", None, "gmgbp-pirm2018/BOE-R2.model"),
    ("gmgbp", None, "gmgbp-pirm2018/BOE-R3.model"),
    ("pcarn-m", 4, "pcarn/PCARN-M.pth"),
    ("pcarn-m", 4, "pcarn/PCARN-M-L1.pth"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="CSet5", help="image folder under ../shared/data/images")
    args = parser.parse_args()
    from srexport.calib.accuracy import eval_images, psnr_y
    from srexport.export.build import BuildRequest, build_bundle
    from srexport.runtime.resize import bicubic
    from srexport.runtime.upscaler import load

    folder = SHARED / "images" / args.set
    if not folder.is_dir():
        sys.exit(f"error: {folder} is absent (the shared data folder beside the repository)")
    images = eval_images(folder, 4)
    report = {"set": args.set, "scale": 4, "images": [i.name for i in images], "results": []}
    bic = [psnr_y(bicubic(i.lr.transpose(2, 0, 1), *i.hr.shape[:2]).transpose(1, 2, 0), i.hr, 4) for i in images]
    report["results"].append({"model": "bicubic", "psnr_y_db": statistics.mean(bic)})
    with tempfile.TemporaryDirectory() as tmp:
        for model, scale, weights in CHECKPOINTS:
            path = SHARED / "weights" / weights
            out = Path(tmp) / path.stem
            build_bundle(BuildRequest(model=model, scale=scale, weights=path, out=out), warn=lambda m: None)
            up = load(out)
            scores, seconds = [], []
            for image in images:
                start = time.perf_counter()
                sr = up.upscale_planes(np.ascontiguousarray(image.lr.transpose(2, 0, 1))).transpose(1, 2, 0)
                seconds.append(time.perf_counter() - start)
                scores.append(psnr_y(sr, image.hr, 4))
            report["results"].append({
                "model": model, "weights": path.name, "psnr_y_db": statistics.mean(scores),
                "per_image_db": dict(zip(report["images"], scores)),
                "seconds_per_image_median": statistics.median(seconds),
                "patch": up.patch[0], "overlap": up.overlap,
            })
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
