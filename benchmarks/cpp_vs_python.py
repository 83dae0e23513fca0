"""libsrexport (C++, its openvino backend, through the C ABI) vs the Python runtime
(`srexport.load(..., backend="openvino")`) on the same bundle and frames, in one run.

    python benchmarks/cpp_vs_python.py [--bundle DIR] [--frames 5] [--rounds 2] > cpp_vs_python.json

The bundle defaults to PCARN-M x4 built from ../shared/data/weights/pcarn/PCARN-M-L1.pth
(into a temporary folder); the frames are 320x180 uint8 RGB pictures (CSet14 images
resized with PIL bicubic, or a synthetic picture when ../shared is absent). For fp32, and
bf16 where the CPU has BF16 (AVX512-BF16 / AMX; elsewhere the C++ refusal is recorded),
each side runs in a fresh process of its own, alternately `--rounds` times:

- one-time cost: `import srexport` / loading libsrexport.so (with OpenVINO's libraries),
  timed inside the worker (the interpreter's own start is not counted), opening the bundle
  (`srexport.load` / `srx_open`), the first frame (OpenVINO compiles the patch shape
  there), and first frame minus the steady per-frame time (the compile, in effect);
- steady state: median seconds per frame over `--frames` frames after that first one
  (wall and process CPU time);
- paired: both sides in one process, frames alternated (the order swapped every frame, the
  side compiled first every round): median Python / C++ ratio per frame, wall and CPU time,
  the steadiest figure on a machine shared with other jobs.

Both sides use their defaults (patch auto: a 320x180 frame runs whole, crop stitching);
the plans are recorded and compared (`same_plan`), and so are the C++ and Python outputs
of the last frame (max 8-bit difference): the same tiles and pixels, so the timings
compare the same work. Per-frame ratio python / cpp > 1 means
C++ is faster. The CPU is named from /proc/cpuinfo.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
WEIGHTS = SHARED / "weights" / "pcarn" / "PCARN-M-L1.pth"
FRAME_W, FRAME_H = 320, 180


def cpu() -> dict:
    """The CPU from /proc/cpuinfo: model name, vendor, family / model / stepping (a virtual
    machine's model name is often generic), the SIMD flags that pick OpenVINO's kernels."""
    fields, flags = {}, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key in ("model name", "vendor_id", "cpu family", "model", "stepping") and key not in fields:
                fields[key] = value
            elif key == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")
    return {"model_name": fields.get("model name", platform.processor() or "unknown"),
            "vendor": fields.get("vendor_id"), "family_model_stepping": [fields.get(k) for k in
                                                                         ("cpu family", "model", "stepping")],
            "flags": [f for f in wanted if f in flags], "cpus": len(os.sched_getaffinity(0)),
            "load_average_1min": os.getloadavg()[0]}


def frames(count: int):
    import numpy as np
    from PIL import Image

    folder = SHARED / "images" / "CSet14"
    files = sorted(folder.glob("*.png"))[:count] if folder.is_dir() else []
    out = [np.asarray(Image.open(f).convert("RGB").resize((FRAME_W, FRAME_H), Image.BICUBIC)) for f in files]
    y, x = np.mgrid[0:FRAME_H, 0:FRAME_W].astype(np.float32)
    while len(out) < count:
        k = len(out)
        planes = [0.5 + 0.45 * np.sin(x / (5 + c + k) + y / (7 + 2 * c)) for c in range(3)]
        out.append(np.rint(np.clip(np.stack(planes, -1), 0, 1) * 255).astype(np.uint8))
    return out


# --- workers (each in a fresh process) ----------------------------------------------
def open_cpp(lib_path: str, bundle: str, precision: str):
    """libsrexport's upscale function for 320x180 uint8 RGB frames, its plan, and the time
    loading the library took; or {"error": ...}."""
    import numpy as np

    from srexport.cabi import PROGRESS, Image, Options, Plan, declare

    start = time.perf_counter()
    lib = ctypes.CDLL(lib_path)
    loaded = time.perf_counter() - start
    declare(lib)
    options = Options()
    lib.srx_options_init(ctypes.byref(options))
    options.backend, options.precision = b"openvino", precision.encode()
    handle = ctypes.c_void_p()
    if lib.srx_open(bundle.encode(), ctypes.byref(options), ctypes.byref(handle)) != 0:
        return {"error": lib.srx_last_error().decode()}
    plan = Plan()
    lib.srx_get_plan(handle, FRAME_W, FRAME_H, ctypes.byref(plan))
    tiles = {"patch": [plan.patch_h, plan.patch_w], "tiles": plan.tiles, "crop": bool(plan.crop)}
    ow, oh = ctypes.c_int(), ctypes.c_int()
    lib.srx_output_size(handle, FRAME_W, FRAME_H, ctypes.byref(ow), ctypes.byref(oh))

    def upscale(frame):
        out = np.empty((oh.value, ow.value, 3), np.uint8)
        src = Image(frame.ctypes.data, FRAME_W, FRAME_H, 3, 1, 0)
        dst = Image(out.ctypes.data, ow.value, oh.value, 3, 1, 0)
        if lib.srx_upscale(handle, ctypes.byref(src), ctypes.byref(dst), PROGRESS(), None) != 0:
            raise RuntimeError(lib.srx_last_error().decode())
        return out

    return upscale, tiles, loaded


def worker_cpp(lib_path: str, bundle: str, precision: str, count: int):
    start = time.perf_counter()
    opened = open_cpp(lib_path, bundle, precision)
    if isinstance(opened, dict):
        return opened
    upscale, tiles, loaded = opened
    return {**_timed(upscale, count, start, start + loaded, time.perf_counter()), "plan": tiles}


def worker_python(bundle: str, precision: str, count: int):
    start = time.perf_counter()
    import srexport
    import srexport.runtime.upscaler  # noqa: F401  (srexport itself imports lazily)
    from srexport.errors import SrExportError

    imported = time.perf_counter()
    try:
        upscaler = srexport.load(bundle, backend="openvino", precision=precision)
    except SrExportError as exc:
        return {"error": str(exc)}
    opened = time.perf_counter()
    plan = upscaler.plan(FRAME_H, FRAME_W)
    tiles = {"patch": [plan.patch_h, plan.patch_w], "tiles": len(plan.tiles), "crop": bool(plan.owned)}
    return {**_timed(upscaler.upscale, count, start, imported, opened), "plan": tiles}


def worker_paired(lib_path: str, bundle: str, precision: str, count: int):
    """Both sides in one process, frame by frame in turn (the order swapped every frame):
    the load of a shared machine falls on both alike, so the median of the per-frame
    ratios is the steadiest comparison. Both run on the one libopenvino of the wheel."""
    import numpy as np

    import srexport
    import srexport.runtime.upscaler  # noqa: F401
    from srexport.errors import SrExportError

    opened = open_cpp(lib_path, bundle, precision)
    if isinstance(opened, dict):
        return opened
    try:
        python = srexport.load(bundle, backend="openvino", precision=precision).upscale
    except SrExportError as exc:
        return {"error": str(exc)}
    sides = {"cpp": opened[0], "python": python}
    clips = [np.ascontiguousarray(f) for f in frames(count + 1)]
    # The compile, not timed. Of two identical compiled models in one process the one
    # compiled second ran 4% faster here (memory placement), so the driver swaps which
    # side compiles first every round.
    first = os.environ.get("SRX_BENCH_FIRST", "cpp")
    for kind in (first, "python" if first == "cpp" else "cpp"):
        sides[kind](clips[0])
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu_s: dict[str, list[float]] = {k: [] for k in sides}
    for index, frame in enumerate(clips[1:]):
        for kind in (("cpp", "python") if index % 2 == 0 else ("python", "cpp")):
            t, c = time.perf_counter(), time.process_time()
            sides[kind](frame)
            cpu_s[kind].append(time.process_time() - c)
            wall[kind].append(time.perf_counter() - t)
    return {"wall": wall, "cpu": cpu_s}


def paired_summary(runs: list[dict]) -> dict:
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    out: dict = {"frames": sum(len(r["wall"]["cpp"]) for r in good)}
    for clock in ("wall", "cpu"):
        cpp = [t for r in good for t in r[clock]["cpp"]]
        python = [t for r in good for t in r[clock]["python"]]
        out[f"{clock}_per_frame_s"] = {"cpp": statistics.median(cpp), "python": statistics.median(python)}
        out[f"{clock}_python_over_cpp"] = statistics.median(p / c for p, c in zip(python, cpp))
    return out


def _timed(upscale, count: int, start: float, imported: float, opened: float) -> dict:
    import numpy as np

    clips = frames(count + 1)
    first_start = time.perf_counter()
    upscale(np.ascontiguousarray(clips[0]))
    first = time.perf_counter() - first_start
    times, cpu_times = [], []
    for frame in clips[1:]:
        frame = np.ascontiguousarray(frame)
        t, c = time.perf_counter(), time.process_time()
        out = upscale(frame)
        cpu_times.append(time.process_time() - c)
        times.append(time.perf_counter() - t)
    steady = statistics.median(times)
    np.save(os.environ["SRX_BENCH_OUT"], out)
    return {"import_s": imported - start, "open_s": opened - imported, "first_frame_s": first,
            "compile_s_estimate": first - steady, "one_time_s": imported - start + opened - imported + first,
            "per_frame_s": steady, "per_frame_min_s": min(times),
            "per_frame_cpu_s": statistics.median(cpu_times), "frames": len(times),
            "output_size": [int(out.shape[1]), int(out.shape[0])]}


# --- driver -------------------------------------------------------------------------
def run_worker(kind: str, args, precision: str, out_file: Path, first: str = "cpp") -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--bundle", str(args.bundle), "--precision", precision,
               "--frames", str(args.frames), "--lib", str(args.lib)]
    env = dict(os.environ, SRX_BENCH_OUT=str(out_file), SRX_BENCH_FIRST=first)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{kind} worker failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    keys = ("import_s", "open_s", "first_frame_s", "compile_s_estimate", "one_time_s", "per_frame_s",
            "per_frame_cpu_s")
    return {**{k: statistics.median(r[k] for r in good) for k in keys},
            "per_frame_min_s": min(r["per_frame_min_s"] for r in good), "rounds": len(good),
            "frames_per_round": good[0]["frames"], "output_size": good[0]["output_size"], "plan": good[0]["plan"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle folder (default: PCARN-M-L1 x4 built here)")
    parser.add_argument("--lib", type=Path, default=REPO / "build" / "cpp" / "libsrexport.so")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per round (after the first)")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per side and precision")
    parser.add_argument("--precision", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("cpp", "python", "paired"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "cpp":
            result = worker_cpp(str(args.lib), str(args.bundle), args.precision, args.frames)
        elif args.worker == "paired":
            result = worker_paired(str(args.lib), str(args.bundle), args.precision, args.frames)
        else:
            result = worker_python(str(args.bundle), args.precision, args.frames)
        print(json.dumps(result))
        return 0

    if args.frames < 1 or args.rounds < 1:
        print("cpp_vs_python: --frames and --rounds must be >= 1", file=sys.stderr)
        return 2
    if not args.lib.is_file():
        print(f"cpp_vs_python: {args.lib} not found (build it: cmake -S cpp -B build/cpp && cmake --build build/cpp "
              "-j2)", file=sys.stderr)
        return 2
    lib = ctypes.CDLL(str(args.lib))
    lib.srx_backend_available.argtypes = [ctypes.c_char_p]
    if not lib.srx_backend_available(b"openvino"):
        print(f"cpp_vs_python: {args.lib} was built without the openvino backend (pip install openvino, then "
              "configure again)", file=sys.stderr)
        return 2
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="cpp-vs-python-") as tmp:
        work = Path(tmp)
        if args.bundle is None:
            if not WEIGHTS.is_file():
                print(f"cpp_vs_python: {WEIGHTS} not found (pass --bundle)", file=sys.stderr)
                return 2
            from srexport.export.build import BuildRequest, build_bundle

            args.bundle = work / "pcarn-m-x4"
            build_bundle(BuildRequest(model="pcarn-m", scale=4, weights=WEIGHTS, out=args.bundle),
                         warn=lambda message: None)
            weights = str(WEIGHTS.relative_to(REPO.parent)) if WEIGHTS.is_relative_to(REPO.parent) else str(WEIGHTS)
        else:
            weights = None
        if not (args.bundle / "manifest.json").is_file():
            print(f"cpp_vs_python: {args.bundle} is not a bundle (no manifest.json)", file=sys.stderr)
            return 2
        from srexport.runtime.backends.openvino import cpu_capabilities, cpu_name

        caps = cpu_capabilities()
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        report = {
            "benchmark": "cpp_vs_python",
            "cpu": cpu(),
            "openvino_device": cpu_name(),
            "openvino_capabilities": sorted(caps),
            "bundle": {"model": manifest.get("model"), "variant": manifest.get("variant"),
                       "scale": manifest.get("scale"), "weights": weights, "patch": manifest.get("patch"),
                       "overlap": manifest.get("overlap")},
            "frames": {"size": [FRAME_W, FRAME_H], "source": "CSet14 resized (PIL bicubic)"
                       if (SHARED / "images" / "CSet14").is_dir() else "synthetic"},
            "settings": "both sides: backend openvino, their defaults (patch auto: a frame that fits the memory "
                        "budget runs whole, crop stitching), batch 1 (LATENCY), threads = the CPUs this process may use",
            "precisions": {},
        }
        for precision in ("fp32", "bf16"):
            runs: dict[str, list[dict]] = {"cpp": [], "python": []}
            outputs = {kind: work / f"{kind}-{precision}.npy" for kind in runs}
            refused_here = precision == "bf16" and "BF16" not in caps
            paired: list[dict] = []
            for round_ in range(1 if refused_here else args.rounds):
                for kind in (("python", "cpp") if round_ % 2 == 0 else ("cpp", "python")):
                    runs[kind].append(run_worker(kind, args, precision, outputs[kind]))
                if not refused_here:
                    paired.append(run_worker("paired", args, precision, work / "paired.npy",
                                             "cpp" if round_ % 2 == 0 else "python"))
            entry = {kind: summary(r) for kind, r in runs.items()}
            if refused_here:
                entry = {"skipped": "this CPU has no BF16 (AVX512-BF16 or AMX)",
                         "cpp_refusal": entry["cpp"].get("error"), "python_refusal": entry["python"].get("error")}
            elif "error" not in entry["cpp"] and "error" not in entry["python"]:
                cpp_out, py_out = np.load(outputs["cpp"]), np.load(outputs["python"])
                entry["max_8bit_difference"] = int(np.abs(cpp_out.astype(int) - py_out.astype(int)).max())
                entry["same_plan"] = entry["cpp"]["plan"] == entry["python"]["plan"]
                entry["per_frame_python_over_cpp"] = entry["python"]["per_frame_s"] / entry["cpp"]["per_frame_s"]
                entry["one_time_python_over_cpp"] = entry["python"]["one_time_s"] / entry["cpp"]["one_time_s"]
                entry["per_frame_cpu_python_over_cpp"] = (entry["python"]["per_frame_cpu_s"]
                                                          / entry["cpp"]["per_frame_cpu_s"])
                entry["paired"] = paired_summary(paired)
                entry["cpp_at_least_as_fast_per_frame"] = entry["cpp"]["per_frame_s"] <= entry["python"]["per_frame_s"]
            report["precisions"][precision] = entry
    report["load_average_1min_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
