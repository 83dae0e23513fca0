"""`sr-export profile`: measure a bundle on this machine and compare it with the papers.

`profile_bundle(bundle_path, size=...)` returns one JSON-ready dict (schema and field
meanings: `srexport.profiling.schema`): `measure(bundle_path, ProfileRequest(size=...))`'s
typed `Profile` (`records.py`) as JSON. What it does, in order:

1. Opens the bundle's graph of `precision` on `backend` exactly as `srexport.load` does
   ("auto", the default, resolved as `run` resolves it for images, the reason in `notes`)
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
import json
import os
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from srexport.bundle import Bundle, load_bundle
from srexport.errors import SrExportError
from srexport.profiling import titanx
from srexport.profiling.flops import count_bundle
from srexport.profiling.peak import cpu_name, cuda_runtime, gpu_name, measure_cpu_peak, published_gpu_peak
from srexport.profiling.records import (
    BatchTiming, Cost, Identity, Log, Memory, Profile, ProfileRequest, Size, Sizes, Stats, SweepRow, Tiling, Timings,
)
from srexport.runtime.backends import resolve_precision

SCHEMA_VERSION = 1
BATCH_CANDIDATES = (1, 2, 4, 8)


# ----------------------------------------------------------------------------- timing
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
                lat1: list[float], max_call_s: float, log: Log,
                limit: int | None = None) -> tuple[int, list[BatchTiming]]:
    """Time larger batches (up to `limit`) while the time per patch improves; returns the
    best batch and one row per batch timed (batch 1 included)."""
    rows = [BatchTiming(1, Stats.of(lat1, 1e3), Stats.of(lat1, 1e3))]
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
        rows.append(BatchTiming(b, Stats.of(per_patch, 1e3), Stats.of(times, 1e3)))
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
    """`open_session` with the tiler's patch and batch (TensorRT sizes its engine profile from them)."""
    from srexport.runtime.backends import open_session

    return open_session(bundle, backend, precision, threads, patch=patch, batch=batch, log=log, memory=memory)


def _sweep(bundle, backend: str, threads: int, base_patch: int, rules, noise: float, precisions, log: Log,
           patches: tuple[int, ...] | None = None, repeats: int = 3) -> list[SweepRow]:
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
            rows.append(SweepRow(precision, edge, Stats.of(times, 1e3), (scale * edge) ** 2 / median / 1e6))
        del session
    return rows


def profile_bundle(bundle_path: str | Path, *, log: Log | None = None, **options) -> dict:
    """Profile a bundle; returns the dict documented in `srexport.profiling.schema`
    (`measure(bundle_path, ProfileRequest(**options), log).to_json()`).

    `size`: OUTPUT image (width, height), "WxH", a preset name (720p, 1080p, 8k, pirm,
    1000) or a Titan X workload key; default: the model's paper workload. `patch` (graph
    input pixels, int or (h, w); "auto", the default, as `run`: from the memory budget
    `memory` GiB; None: the bundle's), `stitch`, `overlap`, `window` and `noise` are the
    runtime's options. `batch` fixes the batch (else the best of 1, 2, 4, 8 is searched;
    with patch auto the end-to-end run keeps `run`'s batch, 1, because the plan depends on
    it, and the search stops at the plan's tile count and the budget).
    `workload` forces the Titan X row to compare with (a key of `titanx.WORKLOADS`).
    The other options (`ProfileRequest`'s fields): precision, backend, repeats, warmup,
    e2e_repeats, threads, op_profile, op_runs, peak, sweep, sweep_patches, max_call_s.
    """
    return measure(bundle_path, ProfileRequest(**options), log).to_json()


def measure(bundle_path: str | Path, request: ProfileRequest, log: Log | None = None) -> Profile:
    """The profile of `request` on the bundle at `bundle_path` (the steps: this module's docstring)."""
    from srexport.runtime.backends.onnxruntime import physical_threads

    log = log or (lambda message: None)
    rss_reset = reset_peak_rss()
    rss_before = rss_mb()
    notes: list[str] = []
    bundle, request = _load(bundle_path, request, notes)
    threads = request.threads or physical_threads()
    sizes = _sizes(bundle.manifest, request.size, notes)
    monitor = DeviceMemoryMonitor()
    with monitor:
        run = _open(bundle, request, sizes, threads, notes, log)
        peak_before = (measure_cpu_peak(request.precision, run.session.name, threads)
                       if request.peak and run.device_kind == "cpu" else None)
        patches = _time_patches(run, request, log)
        e2e_first_s, e2e = _time_end_to_end(run, sizes, patches, request.e2e_repeats, log)
    memory = Memory(peak_rss_mb(), rss_before, rss_reset, monitor.result())
    timings = _timings(run, patches, e2e_first_s, e2e)
    cost = _cost(run, sizes, timings, request, threads, peak_before, notes)
    ops = _op_profile(run, request, threads, patches.inputs1, notes, log) if request.op_profile else None
    titan, titan_all = _titan_x(run, sizes, cost.flops_per_px, timings.end_to_end_s.median, request.workload)
    sweep = None
    if request.sweep:
        precisions = [request.precision] if run.session.name == "torch" else list(bundle.manifest.precisions)
        sweep = _sweep(bundle, request.backend, threads, run.plan.patch_h, bundle.manifest.shape_rules,
                       request.noise, precisions, log, request.sweep_patches)
    return Profile(
        schema_version=SCHEMA_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        tools=_versions(), identity=_identity(run, request.precision, threads), sizes=sizes,
        tiling=_tiling(run, request), timings=timings, cost=cost, memory=memory, op_times=ops, titan_x=titan,
        titan_x_all=titan_all, sweep=sweep, notes=notes,
    )


def _load(bundle_path: str | Path, request: ProfileRequest, notes: list[str]) -> tuple[Bundle, ProfileRequest]:
    """The bundle, refused before any work when it cannot give the profile asked for, and the
    request with precision "auto" resolved (its reason noted)."""
    bundle = load_bundle(bundle_path)
    m = bundle.manifest
    if m.task != "sr":
        raise SrExportError(f"bundle {bundle.root} holds a {m.task} network: profile takes super-resolution bundles")
    if request.precision == "auto":
        choice = resolve_precision(bundle, request.backend, "auto")
        request = replace(request, precision=choice.precision)
        notes.append(choice.reason)
    bundle.graph_path(request.precision)  # a clear error for a missing precision
    if request.workload is not None and m.model not in titanx.workload(request.workload).models:
        measured_on = "/".join(titanx.workload(request.workload).models)
        raise SrExportError(f"workload '{request.workload}' was measured on {measured_on}, not {m.model}")
    return bundle, request


def _sizes(m, size: str | tuple[int, int] | None, notes: list[str]) -> Sizes:
    """The image profiled: the size asked for (default: the paper workload), rounded to a
    whole LR image."""
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
    graph = Size(out_w, out_h) if m.input_kind == "upscaled" else Size(lr_w, lr_h)
    return Sizes(Size(out_w, out_h), Size(*requested), Size(lr_w, lr_h), graph)


@dataclass
class _Run:
    """The session and the runtime profiled, and the plan of the image."""

    bundle: object
    session: object
    up: object  # Upscaler
    plan: object  # TilePlan
    open_s: float
    device_kind: str
    device_label: str


def _session_hint(m, sizes: Sizes, request: ProfileRequest) -> tuple[tuple[int, int] | str, int]:
    """The patch and batch `srexport.load` would give the session (TensorRT sizes its
    engine profile from them, OpenVINO its streams)."""
    from srexport.runtime.tiler import plan_tiles

    patch, batch = request.patch, request.batch
    auto = patch == "auto" and m.shape_rules.halo is not None
    if patch == "auto":
        hint = "auto" if auto else (m.patch, m.patch)
    else:
        expected = plan_tiles(sizes.graph_input.height, sizes.graph_input.width, patch or (m.patch, m.patch),
                              m.overlap if request.overlap is None else request.overlap, m.shape_rules)
        hint = (expected.patch_h, expected.patch_w)
    return hint, (batch or 1) if auto else (batch or max(BATCH_CANDIDATES))


def _open(bundle, request: ProfileRequest, sizes: Sizes, threads: int, notes: list[str], log: Log) -> _Run:
    """Open the session (timed) and the runtime over it, and plan the image's tiles."""
    from srexport.runtime.upscaler import Upscaler

    m = bundle.manifest
    hint, hint_batch = _session_hint(m, sizes, request)
    start = time.perf_counter()
    session = _open_session(bundle, request.backend, request.precision, threads, hint, hint_batch, log,
                            request.memory)
    open_s = time.perf_counter() - start
    device_kind = session.device
    device_label = (gpu_name() or "CUDA device") if device_kind == "cuda" else cpu_name()
    up = Upscaler(bundle, session, patch=request.patch, overlap=request.overlap, window=request.window,
                  noise=request.noise, stitch=request.stitch, memory=request.memory,
                  batch=(request.batch or 1) if request.patch == "auto" else 1)
    plan = up.plan(sizes.lr.height, sizes.lr.width)
    note = session.selection_note
    if note and note != "requested":
        notes.append(f"backend: {note}")
    if device_kind == "cpu" and request.precision == "fp16" and session.name == "onnxruntime":
        notes.append("ONNX Runtime's CPU provider runs fp16 graphs by upcasting to fp32: no speed gain")
    log(f"{m.model} {m.variant} x{m.scale} {request.precision} on {session.name}/{device_kind}: "
        f"{sizes.output.width}x{sizes.output.height} output, {len(plan.tiles)} tiles of {plan.patch_h}x{plan.patch_w}")
    return _Run(bundle, session, up, plan, open_s, device_kind, device_label)


@dataclass
class _PatchTimes:
    """Patch latency at batch 1 and the best batch."""

    inputs1: dict  # the batch-1 patch (the per-operator profile runs it again)
    compiles_before: int | None
    first_call_s: float
    lat1: list[float]
    best: int
    batches: list[BatchTiming]

    @property
    def best_row(self) -> BatchTiming:
        return next(r for r in self.batches if r.batch == self.best)


def _time_patches(run: _Run, request: ProfileRequest, log: Log) -> _PatchTimes:
    m, session, plan = run.bundle.manifest, run.session, run.plan
    inputs1 = patch_inputs(m, 1, plan.patch_h, plan.patch_w, request.noise)
    # The first call of a shape compiles it on static-shape backends (OpenVINO): timed
    # apart from inference, as is every compile the end-to-end run causes.
    compiles_before = _compiled_models(session)
    start = time.perf_counter()
    session.run(inputs1)
    first_call_s = time.perf_counter() - start
    log("timing batch 1")
    lat1 = time_calls(lambda: session.run(inputs1), max(0, request.warmup - 1), request.repeats)
    best, batches = _best_batch(session, m, plan, request.noise, request.warmup, request.repeats, request.batch,
                                lat1, request.max_call_s, log, _batch_limit(run))
    if request.batch and request.batch > 1:
        best = request.batch  # the user's batch runs the end-to-end pass whatever it costs
    return _PatchTimes(inputs1, compiles_before, first_call_s, lat1, best, batches)


def _batch_limit(run: _Run) -> int | None:
    """With patch auto: no larger batch than the plan's tiles, nor one the budget does not hold."""
    up, plan = run.up, run.plan
    if not up.auto:
        return None
    model = up.memory_model()
    engine = getattr(run.session, "profile", None)  # a TensorRT engine's batch range
    return max([b for b in BATCH_CANDIDATES if b <= len(plan.tiles)
                and model.patch_bytes(plan.patch_h, plan.patch_w, b) <= up.budget.bytes
                and (engine is None or b <= engine.max_batch)] or [1])


def _time_end_to_end(run: _Run, sizes: Sizes, patches: _PatchTimes, repeats: int,
                     log: Log) -> tuple[float, list[float]]:
    """The first whole-image run (it compiles the shapes the plan needs: timed apart) and
    `repeats` timed ones, through the real runtime."""
    up, plan = run.up, run.plan
    if not up.auto:
        up.batch = patches.best
    planes = np.random.default_rng(1).random((3, sizes.lr.height, sizes.lr.width), dtype=np.float32)
    estimate = len(plan.tiles) * patches.best_row.per_patch_ms.median / 1e3
    log(f"timing end to end ({len(plan.tiles)} tiles, batch {patches.best}, about {estimate:.1f} s a run)")
    start = time.perf_counter()
    up.upscale_planes(planes)
    first_s = time.perf_counter() - start
    return first_s, time_calls(lambda: up.upscale_planes(planes), 0, repeats)


def _timings(run: _Run, patches: _PatchTimes, e2e_first_s: float, e2e: list[float]) -> Timings:
    compiled = _compiled_models(run.session)
    compile_s = (max(0.0, patches.first_call_s - statistics.median(patches.lat1))
                 + max(0.0, e2e_first_s - statistics.median(e2e)))
    return Timings(
        session_open_s=run.open_s, compile_s=compile_s,
        compiled_shapes=None if compiled is None else compiled - (patches.compiles_before or 0),
        latency_ms=Stats.of(patches.lat1, 1e3), best=patches.best_row, batches=patches.batches,
        end_to_end_s=Stats.of(e2e, 1e3).divided(1e3),
    )


def _cost(run: _Run, sizes: Sizes, timings: Timings, request: ProfileRequest, threads: int,
          peak_before: dict | None, notes: list[str]) -> Cost:
    """FLOPs on the exported graph at the patch size, the FLOP/s achieved and the peak's share."""
    plan = run.plan
    per_patch_s = timings.best.per_patch_ms.median / 1e3
    e2e_median = timings.end_to_end_s.median
    count = count_bundle(run.bundle, plan.patch_h, plan.patch_w, request.precision)
    macs_per_px, flops_per_px = count.per_output_pixel()
    achieved = count.flops / per_patch_s / 1e9
    peak_info = _peak(run, request, threads, peak_before, notes)
    if peak_info is not None:
        peak_info["fraction"] = achieved / peak_info["gflops"]
    return Cost(
        mpx_per_s=sizes.output.width * sizes.output.height / e2e_median / 1e6,
        patch_mpx_per_s=count.output_pixels / per_patch_s / 1e6,
        macs_per_px=macs_per_px, flops_per_px=flops_per_px, flops=count.to_dict(), achieved_gflops=achieved,
        achieved_gflops_end_to_end=count.flops * len(plan.tiles) / e2e_median / 1e9, peak=peak_info,
    )


def _peak(run: _Run, request: ProfileRequest, threads: int, peak_before: dict | None,
          notes: list[str]) -> dict | None:
    """The CPU's matmul peak in the graph's precision (`peak.measure_cpu_peak`; the better of
    before and after the model timings) or the GPU's published one."""
    if run.device_kind == "cpu" and request.peak:
        after = measure_cpu_peak(request.precision, run.session.name, threads)
        chosen = max(peak_before, after, key=lambda p: p["gflops"])
        if request.precision != "fp32" and chosen["kind"].startswith("fp32"):
            notes.append(f"the CPU peak is an fp32 matmul; the {request.precision} graph on {run.session.name} "
                         f"is compared with it")
        return dict(chosen, before_gflops=peak_before["gflops"], after_gflops=after["gflops"])
    if run.device_kind == "cuda":
        published = published_gpu_peak(run.device_label, request.precision)
        if published is None:
            notes.append(f"no published peak known for '{run.device_label}'")
        return published
    return None


def _op_profile(run: _Run, request: ProfileRequest, threads: int, inputs1: dict, notes: list[str],
                log: Log) -> dict | None:
    """Per-operator time of the batch-1 patch, or None (with a note) where no profiler fits."""
    log("per-operator profile")
    try:
        ops = op_times(run.session, run.bundle, request.precision, threads, inputs1, request.op_runs)
    except SrExportError as exc:
        notes.append(f"no per-operator times: {exc}")
        return None
    ops["patch"] = {"height": run.plan.patch_h, "width": run.plan.patch_w}
    ops["batch"] = 1
    return ops


def _titan_x(run: _Run, sizes: Sizes, flops_per_px: float, e2e_median: float,
             workload: str | None) -> tuple[dict, list[dict]]:
    """The papers' Titan X row matching this run, and every row of this model."""
    m, plan, up = run.bundle.manifest, run.plan, run.up
    out = sizes.output

    def match(key: str | None):
        return titanx.match(m.model, m.variant, out.width, out.height, len(plan.tiles),
                            (plan.patch_h, plan.patch_w), up.overlap, m.shape_rules, m.scale, key)

    def versus(row, flags) -> dict:
        wplan = titanx.workload_plan(row, m.shape_rules, m.scale, m.input_kind, tuple(up.patch), up.overlap)
        return titanx.compare(row, flags, measured_seconds=e2e_median, measured_plan=plan,
                              workload_plan=wplan, flops_per_px=flops_per_px)

    row, flags = match(workload)
    if row is not None:
        titan = versus(row, flags)
    else:
        titan = titanx.compare(None, {}, measured_seconds=e2e_median, measured_plan=plan, workload_plan=plan)
    every = [versus(other, match(other.key)[1]) for other in titanx.workloads_for(m.model, m.variant)]
    return titan, every


def _identity(run: _Run, precision: str, threads: int) -> Identity:
    m, session = run.bundle.manifest, run.session
    return Identity(
        bundle=str(run.bundle.root), model=m.model, variant=m.variant, scale=m.scale, params=m.params,
        precision=precision, backend=session.name, providers=list(session.providers),
        device_kind=run.device_kind, device_name=run.device_label, threads=threads,
    )


def _tiling(run: _Run, request: ProfileRequest) -> Tiling:
    m, plan, up = run.bundle.manifest, run.plan, run.up
    return Tiling(
        patch=Size(plan.patch_w, plan.patch_h), overlap=2 * m.stitching_rules.halo if plan.owned else up.overlap,
        window=request.window, noise=request.noise, tiles=len(plan.tiles),
        stitch="crop" if plan.owned else "blend", patch_mode="auto" if up.auto else "fixed",
        memory_budget_gib=up.budget.gib if up.budget is not None else None, batch=up.batch,
    )


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
