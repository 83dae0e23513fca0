"""Few compiled shapes on OpenVINO: static per-shape compiles vs one bounded-dynamic or
dynamic compile, and what bucket-sized tiles inside the image would cost instead.

Prints one JSON object. Per case (PCARN-M-L1 x4 on CSet14, G-MGBP BOE-R1 x4 on CSet5; LR as
in default_run.py), for each way of compiling, fp32, LATENCY, the process's threads:
compiles, compile seconds, first pass (every image once, compiles excluded) and a second
pass, and the largest difference of the outputs from the static ones. The modes run in
turn, twice (rounds), so that load from other processes falls on all of them.

`bucket_tiles`: option (a), tiles of bucket sizes (multiples of `step`) placed inside the
image (edges on the border, crop stitching with an overlap of 2 x halo), the cheapest per
axis: distinct shapes over the folder and input pixels computed / image pixels. An axis
shorter than a bucket plus the overlap cannot be tiled so; it runs whole at its own size.

    python benchmarks/ov_shapes.py [--bundles DIR] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from default_run import CASES, SHARED, bundle_for, cpu_name, lr_images


def axis_bucket_tiles(length: int, step: int, overlap: int) -> tuple[int, int]:
    """(patch, tiles) along one axis: the bucket patch <= length, tiles overlapping by
    `overlap`, with the fewest computed pixels; (length, 1) when none fits."""
    best = (length, 1)
    best_cost = None
    for patch in range(step, length + 1, step):
        if patch == length:
            cost, tiles = length, 1
        elif patch <= overlap:
            continue
        else:
            tiles = 1 + -(-(length - patch) // (patch - overlap))
            cost = tiles * patch
        if best_cost is None or cost < best_cost:
            best, best_cost = (patch, tiles), cost
    return best


def bucket_tiles(sizes: list[tuple[int, int]], step: int, halo: int) -> dict:
    shapes, computed, pixels, whole = set(), 0, 0, 0
    for h, w in sizes:
        (ph, nh), (pw, nw) = axis_bucket_tiles(h, step, 2 * halo), axis_bucket_tiles(w, step, 2 * halo)
        shapes.add((ph, pw))
        whole += int((ph == h and h % step != 0) or (pw == w and w % step != 0))
        computed += nh * nw * ph * pw
        pixels += h * w
    return {"step": step, "distinct_shapes": len(shapes), "computed_over_image": computed / pixels,
            "images_left_at_own_size": whole}


def compile_modes(bundle, images: list, rounds: int) -> dict:
    import openvino as ov

    from srexport.runtime.backends.onnxruntime import physical_threads

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": physical_threads(),
              "INFERENCE_PRECISION_HINT": "f32"}
    noise = bundle.manifest.noise_inputs
    bound = max(max(x.shape[2:]) for x in images)

    def feeds(x):
        return {"image": x, **{n.name: np.zeros(n.shape(1, *x.shape[2:]), np.float32) for n in noise}}

    def run(mode: str) -> tuple[dict, list]:
        model = core.read_model(str(bundle.graph_path("fp32")))
        compile_s, requests, outputs = 0.0, {}, []
        if mode != "static":
            shapes = {}
            for port in model.inputs:
                name = port.get_any_name()
                factor = next((n.factor for n in noise if n.name == name), 1)
                border = next((n.border for n in noise if n.name == name), 0)
                edge = ov.Dimension(-1) if mode == "dynamic" else ov.Dimension(1, factor * (bound + 2 * border))
                shapes[name] = ov.PartialShape([ov.Dimension(1), port.get_partial_shape()[1], edge, edge])
            model.reshape(shapes)
            start = time.perf_counter()
            request = core.compile_model(model, "CPU", config).create_infer_request()
            compile_s += time.perf_counter() - start
        passes = []
        for _ in range(2):
            infer_s = 0.0
            for x in images:
                feed = feeds(x)
                if mode == "static":
                    if x.shape not in requests:
                        model.reshape({k: list(v.shape) for k, v in feed.items()})
                        start = time.perf_counter()
                        requests[x.shape] = core.compile_model(model, "CPU", config).create_infer_request()
                        compile_s += time.perf_counter() - start
                    request = requests[x.shape]
                start = time.perf_counter()
                request.infer(feed)
                infer_s += time.perf_counter() - start
                if len(passes) == 0:
                    outputs.append(np.array(request.get_output_tensor(0).data, copy=True))
            passes.append(infer_s)
        return {"compiles": len(requests) if mode == "static" else 1, "compile_s": compile_s,
                "first_pass_s": passes[0], "second_pass_s": passes[1]}, outputs

    modes = ("static", "bounded", "dynamic")
    result: dict = {m: [] for m in modes}
    reference = None
    for _ in range(rounds):
        for mode in modes:
            row, outputs = run(mode)
            if reference is None:
                reference = outputs
            row["max_abs_vs_static"] = max(float(np.abs(a - b).max()) for a, b in zip(outputs, reference))
            result[mode].append(row)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bundles", type=Path, default=Path("/tmp/srx-bench-bundles"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    args.bundles.mkdir(parents=True, exist_ok=True)
    out = {"cpu": cpu_name(), "cases": {}}
    for model, weights, folder in reversed(CASES):
        bundle = bundle_for(model, SHARED / "weights" / weights, args.bundles)
        images = [np.ascontiguousarray(lr.transpose(2, 0, 1)[None], np.float32) / 255.0
                  for _, lr in lr_images(SHARED / "images" / folder, 4)]
        sizes = [x.shape[2:] for x in images]
        halo = bundle.manifest.shape_rules.halo
        out["cases"][f"{model} x4 {folder}"] = {
            "images": len(images), "distinct_sizes": len(set(sizes)), "halo": halo,
            "bucket_tiles": [bucket_tiles(sizes, step, halo) for step in (16, 32, 64)],
            "compile_modes": compile_modes(bundle, images, args.rounds),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
