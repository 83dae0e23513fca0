"""`sr-export profile` over the zoo's paper workloads, one JSON document on stdout.

    python benchmarks/profile_zoo.py [--full] [--only MODEL] [--bundles DIR] > profile_zoo.json

Each entry is a full `profile_bundle` result (schema: srexport/profiling/schema.py) plus
`mode`, saying how the paper workload was reached:

- "real preset": the profile ran the paper's image size itself, and `titan_x.method` is
  "measured" (PCARN-M 320x180 -> 1280x720).
- "scaled down": the profile ran a smaller image with the SAME patch size the workload
  uses and `titan_x` / `titan_x_all` extrapolate this device's time to the paper's size by
  the graph input pixels the runtime would process (tiles x patch area); every such figure
  says "extrapolated x<factor> from ..." in its `method`. On 2 shared cores the real
  presets take minutes per run (BPP 1080p is 104 patches of 192x192 at 57 GFLOP each), so
  by default: G-MGBP runs one 96x96 LR patch (the PIRM workload is 6 such patches),
  MGBPv2 one 767x767 patch (the 767/64 workload is 25 of them; the 1000x1000 and 8K
  whole-image rows scale by pixels), BPP one 192x192 patch (1080p: 104 of them).
  `--full` runs the real presets instead (G-MGBP PIRM, MGBPv2 1000x1000 in one piece,
  BPP 1920x1080).

Bundles are built from the shared checkpoints where they exist (PCARN-M-L1, BOE-R1),
otherwise from the initialisation (MGBPv2, BPP: the graph, FLOPs and speed are real).
Each model is profiled in a fresh process, so each `peak_rss_mb` is that profile's own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import build  # noqa: E402

# (model, build kwargs, scaled-down profile kwargs, full-preset profile kwargs)
PRESETS = [
    ("pcarn-m", {"scale": 4}, {"size": "1280x720"}, {"size": "1280x720"}),
    ("gmgbp", {}, {"size": "384x384", "workload": "gmgbp-pirm"}, {"size": "pirm"}),
    (
        "mgbpv2",
        {"variant": "aim2019-16x"},
        {"size": "752x752", "patch": 767, "workload": "mgbpv2-1000-767"},
        {"size": "1000x1000", "patch": 1023},
    ),
    ("bpp", {"variant": "x4"}, {"size": "192x192", "workload": "bpp-1080p"}, {"size": "1080p"}),
]


def log(message: str) -> None:
    print(f"[profile_zoo] {message}", file=sys.stderr, flush=True)


def profile_one(model: str, root: Path, full: bool, repeats: int, threads: int) -> dict:
    """Build (or reuse) one bundle and profile its preset; runs in a fresh process so that
    peak RSS is this profile's alone."""
    from srexport.bundle import load_bundle
    from srexport.errors import BundleError
    from srexport.profiling import profile_bundle, validate

    _, build_kwargs, scaled, real = next(p for p in PRESETS if p[0] == model)
    out = root / model
    start = time.perf_counter()
    try:
        bundle = load_bundle(out)
    except BundleError:
        log(f"building {model}")
        bundle = build(model, out, **build_kwargs)
    build_s = time.perf_counter() - start
    options = real if full else scaled
    mode = "real preset" if full or options == real else "scaled down"
    log(f"profiling {model} ({mode}: {options})")
    start = time.perf_counter()
    profile = profile_bundle(
        bundle.root, repeats=repeats, warmup=1, e2e_repeats=2, op_runs=1, threads=threads, log=log, **options
    )
    validate(profile)
    profile.update({
        "mode": mode,
        "profile_options": options,
        "weights": bundle.manifest.checkpoint["file"] if bundle.manifest.checkpoint else None,
        "build_or_load_s": build_s,
        "profile_s": time.perf_counter() - start,
    })
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="run the real paper presets (slow on a CPU)")
    parser.add_argument("--only", action="append", help="profile only this model (repeatable)")
    parser.add_argument("--bundles", type=Path, help="build bundles here (kept and reused) instead of a temp dir")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: profile one model, print its JSON
    args = parser.parse_args()

    if args.child:
        json.dump(profile_one(args.child, args.bundles, args.full, args.repeats, args.threads), sys.stdout)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="srx-profile-zoo-") as tmp:
        root = args.bundles or Path(tmp)
        for model, *_ in PRESETS:
            if args.only and model not in args.only:
                continue
            command = [sys.executable, __file__, "--child", model, "--bundles", str(root),
                       "--repeats", str(args.repeats), "--threads", str(args.threads)]
            if args.full:
                command.append("--full")
            child = subprocess.run(command, stdout=subprocess.PIPE, text=True)
            if child.returncode != 0:
                log(f"{model}: profiling failed (exit {child.returncode}); see above")
                continue
            profile = json.loads(child.stdout)
            results.append(profile)
            for row in profile["titan_x_all"]:
                ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.3g}"
                log(f"  {row['workload']}: paper {row['seconds']} s, here {row['device_seconds']:.3g} s, "
                    f"ratio {ratio} ({row['method'][:60]})")
    json.dump({"profiles": results}, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
