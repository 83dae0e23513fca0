"""`sr-export profile`: measure a bundle on this machine and compare it with the papers.

`profile_bundle(bundle_path, size=...)` returns one JSON-ready dict (schema and field
meanings: `srexport.profiling.schema`). What it does, in order:

1. Opens the bundle's graph of `precision` on `backend` exactly as `srexport.load` does
   and plans the tiles for an image whose OUTPUT is `size` (W x H; default: the model's
   paper workload, see `titanx.py`).
2. Times one patch (the plan's patch size) at batch 1 with `warmup` + `repeats` calls,
   then larger batches (2, 4, 8, or the given `batch`) while the time per patch improves;
   the best batch is kept for the end-to-end run.
3. Times the first call of each shape apart (`compile_s`: static-shape backends such as
   OpenVINO compile a model per input shape), then the end-to-end upscale of a random image of that size through the real runtime
   (`Upscaler.upscale_planes`: bicubic pre-upscale where the model takes one, tiling,
   noise maps, batching, window blending) `e2e_repeats` times.
4. Counts FLOPs per output pixel on the exported graph at the patch size (`flops.py`) and
   derives the achieved FLOP/s; compares it with an FP32 matrix-multiply peak measured in
   this run (CPU, before and after the model timings, the better of the two) or with the
   GPU's published peak.
5. Records peak RSS (Linux VmHWM, reset when profiling starts) and, on a CUDA device, peak
   device memory in use (sampled every 5 ms through cuda-python).
6. Aggregates per-operator time by op type: a second ONNX Runtime session with profiling
   enabled runs the same patch (op types are the ones ORT executes after fusion, e.g.
   FusedConv); the torch backend uses torch.profiler; any other session may offer
   `profile_ops(inputs, runs) -> {op type or layer: ms per run}` (the TensorRT backend's
   IProfiler hook).
7. Compares with the papers' Titan X table (`titanx.compare`): the matching row in
   `titan_x`, every row of this model (from the same measurement) in `titan_x_all`.
8. With `sweep=True` (what `--plot` needs), times batch-1 patches of several sizes for
   every precision in the bundle.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np

from srexport.bundle import load_bundle
from srexport.errors import SrExportError
from srexport.profiling import titanx
from srexport.profiling.flops import count_bundle
from srexport.profiling.peak import cpu_name, cuda_runtime, gpu_name, measure_matmul_peak, published_gpu_peak

SCHEMA_VERSION = 1
BATCH_CANDIDATES = (1, 2, 4, 8)
Log = Callable[[str], None]


# ----------------------------------------------------------------------------- timing
def summarize_ms(seconds: list[float]) -> dict:
    """{median, p10, p90, runs} in milliseconds (linear-interpolated percentiles)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    return {
        "median": float(np.median(ms)),
        "p10": float(np.percentile(ms, 10)),
        "p90": float(np.percentile(ms, 90)),
        "runs": int(ms.size),
    }


def time_calls(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- memory
def _status_kb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # pragma: no cover - not Linux
        import resource

        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


class DeviceMemoryMonitor:
    """Peak CUDA device memory in use (all processes), sampled on a thread; inert
    without cuda-python or a driver."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.baseline_mb: float | None = None
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cudart = cuda_runtime()
        self.baseline_mb = self._used_mb() if self._cudart is not None else None

    def _used_mb(self) -> float | None:
        try:
            err, free, total = self._cudart.cudaMemGetInfo()
            return None if int(err) != 0 else (total - free) / 2**20
        except Exception:
            return None

    def __enter__(self) -> "DeviceMemoryMonitor":
        if self.baseline_mb is not None:
            self.peak_mb = self.baseline_mb
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            used = self._used_mb()
            if used is not None and (self.peak_mb is None or used > self.peak_mb):
                self.peak_mb = used

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> float | None:
        """Peak in-use device memory above the baseline before the session, MB."""
        if self.baseline_mb is None or self.peak_mb is None:
            return None
        return max(0.0, self.peak_mb - self.baseline_mb)


# ----------------------------------------------------------------------------- inputs
def patch_inputs(manifest, batch: int, height: int, width: int, noise: float, seed: int = 0) -> dict:
    """Random graph inputs for `batch` patches of (height, width) graph input pixels."""
    rng = np.random.default_rng(seed)
    inputs = {manifest.inputs[0]: rng.random((batch, 3, height, width), dtype=np.float32)}
    for spec in manifest.noise_inputs:
        shape = spec.shape(batch, height, width)
        inputs[spec.name] = (
            np.zeros(shape, np.float32)
            if noise == 0.0
            else (rng.standard_normal(shape, dtype=np.float32) * np.float32(noise))
        )
    return inputs


# ----------------------------------------------------------------------------- op profiles
def ort_op_times(graph_path: Path, providers: list[str], threads: int, inputs: dict, runs: int = 3) -> dict:
    """Per-op-type time of `runs` calls (after one unrecorded warm-up call) from ONNX
    Runtime's own profiler on a second session with the same providers and threads."""
    from srexport.ort import inference_session

    with tempfile.TemporaryDirectory(prefix="srx-ortprof-") as tmp:
        session = inference_session(graph_path, threads=threads, providers=providers, sequential=True,
                                    profile_prefix=os.path.join(tmp, "ort"))
        feed = {i.name: inputs[i.name] for i in session.get_inputs()}
        for _ in range(1 + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    run_spans = sorted(
        (e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"
    )
    recorded = run_spans[1:]  # the first run is the warm-up
    totals: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        if not any(lo <= event["ts"] <= hi for lo, hi in recorded):
            continue
        op = event.get("args", {}).get("op_name", "?")
        totals[op] += event["dur"] / 1e3
        calls[op] += 1
    n = max(1, len(recorded))
    return _op_table({k: v / n for k, v in totals.items()}, {k: v // n for k, v in calls.items()},
                     "onnxruntime profiler (op types after ORT graph fusion)", n)


def torch_op_times(session, inputs: dict, runs: int = 3) -> dict:
    from torch.profiler import ProfilerActivity, profile

    session.run(inputs)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            session.run(inputs)
    totals, calls = {}, {}
    for event in prof.key_averages():
        if event.self_cpu_time_total <= 0:
            continue
        totals[event.key] = event.self_cpu_time_total / 1e3 / runs
        calls[event.key] = event.count // runs
    return _op_table(totals, calls, "torch.profiler (self CPU time per aten op)", runs)


def _op_table(ms: dict[str, float], calls: dict[str, int], source: str, runs: int) -> dict:
    total = sum(ms.values()) or 1.0
    ops = [
        {"op_type": op, "ms": t, "share": t / total, "calls": int(calls.get(op, 0))}
        for op, t in sorted(ms.items(), key=lambda kv: -kv[1])
    ]
    return {"source": source, "runs": runs, "total_ms": sum(ms.values()), "ops": ops}


def op_times(session, bundle, precision: str, threads: int, inputs: dict, runs: int) -> dict:
    name = session.name
    table = session.profile_ops(inputs, runs)
    if table is not None:  # the backend's own profiler (OpenVINO's PERF_COUNT): op type -> ms per run
        return _op_table(dict(table), {}, f"{name} profiler", runs)
    if name == "onnxruntime":
        providers = list(session.providers or ["CPUExecutionProvider"])
        return ort_op_times(bundle.graph_path(precision), providers, threads, inputs, runs)
    if name == "torch":
        return torch_op_times(session, inputs, runs)
    raise SrExportError(f"no per-operator profiler for the {name} backend")


# ----------------------------------------------------------------------------- profile
def _size_dict(width: int, height: int) -> dict:
    return {"width": int(width), "height": int(height)}


def _versions() -> dict:
    from srexport.version import __version__

    versions = {"sr-export": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for module in ("onnxruntime", "onnx", "torch"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # pragma: no cover
            pass
    return versions


def _best_batch(session, manifest, plan, noise: float, warmup: int, repeats: int, batch: int | None,
                lat1: list[float], max_call_s: float, log: Log, limit: int | None = None) -> tuple[int, list[dict]]:
    """Time larger batches (up to `limit`) while the time per patch improves; returns the
    best batch and one row per batch timed (batch 1 included)."""
    rows = [{"batch": 1, "per_patch_ms": summarize_ms(lat1), "call_ms": summarize_ms(lat1)}]
    best, best_per_patch = 1, statistics.median(lat1)
    if batch is not None:
        candidates = [batch] if batch > 1 else []
    else:
        candidates = [b for b in BATCH_CANDIDATES if 1 < b <= (limit or max(BATCH_CANDIDATES))]
    for b in candidates:
        if not batch and b * best_per_patch > max(max_call_s, 2 * best_per_patch):
            break
        inputs = patch_inputs(manifest, b, plan.patch_h, plan.patch_w, noise, seed=b)
        log(f"timing batch {b}")
        times = time_calls(lambda: session.run(inputs), min(warmup, 1), repeats if batch else max(3, repeats // 2))
        per_patch = [t / b for t in times]
        rows.append({"batch": b, "per_patch_ms": summarize_ms(per_patch), "call_ms": summarize_ms(times)})
        median = statistics.median(per_patch)
        if median < best_per_patch:
            improved = median < 0.97 * best_per_patch
            best, best_per_patch = b, median
            if not improved and not batch:
                break
        elif not batch:
            break
    return best, rows


def _compiled_models(session) -> int | None:
    """Compiled models a static-shape backend holds (OpenVINO's in-process cache), else None."""
    return session.compiled_models()


def _open_session(bundle, backend: str, precision: str, threads: int, patch: tuple[int, int] | str, batch: int,
                  log: Log, memory: float | None = None):
    """`open_session`, passing the tiler's patch and batch where the backends take them."""
    from srexport.runtime.backends import open_session

    accepted = inspect.signature(open_session).parameters
    wanted = {"patch": patch, "batch": batch, "log": log, "memory": memory}
    extra = {k: v for k, v in wanted.items() if k in accepted}
    return open_session(bundle, backend, precision, threads, **extra)


def _sweep(bundle, backend: str, threads: int, base_patch: int, rules, noise: float, precisions, log: Log,
           patches: list[int] | None = None, repeats: int = 3) -> list[dict]:
    if patches is None:
        patches = sorted({rules.legal_at_least(max(rules.min_size, round(base_patch * f)))
                          for f in (0.5, 0.75, 1.0, 1.25, 1.5)})
    scale = rules.output_scale
    rows = []
    for precision in precisions:
        try:
            session = _open_session(bundle, backend, precision, threads, (max(patches), max(patches)), 1, log)
        except SrExportError as exc:
            log(f"sweep: skipping {precision}: {exc}")
            continue
        for edge in patches:
            log(f"sweep: {precision} patch {edge}")
            inputs = patch_inputs(bundle.manifest, 1, edge, edge, noise)
            times = time_calls(lambda: session.run(inputs), 1, repeats)
            median = statistics.median(times)
            rows.append({
                "precision": precision, "patch": edge, "latency_ms": summarize_ms(times),
                "mpx_per_s": (scale * edge) ** 2 / median / 1e6,
            })
        del session
    return rows


def profile_bundle(
    bundle_path: str | Path,
    size: str | tuple[int, int] | None = None,
    precision: str = "fp32",
    backend: str = "auto",
    patch: int | tuple[int, int] | str | None = "auto",
    batch: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    *,
    overlap: int | None = None,
    e2e_repeats: int = 3,
    threads: int = 0,
    noise: float = 0.0,
    window: str = "hamming",
    workload: str | None = None,
    op_profile: bool = True,
    op_runs: int = 3,
    peak: bool = True,
    sweep: bool = False,
    sweep_patches: list[int] | None = None,
    max_call_s: float = 2.0,
    stitch: str = "auto",
    memory: float | None = None,
    log: Log | None = None,
) -> dict:
    """Profile a bundle; returns the dict documented in `srexport.profiling.schema`.

    `size`: OUTPUT image (width, height), "WxH", a preset name (720p, 1080p, 8k, pirm,
    1000) or a Titan X workload key; default: the model's paper workload. `patch` (graph
    input pixels, int or (h, w); "auto", the default, as `run`: from the memory budget
    `memory` GiB; None: the bundle's), `stitch`, `overlap`, `window` and `noise` are the
    runtime's options. `batch` fixes the batch (else the best of 1, 2, 4, 8 is searched;
    with patch auto the end-to-end run keeps `run`'s batch, 1, because the plan depends on
    it, and the search stops at the plan's tile count and the budget).
    `workload` forces the Titan X row to compare with (a key of `titanx.WORKLOADS`).
    """
    from srexport.runtime.backends.onnxruntime import physical_threads
    from srexport.runtime.tiler import plan_tiles
    from srexport.runtime.upscaler import Upscaler

    log = log or (lambda message: None)
    if repeats < 1 or warmup < 0 or e2e_repeats < 1:
        raise SrExportError("repeats and e2e_repeats must be >= 1 and warmup >= 0")
    if batch is not None and batch < 1:
        raise SrExportError(f"batch must be >= 1, got {batch}")
    rss_reset = reset_peak_rss()
    rss_before = rss_mb()
    bundle = load_bundle(bundle_path)
    m = bundle.manifest
    if m.task != "sr":
        raise SrExportError(f"bundle {bundle.root} holds a {m.task} network: profile takes super-resolution bundles")
    bundle.graph_path(precision)  # a clear error for a missing precision, before any work
    if workload is not None and m.model not in titanx.workload(workload).models:
        measured_on = "/".join(titanx.workload(workload).models)
        raise SrExportError(f"workload '{workload}' was measured on {measured_on}, not {m.model}")
    threads = threads or physical_threads()
    notes: list[str] = []

    # ---- sizes
    default = titanx.default_workload(m.model, m.variant)
    if size is None:
        requested = (default.width, default.height) if default else titanx.PRESET_SIZES["720p"]
        notes.append(f"no size given: {'the paper workload ' + default.key if default else '720p'}")
    elif isinstance(size, str):
        requested = titanx.parse_size(size)
    else:
        requested = (int(size[0]), int(size[1]))
    lr_w, lr_h = titanx.lr_size(*requested, m.scale)
    out_w, out_h = lr_w * m.scale, lr_h * m.scale
    if (out_w, out_h) != tuple(requested):
        notes.append(
            f"{requested[0]}x{requested[1]} is not a whole LR image at x{m.scale}: "
            f"profiled {lr_w}x{lr_h} LR -> {out_w}x{out_h}"
        )

    # ---- plan, then the session (TensorRT sizes its engine profile from patch and batch)
    if isinstance(patch, int):
        patch = (patch, patch)
    graph_h, graph_w = (out_h, out_w) if m.input_kind == "upscaled" else (lr_h, lr_w)
    auto = patch == "auto" and m.shape_rules.halo is not None
    if patch == "auto":
        hint = "auto" if auto else (m.patch, m.patch)  # what `srexport.load` gives the session
    else:
        expected = plan_tiles(graph_h, graph_w, patch or (m.patch, m.patch),
                              m.overlap if overlap is None else overlap, m.shape_rules)
        hint = (expected.patch_h, expected.patch_w)
    monitor = DeviceMemoryMonitor()
    with monitor:
        start = time.perf_counter()
        session = _open_session(bundle, backend, precision, threads, hint,
                                (batch or 1) if auto else (batch or max(BATCH_CANDIDATES)), log, memory)
        session_open_s = time.perf_counter() - start
        device_kind = getattr(session, "device", "cpu")
        device_label = (gpu_name() or "CUDA device") if device_kind == "cuda" else cpu_name()
        run_batch = batch or 1
        up = Upscaler(bundle, session, patch=patch, overlap=overlap, window=window, noise=noise, stitch=stitch,
                      memory=memory, batch=run_batch if patch == "auto" else 1)
        plan = up.plan(lr_h, lr_w)
        note = getattr(session, "selection_note", None)
        if note and note != "requested":
            notes.append(f"backend: {note}")
        if device_kind == "cpu" and precision == "fp16" and getattr(session, "name", "") == "onnxruntime":
            notes.append("ONNX Runtime's CPU provider runs fp16 graphs by upcasting to fp32: no speed gain")
        log(f"{m.model} {m.variant} x{m.scale} {precision} on {session.name}/{device_kind}: "
            f"{out_w}x{out_h} output, {len(plan.tiles)} tiles of {plan.patch_h}x{plan.patch_w}")

        peak_before = measure_matmul_peak(threads) if peak and device_kind == "cpu" else None

        # ---- patch latency, batch 1 and the best batch
        inputs1 = patch_inputs(m, 1, plan.patch_h, plan.patch_w, noise)
        # The first call of a shape compiles it on static-shape backends (OpenVINO): timed
        # apart from inference, as is every compile the end-to-end run causes.
        compiles_before = _compiled_models(session)
        start = time.perf_counter()
        session.run(inputs1)
        first_call_s = time.perf_counter() - start
        log("timing batch 1")
        lat1 = time_calls(lambda: session.run(inputs1), max(0, warmup - 1), repeats)
        limit = None
        if up.auto:  # no larger batch than the plan's tiles, nor one the budget does not hold
            model = up.memory_model()
            engine = getattr(session, "profile", None)  # a TensorRT engine's batch range
            limit = max([b for b in BATCH_CANDIDATES if b <= len(plan.tiles)
                         and model.patch_bytes(plan.patch_h, plan.patch_w, b) <= up.budget.bytes
                         and (engine is None or b <= engine.max_batch)] or [1])
        best, batches = _best_batch(session, m, plan, noise, warmup, repeats, batch, lat1, max_call_s, log, limit)
        if batch and batch > 1:
            best = batch  # the user's batch runs the end-to-end pass whatever it costs
        best_row = next(r for r in batches if r["batch"] == best)
        per_patch_s = best_row["per_patch_ms"]["median"] / 1e3

        # ---- end to end through the runtime
        if not up.auto:
            up.batch = best
        planes = np.random.default_rng(1).random((3, lr_h, lr_w), dtype=np.float32)
        estimate = len(plan.tiles) * per_patch_s
        log(f"timing end to end ({len(plan.tiles)} tiles, batch {best}, about {estimate:.1f} s a run)")
        start = time.perf_counter()
        up.upscale_planes(planes)  # compiles the shapes the plan needs: timed apart
        e2e_first_s = time.perf_counter() - start
        e2e = time_calls(lambda: up.upscale_planes(planes), 0, e2e_repeats)
    peak_rss = peak_rss_mb()
    compiled = _compiled_models(session)
    compile_s = max(0.0, first_call_s - statistics.median(lat1)) + max(0.0, e2e_first_s - statistics.median(e2e))
    e2e_median = statistics.median(e2e)

    # ---- FLOPs
    count = count_bundle(bundle, plan.patch_h, plan.patch_w, precision)
    patch_out_px = count.output_pixels
    macs_per_px, flops_per_px = count.per_output_pixel()
    achieved = count.flops / per_patch_s / 1e9
    executed = count.flops * len(plan.tiles)

    peak_info = None
    if device_kind == "cpu" and peak:
        after = measure_matmul_peak(threads)
        chosen = max(peak_before, after, key=lambda p: p["gflops"])
        peak_info = dict(chosen, before_gflops=peak_before["gflops"], after_gflops=after["gflops"])
        if precision != "fp32":
            notes.append(f"the CPU peak is an fp32 matmul; the {precision} graph is compared with it")
    elif device_kind == "cuda":
        peak_info = published_gpu_peak(device_label, precision)
        if peak_info is None:
            notes.append(f"no published peak known for '{device_label}'")
    if peak_info is not None:
        peak_info["fraction"] = achieved / peak_info["gflops"]

    # ---- per-operator time
    ops = None
    if op_profile:
        log("per-operator profile")
        try:
            ops = op_times(session, bundle, precision, threads, inputs1, op_runs)
            ops["patch"] = {"height": plan.patch_h, "width": plan.patch_w}
            ops["batch"] = 1
        except SrExportError as exc:
            notes.append(f"no per-operator times: {exc}")

    # ---- Titan X
    row, flags = titanx.match(
        m.model, m.variant, out_w, out_h, len(plan.tiles), (plan.patch_h, plan.patch_w),
        up.overlap, m.shape_rules, m.scale, workload,
    )

    def versus(row, flags) -> dict:
        wplan = titanx.workload_plan(row, m.shape_rules, m.scale, m.input_kind, tuple(up.patch), up.overlap)
        return titanx.compare(row, flags, measured_seconds=e2e_median, measured_plan=plan,
                              workload_plan=wplan, flops_per_px=flops_per_px)

    if row is not None:
        titan = versus(row, flags)
    else:
        titan = titanx.compare(None, {}, measured_seconds=e2e_median, measured_plan=plan, workload_plan=plan)
    titan_all = []
    for other in titanx.workloads_for(m.model, m.variant):
        _, other_flags = titanx.match(m.model, m.variant, out_w, out_h, len(plan.tiles),
                                      (plan.patch_h, plan.patch_w), up.overlap, m.shape_rules, m.scale, other.key)
        titan_all.append(versus(other, other_flags))

    sweep_rows = None
    if sweep:
        precisions = [precision] if session.name == "torch" else list(m.precisions)
        sweep_rows = _sweep(bundle, backend, threads, plan.patch_h, m.shape_rules, noise, precisions, log,
                            sweep_patches)

    graph_w, graph_h = (out_w, out_h) if m.input_kind == "upscaled" else (lr_w, lr_h)
    return {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tools": _versions(),
        "bundle": str(bundle.root),
        "model": m.model,
        "variant": m.variant,
        "scale": m.scale,
        "params": m.params,
        "precision": precision,
        "backend": session.name,
        "providers": list(getattr(session, "providers", []) or []),
        "device": {"kind": device_kind, "name": device_label, "threads": threads},
        "size": _size_dict(out_w, out_h),
        "requested_size": _size_dict(*requested),
        "input_size": _size_dict(lr_w, lr_h),
        "graph_input_size": _size_dict(graph_w, graph_h),
        "patch": {"height": plan.patch_h, "width": plan.patch_w},
        "overlap": 2 * m.shape_rules.halo if plan.owned else up.overlap,
        "window": window,
        "noise": noise,
        "tiles": len(plan.tiles),
        "stitch": "crop" if plan.owned else "blend",
        "patch_mode": "auto" if up.auto else "fixed",
        "memory_budget_gib": up.budget.gib if up.budget is not None else None,
        "batch": up.batch,
        "session_open_s": session_open_s,
        "compile_s": compile_s,
        "compiled_shapes": None if compiled is None else compiled - (compiles_before or 0),
        "latency_ms": summarize_ms(lat1),
        "best_batch": {"batch": best, "per_patch_ms": best_row["per_patch_ms"], "call_ms": best_row["call_ms"]},
        "batches": batches,
        "end_to_end_s": {k: (v / 1e3 if k != "runs" else v) for k, v in summarize_ms(e2e).items()},
        "mpx_per_s": out_w * out_h / e2e_median / 1e6,
        "patch_mpx_per_s": patch_out_px / per_patch_s / 1e6,
        "macs_per_px": macs_per_px,
        "flops_per_px": flops_per_px,
        "flops": count.to_dict(),
        "achieved_gflops": achieved,
        "achieved_gflops_end_to_end": executed / e2e_median / 1e9,
        "peak": peak_info,
        "peak_rss_mb": peak_rss,
        "rss_before_mb": rss_before,
        "peak_rss_source": "VmHWM since profiling began" if rss_reset else "process lifetime peak (ru_maxrss)",
        "peak_device_mb": monitor.result(),
        "op_times": ops,
        "titan_x": titan,
        "titan_x_all": titan_all,
        "sweep": sweep_rows,
        "notes": notes,
    }


def summary(profile: dict) -> list[str]:
    """Human-readable lines for the console (the JSON holds everything)."""
    p = profile
    lat, e2e = p["latency_ms"], p["end_to_end_s"]
    best = p["best_batch"]
    lines = [
        f"{p['model']} {p['variant']} x{p['scale']} {p['precision']} on {p['backend']} "
        f"({p['device']['kind']}: {p['device']['name']}, {p['device']['threads']} threads)",
        f"image {p['input_size']['width']}x{p['input_size']['height']} -> {p['size']['width']}x{p['size']['height']}: "
        f"{p['tiles']} tile(s) of {p['patch']['width']}x{p['patch']['height']}, "
        + (f"crop stitching (overlap {p['overlap']})" if p.get("stitch") == "crop" else f"overlap {p['overlap']}")
        + (f", patch auto (budget {p['memory_budget_gib']:.1f} GiB)" if p.get("patch_mode") == "auto" else "")
        + f", batch {p['batch']}",
        f"latency per patch: batch 1 {lat['median']:.1f} ms (p10 {lat['p10']:.1f}, p90 {lat['p90']:.1f}); "
        f"batch {best['batch']} {best['per_patch_ms']['median']:.1f} ms per patch",
        f"end to end: {e2e['median']:.3f} s (p10 {e2e['p10']:.3f}, p90 {e2e['p90']:.3f}) = {p['mpx_per_s']:.4g} Mpx/s"
        f"; compiling shapes (first calls, not in these times) {p.get('compile_s', 0.0):.2f} s"
        + (f" for {p['compiled_shapes']} compiled model(s)" if p.get("compiled_shapes") is not None else ""),
        f"cost: {p['macs_per_px']:,.0f} MAC = {p['flops_per_px'] / 1e6:.3f} MFLOP per output pixel; "
        f"achieved {p['achieved_gflops']:.1f} GFLOP/s"
        + (f" = {100 * p['peak']['fraction']:.1f}% of {p['peak']['gflops']:.0f} GFLOP/s "
           f"({p['peak']['source']} {p['peak']['kind']})" if p.get("peak") else ""),
        f"peak RSS {p['peak_rss_mb']:.0f} MB"
        + (f", peak device memory {p['peak_device_mb']:.0f} MB" if p.get("peak_device_mb") is not None else ""),
    ]
    if p.get("op_times"):
        top = ", ".join(f"{o['op_type']} {100 * o['share']:.0f}%" for o in p["op_times"]["ops"][:4])
        lines.append(f"time by op type: {top}")
    t = p["titan_x"]
    if t.get("workload"):
        paper = f"{t['seconds']} s" if t["seconds"] is not None else "no published time"
        ratio = f", ratio {t['ratio']:.3g} (>1: slower)" if t["ratio"] is not None else ""
        lines.append(
            f"Titan X ({t['workload']}: {t['description']}): paper {paper}; this device "
            f"{t['device_seconds']:.3g} s ({t['method']}){ratio}"
        )
    lines.extend(f"note: {n}" for n in p.get("notes", []))
    return lines


def write_json(profile: dict, path: str | Path) -> Path:
    """Write a profile as JSON atomically (validated against the schema first)."""
    from srexport.fsutil import atomic_path
    from srexport.profiling.schema import validate

    validate(profile)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(profile, indent=2, allow_nan=False) + "\n")
    return path


def run_profile(
    bundle_path: str | Path,
    *,
    json_path: str | Path | None = None,
    plot_path: str | Path | None = None,
    **options,
) -> dict:
    """What `sr-export profile` does: check that a plot can be drawn (before minutes of
    timing), profile (with the patch-size sweep when a plot is asked for), write the
    JSON and the PNG. `options` are `profile_bundle`'s keyword arguments."""
    from srexport.profiling.plot import _pyplot, write_plot

    if plot_path is not None:
        _pyplot()
        options.setdefault("sweep", True)
    result = profile_bundle(bundle_path, **options)
    if json_path is not None:
        write_json(result, json_path)
    if plot_path is not None:
        write_plot(result, plot_path)
    return result
