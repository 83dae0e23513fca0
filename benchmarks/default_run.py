"""The default `run` (patch auto, crop stitching, backend auto, fp32) against whole-image
PyTorch eager of the srexport.models reference, same process, same threads.

Prints one JSON object: per case (G-MGBP BOE-R1 x4 on CSet5, PCARN-M-L1 x4 on CSet14; LR by
PIL bicubic downscale of the HR image cropped to a multiple of 4) the folder times end to
end (first image included), their ratio, exactness of the default run against the whole
image (max LSB, % exact pixels of the 8-bit outputs), pixels computed / pixels output on a
1920x1080 input under the default budget, and the peak RSS of one 8K output (1920x1080 x4,
PCARN-M-L1) under the default budget, measured in a subprocess.

    python benchmarks/default_run.py [--bundles DIR] [--skip-8k]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CASES = (
    ("gmgbp", "gmgbp-pirm2018/BOE-R1.model", "CSet5"),
    ("pcarn-m", "pcarn/PCARN-M-L1.pth", "CSet14"),
)


def cpu_name() -> str:
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def lr_images(folder: Path, scale: int) -> list[tuple[str, np.ndarray]]:
    images = []
    for path in sorted(folder.glob("*.png")):
        hr = Image.open(path).convert("RGB")
        w, h = hr.width - hr.width % scale, hr.height - hr.height % scale
        lr = hr.crop((0, 0, w, h)).resize((w // scale, h // scale), Image.BICUBIC)
        images.append((path.name, np.asarray(lr)))
    return images


def quantize(planes: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(planes, 0.0, 1.0) * 255.0).astype(np.uint8)


def bundle_for(model: str, weights: Path, root: Path):
    from srexport.bundle import load_bundle
    from srexport.export.build import BuildRequest, build_bundle

    out = root / f"{model}-x4"
    if not (out / "manifest.json").is_file():
        build_bundle(BuildRequest(model=model, scale=4, weights=weights, out=out), warn=lambda m: None)
    return load_bundle(out)


def run_case(model: str, weights: Path, images: list, bundle) -> dict:
    import srexport
    from srexport.models.checkpoint import load_checkpoint
    from srexport.models.registry import build_model

    reference = load_checkpoint(build_model(model, None, 4), weights).eval()
    start = time.perf_counter()
    up = srexport.load(bundle.root)  # the defaults of `sr-export run`
    outputs = [up.upscale(lr) for _, lr in images]
    default_s = time.perf_counter() - start
    start = time.perf_counter()
    whole = []
    with torch.inference_mode():
        for _, lr in images:
            x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1), np.float32) / 255.0)[None]
            noise = [torch.zeros(n.shape(1, *x.shape[2:])) for n in reference.noise_inputs]
            whole.append(quantize(reference(x, *noise)[0].numpy()).transpose(1, 2, 0))
    torch_s = time.perf_counter() - start
    diff = np.concatenate([np.abs(a.astype(np.int16) - b.astype(np.int16)).ravel() for a, b in zip(outputs, whole)])
    plan = up.plan(1080, 1920)
    s = bundle.manifest.shape_rules.output_scale
    return {
        "images": len(images), "backend": up.session.name, "run_line": up.tiling_note(),
        "default_run_s": default_s, "torch_eager_whole_s": torch_s, "speedup": torch_s / default_s,
        "max_lsb": int(diff.max()), "exact_pct": 100.0 * float((diff == 0).mean()),
        "1080p_input": {"tiles": len(plan.tiles), "patch": [plan.patch_h, plan.patch_w],
                        "computed_over_output": plan.computed_pixels * s * s / (s * s * 1920 * 1080)},
    }


_EIGHT_K = textwrap.dedent("""
    import json, sys, numpy as np, srexport
    from srexport.profiling.profile import peak_rss_mb
    up = srexport.load(sys.argv[1])
    plan = up.plan(1080, 1920)
    out = up.upscale(np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8))
    print(json.dumps({"output": list(out.shape), "peak_rss_mb": peak_rss_mb(), "budget_gib": up.budget.gib,
                      "tiles": len(plan.tiles), "patch": [plan.patch_h, plan.patch_w]}))
""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=Path, default=Path("/tmp/srx-bench-bundles"))
    parser.add_argument("--skip-8k", action="store_true")
    args = parser.parse_args()
    args.bundles.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu_name(), "threads": torch.get_num_threads(), "cases": {}}
    bundles = {}
    for model, weights, folder in CASES:
        bundle = bundles[model] = bundle_for(model, SHARED / "weights" / weights, args.bundles)
        images = lr_images(SHARED / "images" / folder, 4)
        result["cases"][f"{model} x4 {folder}"] = run_case(model, SHARED / "weights" / weights, images, bundle)
    if not args.skip_8k:
        done = subprocess.run([sys.executable, "-c", _EIGHT_K, str(bundles["pcarn-m"].root)], capture_output=True,
                              text=True, cwd=REPO)
        result["8k_pcarn-m"] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else done.stderr[-500:]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
