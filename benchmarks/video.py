"""End-to-end video throughput vs the runtime's image throughput on the same frames.

    python benchmarks/video.py [--quick] [--frames 48] [--size 160x90] > video.json

Makes an H.264 clip with an AAC track (moving pattern), decodes its frames to float RGB
once, and times in one run: (a) `Upscaler.upscale` on those frames one after another (the
image path, no video I/O), (b) `Upscaler.upscale_video` on the clip (decode, upscale,
encode with the default libx264 CRF 18 and copy the audio, overlapped on threads) and
(c) the same with lossless FFV1, alternated and best of --repeat. The ratio (b)/(a) is what streaming costs; the target is
>= 0.9. PCARN-M x4 with the shipped PCARN-M-L1 weights when ../shared holds them, else
random-init (the speed is the same).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, build, weights_for  # noqa: E402

sys.path.insert(0, str(REPO))  # this checkout's srexport, not an installed one


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_clip(path: Path, frames: int, width: int, height: int) -> Path:
    import av

    out = av.open(str(path), "w")
    video = out.add_stream("libx264", rate=24)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    sound = out.add_stream("aac", rate=48000)
    sound.layout = "mono"
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(frames):
        rgb = np.stack([0.5 + 0.4 * np.sin(0.11 * xx + 0.3 * i), 0.5 + 0.4 * np.cos(0.07 * yy - 0.2 * i),
                        ((xx + yy + 3 * i) % 37) / 37], -1).astype(np.float32)
        frame = av.VideoFrame.from_ndarray(rgb, format="gbrpf32le").reformat(format="yuv420p")
        frame.pts = i
        out.mux(video.encode(frame))
    out.mux(video.encode(None))
    t = np.arange(48000 * frames // 24) / 48000
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
    for k in range(0, samples.shape[1], 1024):
        chunk = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, k:k + 1024]), format="fltp", layout="mono")
        chunk.sample_rate, chunk.pts = 48000, k
        out.mux(sound.encode(chunk))
    out.mux(sound.encode(None))
    out.close()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12 frames of 96x54")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="160x90", help="input WxH")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="alternated runs of each; the best is reported")
    args = parser.parse_args()
    frames = 12 if args.quick else args.frames
    width, height = (96, 54) if args.quick else (int(v) for v in args.size.split("x"))

    import av

    import srexport
    from srexport.video.colour import to_rgb
    from srexport.video.decode import open_input

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = build("pcarn-m", work / "pcarn-m-x4", scale=4)
        up = srexport.load(bundle.root, backend=args.backend)
        clip = make_clip(work / "clip.mp4", frames, width, height)
        container, probe = open_input(clip)
        with container:
            decoded = [to_rgb(f, probe.colour) for f in container.decode(video=0)]
        up.upscale(decoded[0])  # warm-up: shapes compiled, caches filled

        inside = {"seconds": 0.0}
        upscale = up.upscale

        def timed_upscale(image, progress=None):
            start = time.perf_counter()
            try:
                return upscale(image, progress)
            finally:
                inside["seconds"] += time.perf_counter() - start

        def image_path() -> float:
            start = time.perf_counter()
            for rgb in decoded:
                upscale(rgb)
            return time.perf_counter() - start

        # Alternated, best of `repeat`: other work on the machine hits both sides alike.
        image_runs: list[float] = []
        runs: dict[str, dict] = {}
        every: dict[str, list[float]] = {}
        cases = (("libx264_crf18", "mp4", {}), ("ffv1_lossless", "mkv", {"codec": "ffv1"}))
        for _ in range(args.repeat):
            image_runs.append(image_path())
            for name, suffix, options in cases:
                dst = work / f"out_{name}.{suffix}"
                inside["seconds"] = 0.0
                up.upscale = timed_upscale  # instance attribute: the per-frame copies share it
                start = time.perf_counter()
                result = up.upscale_video(clip, dst, **options)
                seconds = time.perf_counter() - start
                del up.upscale
                with av.open(str(dst)) as check:
                    kinds = [s.type for s in check.streams]
                best = runs.get(name)
                if best is None or seconds < best["seconds"]:
                    runs[name] = {"seconds": seconds, "fps": result.frames / seconds, "frames": result.frames,
                                  "codec": result.codec, "pix_fmt": result.pix_fmt, "streams": kinds,
                                  "inference_seconds_inside": inside["seconds"]}
                every.setdefault(name, []).append(seconds)
        image_s = min(image_runs)
        for name, run in runs.items():
            run["all_seconds"] = every[name]
            run["ratio_to_image_path"] = image_s / run["seconds"]

    out_w, out_h = width * 4, height * 4
    report = {
        "machine": {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "threads": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "pyav": av.__version__},
        "model": "pcarn-m x4", "weights": "PCARN-M-L1" if weights_for("pcarn-m") else "random-init",
        "backend": up.session.name, "input": f"{width}x{height}", "output": f"{out_w}x{out_h}", "frames": frames,
        "repeat": args.repeat,
        "image_path": {"seconds": image_s, "all_seconds": image_runs, "fps": frames / image_s,
                       "output_mpx_s": frames * out_w * out_h / image_s / 1e6},
        "video": runs,
        "target_ratio": 0.9,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
