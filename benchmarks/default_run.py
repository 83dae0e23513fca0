"""The default `run` (patch auto, crop stitching, backend auto, precision auto on an
fp32-only bundle) against whole-image PyTorch eager of the srexport.models reference, same
process, same threads.

Prints one JSON object: the CPU (model name, the flags that matter, OpenVINO's
OPTIMIZATION_CAPABILITIES); per case (G-MGBP BOE-R1 x4 on CSet5, PCARN-M-L1 x4 on CSet14;
LR by PIL bicubic downscale of the HR image cropped to a multiple of 4, written as PNGs):

- the folder run as `sr-export run DIR -o OUT` does it (`runtime.folder_run.run_images`: PNGs
  read, images in flight on the backend's streams, PNGs written), end to end with the first
  image and the compile included (the in-process compiled-model cache is emptied first);
- the same images one at a time (`Upscaler.upscale_file`, every thread on one image);
- whole-image PyTorch eager on the same PNGs (read, infer, quantise, write);
- the two alternated `--rounds` times (default 2), each side's best round, and their ratio;
- exactness of the default run against the whole image (max LSB, % exact 8-bit pixels), and
  of the same run under `--memory 0.5` and `0.1` (tiles per image, crop or blend stitching);
- pixels computed / pixels output on a 1920x1080 input under the default budget;

and the 8K job (1920x1080 -> 7680x4320, PCARN-M-L1 x4), each configuration in a fresh
subprocess: the default run (bundle load, compile and upscale timed; peak RSS against the
default budget) beside the default before patch auto and crop stitching (ONNX Runtime fp32,
the bundle's patch 192 and overlap 42, Hamming blend), and their ratio.

    python benchmarks/default_run.py [--bundles DIR] [--rounds N] [--only MODEL] [--skip-8k]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
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


SMALL_BUDGETS_GIB = (0.5, 0.1)  # exactness under budgets that make the images tile
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu() -> dict:
    """The CPU these figures were measured on."""
    from srexport.runtime.backends.precision_auto import cpu_flags

    name = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    try:
        from srexport.runtime.backends.openvino import cpu_capabilities

        caps = sorted(cpu_capabilities())
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the figures still name the CPU
        caps = [f"unavailable: {exc}"]
    return {"model": name, "flags": [f for f in FLAGS if f in cpu_flags()], "openvino_capabilities": caps}


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


def write_inputs(images: list, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, lr in images:
        Image.fromarray(lr).save(folder / name)
    return sorted(folder.glob("*.png"))


def torch_folder(reference, inputs: list[Path], out: Path) -> list[np.ndarray]:
    """Whole-image PyTorch eager over the folder, PNG in and out, as a user's script does."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with torch.inference_mode():
        for path in inputs:
            lr = np.asarray(Image.open(path).convert("RGB"))
            x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1), np.float32) / 255.0)[None]
            noise = [torch.zeros(n.shape(1, *x.shape[2:])) for n in reference.noise_inputs]
            result = quantize(reference(x, *noise)[0].numpy()).transpose(1, 2, 0)
            Image.fromarray(result).save(out / path.name)
            results.append(result)
    return results


def folder_run(bundle, inputs: list[Path], out: Path) -> None:
    """`sr-export run BUNDLE DIR -o OUT` with its defaults, in this process."""
    from srexport.runtime.backends import openvino
    from srexport.runtime.folder_run import run_images

    openvino.clear_cache()  # first image's compile included, every round
    failures = run_images(bundle.root, inputs, out, quiet=True, precision="auto")
    if failures:
        raise SystemExit(f"{failures} images failed")


def lsb_differences(outputs: list[np.ndarray], whole: list[np.ndarray]) -> np.ndarray:
    """|difference| of every 8-bit value of the outputs against the whole-image ones."""
    return np.concatenate([np.abs(a.astype(np.int16) - b.astype(np.int16)).ravel() for a, b in zip(outputs, whole)])


def small_budget(bundle, gib: float, images: list, whole: list[np.ndarray]) -> dict:
    """The default run under `--memory gib` (the images tile) against the whole image."""
    import srexport

    up = srexport.load(bundle.root, memory=gib)
    tiled = [up.upscale(lr) for _, lr in images]
    diff = lsb_differences(tiled, whole)
    plans = [up.plan(*lr.shape[:2]) for _, lr in images]
    return {"run_line": up.tiling_note(), "max_lsb": int(diff.max()), "exact_pct": 100.0 * float((diff == 0).mean()),
            "tiles_per_image": [len(plan.tiles) for plan in plans],
            "stitching": sorted({"crop" if plan.owned else "blend" for plan in plans})}


def one_at_a_time(bundle, inputs: list[Path], out: Path) -> None:
    """The same folder with `Upscaler.upscale_file` per image: one image at a time, every
    thread on it (what the folder run's images in flight are measured against)."""
    import srexport
    from srexport.runtime.backends import openvino

    openvino.clear_cache()
    out.mkdir(parents=True, exist_ok=True)
    up = srexport.load(bundle.root)
    for path in inputs:
        up.upscale_file(path, out / path.name)


def run_case(model: str, weights: Path, images: list, bundle, work: Path, rounds: int) -> dict:
    import srexport
    from srexport.models.checkpoint import load_checkpoint
    from srexport.models.registry import build_model

    reference = load_checkpoint(build_model(model, None, 4), weights).eval()
    inputs = write_inputs(images, work / "in")
    times: dict[str, list[float]] = {"default_run_s": [], "one_at_a_time_s": [], "torch_eager_whole_s": []}
    whole: list[np.ndarray] = []
    for k in range(rounds):  # alternated, so load on the machine falls on both sides alike
        start = time.perf_counter()
        folder_run(bundle, inputs, work / f"out{k}")
        times["default_run_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        one_at_a_time(bundle, inputs, work / f"seq{k}")
        times["one_at_a_time_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        whole = torch_folder(reference, inputs, work / f"torch{k}")
        times["torch_eager_whole_s"].append(time.perf_counter() - start)
    outputs = [np.asarray(Image.open(work / "out0" / p.name).convert("RGB")) for p in inputs]
    diff = lsb_differences(outputs, whole)
    up = srexport.load(bundle.root)
    plan = up.plan(1080, 1920)
    budgets = {f"memory_{gib:g}_gib": small_budget(bundle, gib, images, whole) for gib in SMALL_BUDGETS_GIB}
    s = bundle.manifest.shape_rules.output_scale
    best = {key: min(values) for key, values in times.items()}
    return {
        "images": len(images), "backend": up.session.name, "precision": up.session.precision,
        "run_line": f"{up.tiling_note()}; {up.streams_note()}", "rounds": times, **best,
        "speedup": best["torch_eager_whole_s"] / best["default_run_s"],
        "max_lsb": int(diff.max()), "exact_pct": 100.0 * float((diff == 0).mean()),
        **budgets,
        "1080p_input": {"tiles": len(plan.tiles), "patch": [plan.patch_h, plan.patch_w],
                        "computed_over_output": plan.computed_pixels * s * s / (s * s * 1920 * 1080)},
    }


_EIGHT_K = textwrap.dedent("""
    import json, sys, time, numpy as np, srexport
    from srexport.profiling.profile import peak_rss_mb
    options = json.loads(sys.argv[2])
    image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    start = time.perf_counter()
    up = srexport.load(sys.argv[1], **options)
    out = up.upscale(image)
    seconds = time.perf_counter() - start
    assert out.shape == (4320, 7680, 3), out.shape
    plan = up.plan(1080, 1920)
    print(json.dumps({"options": options, "seconds": seconds, "output_mpx_s": out.shape[0] * out.shape[1] / seconds / 1e6,
                      "peak_rss_mb": peak_rss_mb(), "budget_gib": up.budget.gib if up.budget else None, "tiles": len(plan.tiles),
                      "patch": [plan.patch_h, plan.patch_w], "run_line": up.tiling_note(),
                      "backend": up.session.name, "precision": up.session.precision}))
""")
EIGHT_K_CONFIGS = {
    "default": {},
    # what `sr-export run` did before patch auto, crop stitching and the OpenVINO backend
    "previous_default": {"backend": "onnxruntime", "precision": "fp32", "patch": 192, "stitch": "blend"},
}


def eight_k(bundle) -> dict:
    """The 8K job in every configuration of EIGHT_K_CONFIGS, each in a fresh process."""
    runs = {}
    for name, options in EIGHT_K_CONFIGS.items():
        done = subprocess.run([sys.executable, "-c", _EIGHT_K, str(bundle.root), json.dumps(options)],
                              capture_output=True, text=True, cwd=REPO)
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else done.stderr[-500:]
    if all(isinstance(run, dict) for run in runs.values()):
        runs["speedup_vs_previous_default"] = runs["previous_default"]["seconds"] / runs["default"]["seconds"]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=Path, default=Path("/tmp/srx-bench-bundles"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=[model for model, _, _ in CASES], help="one case")
    parser.add_argument("--skip-8k", action="store_true")
    args = parser.parse_args()
    args.bundles.mkdir(parents=True, exist_ok=True)
    result = {"cpu": cpu(), "threads": torch.get_num_threads(), "load_average": list(os.getloadavg()), "cases": {}}
    bundles = {}
    for model, weights, folder in CASES:
        if args.only not in (None, model):
            continue
        bundle = bundles[model] = bundle_for(model, SHARED / "weights" / weights, args.bundles)
        images = lr_images(SHARED / "images" / folder, 4)
        with tempfile.TemporaryDirectory() as work:
            result["cases"][f"{model} x4 {folder}"] = run_case(model, SHARED / "weights" / weights, images, bundle,
                                                                Path(work), args.rounds)
    if not args.skip_8k and "pcarn-m" in bundles:
        result["8k_pcarn-m"] = eight_k(bundles["pcarn-m"])
    result["load_average_after"] = list(os.getloadavg())
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
