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
- steady state: median seconds per frame over `--frames` frames after that first one.

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
    name, flags = platform.processor() or "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name in ("unknown", platform.processor()):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return {"model_name": name, "flags": [f for f in wanted if f in flags], "cpus": len(os.sched_getaffinity(0))}


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
class _Image(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("channels", ctypes.c_int), ("dtype", ctypes.c_int), ("stride", ctypes.c_size_t)]


class _Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("overlap", ctypes.c_int),
                ("window", ctypes.c_char_p), ("batch", ctypes.c_int), ("noise", ctypes.c_double),
                ("seed", ctypes.c_uint64), ("threads", ctypes.c_int), ("verify_hashes", ctypes.c_int),
                ("cache_dir", ctypes.c_char_p), ("device", ctypes.c_int), ("stitch", ctypes.c_char_p),
                ("memory_gib", ctypes.c_double)]


class _Plan(ctypes.Structure):
    _fields_ = [("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("tiles", ctypes.c_int),
                ("overlap", ctypes.c_int), ("crop", ctypes.c_int), ("pad_top", ctypes.c_int),
                ("pad_bottom", ctypes.c_int), ("pad_left", ctypes.c_int), ("pad_right", ctypes.c_int),
                ("computed_pixels", ctypes.c_longlong)]


def worker_cpp(lib_path: str, bundle: str, precision: str, count: int):
    import numpy as np

    start = time.perf_counter()
    lib = ctypes.CDLL(lib_path)
    imported = time.perf_counter()
    lib.srx_last_error.restype = ctypes.c_char_p
    lib.srx_options_init.argtypes = [ctypes.POINTER(_Options)]
    lib.srx_open.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(ctypes.c_void_p)]
    lib.srx_upscale.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Image), ctypes.POINTER(_Image), ctypes.c_void_p,
                                ctypes.c_void_p]
    lib.srx_output_size.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                    ctypes.POINTER(ctypes.c_int)]
    options = _Options()
    lib.srx_options_init(ctypes.byref(options))
    options.backend, options.precision = b"openvino", precision.encode()
    handle = ctypes.c_void_p()
    if lib.srx_open(bundle.encode(), ctypes.byref(options), ctypes.byref(handle)) != 0:
        return {"error": lib.srx_last_error().decode()}
    opened = time.perf_counter()
    plan = _Plan()
    lib.srx_get_plan.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Plan)]
    lib.srx_get_plan(handle, FRAME_W, FRAME_H, ctypes.byref(plan))
    tiles = {"patch": [plan.patch_h, plan.patch_w], "tiles": plan.tiles, "crop": bool(plan.crop)}
    ow, oh = ctypes.c_int(), ctypes.c_int()
    lib.srx_output_size(handle, FRAME_W, FRAME_H, ctypes.byref(ow), ctypes.byref(oh))

    def upscale(frame):
        out = np.empty((oh.value, ow.value, 3), np.uint8)
        src = _Image(frame.ctypes.data, FRAME_W, FRAME_H, 3, 1, 0)
        dst = _Image(out.ctypes.data, ow.value, oh.value, 3, 1, 0)
        if lib.srx_upscale(handle, ctypes.byref(src), ctypes.byref(dst), None, None) != 0:
            raise RuntimeError(lib.srx_last_error().decode())
        return out

    return {**_timed(upscale, count, start, imported, opened), "plan": tiles}


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


def _timed(upscale, count: int, start: float, imported: float, opened: float) -> dict:
    import numpy as np

    clips = frames(count + 1)
    first_start = time.perf_counter()
    upscale(np.ascontiguousarray(clips[0]))
    first = time.perf_counter() - first_start
    times = []
    for frame in clips[1:]:
        frame = np.ascontiguousarray(frame)
        t = time.perf_counter()
        out = upscale(frame)
        times.append(time.perf_counter() - t)
    steady = statistics.median(times)
    np.save(os.environ["SRX_BENCH_OUT"], out)
    return {"import_s": imported - start, "open_s": opened - imported, "first_frame_s": first,
            "compile_s_estimate": first - steady, "one_time_s": imported - start + opened - imported + first,
            "per_frame_s": steady, "per_frame_min_s": min(times), "frames": len(times),
            "output_size": [int(out.shape[1]), int(out.shape[0])]}


# --- driver -------------------------------------------------------------------------
def run_worker(kind: str, args, precision: str, out_file: Path) -> dict:
    command = [sys.executable, __file__, "--worker", kind, "--bundle", str(args.bundle), "--precision", precision,
               "--frames", str(args.frames), "--lib", str(args.lib)]
    env = dict(os.environ, SRX_BENCH_OUT=str(out_file))
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{kind} worker failed: {tail}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    good = [r for r in runs if "error" not in r]
    if not good:
        return {"error": runs[0]["error"]}
    keys = ("import_s", "open_s", "first_frame_s", "compile_s_estimate", "one_time_s", "per_frame_s")
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
    parser.add_argument("--worker", choices=("cpp", "python"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "cpp":
            result = worker_cpp(str(args.lib), str(args.bundle), args.precision, args.frames)
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
        from srexport.runtime.backends.openvino import cpu_capabilities

        caps = cpu_capabilities()
        manifest = json.loads((args.bundle / "manifest.json").read_text())
        report = {
            "benchmark": "cpp_vs_python",
            "cpu": cpu(),
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
            for _ in range(1 if refused_here else args.rounds):
                for kind in ("python", "cpp"):
                    runs[kind].append(run_worker(kind, args, precision, outputs[kind]))
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
                entry["cpp_at_least_as_fast_per_frame"] = entry["cpp"]["per_frame_s"] <= entry["python"]["per_frame_s"]
            report["precisions"][precision] = entry
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
