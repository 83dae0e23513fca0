"""`sr-export run --ray`: many images and many GPUs through Ray Data, with the same pixels
as the single-process runtime.

One streamed Ray Data pipeline:

    from_items([{index, path}])            one row per input image
      -> flat_map(_split_image)            Ray tasks (0 CPU): read with srexport's reader, pad,
                                           plan the tiles; emit a header row, then one row per
                                           patch batch (exactly the batches that
                                           `Upscaler.upscale_planes` runs, in its order)
      -> map(_PatchWorker)                 an actor pool: each actor holds one loaded bundle
                                           (one per GPU with num_gpus=1, or CPU actors) and
                                           runs a batch plus its noise crops
      -> iter_rows() on the driver         per image: stitch the batches (crop or blend) in
                                           plan order, normalise, write the PNG atomically

Why the outputs are bit-identical to `run_images`: a batch holds the same patches (same
reader, same reflect padding, same tile plan), the same noise crops (noise fields are a
function of the seed and image coordinates, see `runtime/noise.py`) and the same batch
composition; the driver adds the results into the float32 canvas in the order
`upscale_planes` does (rows are put back in (image, batch) order before blending, whatever
order they arrive in), and float32 accumulation in the same order gives the same canvas.
The test compares the written PNGs byte for byte.

Each row is its own Ray Data block (`target_max_block_size = 1`), so the actor pool
receives single patch batches: one 8K frame is spread over every worker, not only whole
images. Arrays travel as .npy bytes (no pickle) so that header and batch rows share one
schema. Inputs and the bundle must be readable at the same path on every node (shared
storage); outputs are written by the driver.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from srexport.bundle import load_bundle
from srexport.errors import ImageError, SrExportError
from srexport.lazy import import_ray
from srexport.runtime.backends import BACKENDS, resolve_precision
from srexport.runtime.pipeline import batches, finish, pad_image, pre_upscale, stitcher, to_planes
from srexport.runtime.folder_run import (Outputs, Stop, clean_stale_parts, describe, interrupted, output_paths,
                                        stop_on_signals)
from srexport.runtime.tiler import TilePlan
from srexport.runtime.upscaler import Upscaler, load

_UPSCALER_OPTIONS = ("patch", "overlap", "window", "batch", "noise", "seed", "threads", "stitch", "memory")
# Ray resolves "localhost" to the machine's routable address and listens on every
# interface; with this switch off, a cluster started here binds to 127.0.0.1 only.
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
ACTOR_START_TIMEOUT_S = 600


def start_local_ray(num_cpus: int | None = None, num_gpus: int | None = None):
    """Start a private Ray instance on this machine, reachable on the loopback interface only."""
    ray = import_ray()
    from ray._private import ray_constants

    previous_env, previous_flag = os.environ.get(_LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ENV] = "0"  # inherited by the GCS, the raylet and the workers
    ray_constants.ENABLE_RAY_CLUSTER = False  # read by this process when it picks its address
    try:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 logging_level=logging.ERROR)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous_flag
        if previous_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = previous_env
    return ray


# -- rows ---------------------------------------------------------------------------------
def _pack(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _unpack(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def _row(index: int, seq: int, *, error: str = "", meta: dict | None = None, tiles: bytes = b"",
         data: bytes = b"", alpha: bytes = b"") -> dict:
    """Every row has the same columns (Ray Data concatenates them into Arrow blocks).
    seq -1 is an image's header; 0.. are its patch batches."""
    return {"index": index, "seq": seq, "fatal": False, "error": error, "meta": json.dumps(meta or {}),
            "note": "", "worker": 0, "tiles": tiles, "data": data, "alpha": alpha}


def _message(path: str, exc: BaseException) -> str:
    """One line naming the image (srexport's own errors already do)."""
    text = str(exc) if isinstance(exc, SrExportError) else f"{type(exc).__name__}: {exc}"
    return text if path in text else f"{path}: {text}"


@dataclass(frozen=True)
class LoadOptions:
    """The `srexport.load` keyword arguments a Ray run passes to every worker (None: load's default)."""

    patch: tuple[int, int] | str | None = None
    overlap: int | None = None
    window: str | None = None
    batch: int | None = None
    noise: float | None = None
    seed: int | None = None
    threads: int | None = None
    stitch: str | None = None
    memory: float | None = None

    @classmethod
    def from_keywords(cls, options: dict) -> "LoadOptions":
        """From `run_images_ray`'s extra keywords (None: not given); an unknown one is a
        TypeError, as in a call."""
        unknown = set(options) - set(_UPSCALER_OPTIONS)
        if unknown:
            raise TypeError(f"unknown upscaler option(s): {', '.join(sorted(unknown))}")
        options = {k: v for k, v in options.items() if v is not None}
        patch = options.get("patch")
        if isinstance(patch, int):
            options = {**options, "patch": (patch, patch)}
        return cls(**options)

    def keywords(self) -> dict:
        """The options given, as `srexport.load` keyword arguments."""
        return {name: getattr(self, name) for name in _UPSCALER_OPTIONS if getattr(self, name) is not None}


@dataclass(frozen=True)
class _Job:
    """What every task and actor needs: plain, small, picklable."""

    bundle: str
    backend: str
    precision: str
    options: LoadOptions
    precision_reason: str = ""  # the driver's "precision auto: ..." where it resolved "auto"

    def planner(self) -> Upscaler:
        """A session-less Upscaler: tiling rules and noise settings only."""
        opts = self.options.keywords()
        opts.pop("threads", None)
        patch = opts.pop("patch", "auto")
        return Upscaler(load_bundle(self.bundle, verify_hashes=False), None, patch, **opts)

    def load(self) -> Upscaler:
        """The worker's Upscaler: the bundle loaded on the job's backend and precision."""
        return load(self.bundle, self.backend, self.precision, **self.options.keywords())

    def describe(self, upscaler: Upscaler) -> str:
        """A worker's run line: its backend and tiling, and why the driver chose the precision."""
        line = describe(upscaler)
        return f"{line}; {self.precision_reason}" if self.precision_reason else line

    def sized(self, cpus_per_worker: float, gpus_per_worker: float) -> "_Job":
        """CPU workers run as many threads as the CPUs each holds, unless threads were given."""
        if self.options.threads or gpus_per_worker:
            return self
        return replace(self, options=replace(self.options, threads=max(1, int(cpus_per_worker))))


def check_request(workers: int | None, cpus_per_worker: float, backend: str) -> None:
    """The checks of a Ray run's own options, before Ray is imported."""
    if workers is not None and workers < 1:
        raise SrExportError(f"--ray-workers must be >= 1, got {workers}")
    if cpus_per_worker <= 0:
        raise SrExportError(f"cpus per Ray worker must be positive, got {cpus_per_worker}")
    if backend not in BACKENDS:
        raise SrExportError(f"unknown backend '{backend}' (backends: {', '.join(BACKENDS)})")


def driver_job(bundle: str | Path, backend: str, precision: str, options: LoadOptions, *,
               repeating: bool = False) -> _Job:
    """The job every worker runs, checked on the driver: a missing or damaged bundle, a missing
    precision and a bad patch, overlap, window or batch fail here, before any cluster starts.
    `repeating`: the job runs frames of one size (video), which precision auto chooses for as
    `Upscaler.for_frames` does, so a Ray video runs the graph the single-process one runs."""
    bundle_path = str(Path(bundle).resolve())
    loaded = load_bundle(bundle_path)
    # "auto" is resolved once, on the driver, so that every worker runs the same graph.
    choice = resolve_precision(loaded, backend, precision, repeating)
    loaded.graph_path(choice.precision)
    job = _Job(bundle_path, backend, choice.precision, options, choice.reason if precision == "auto" else "")
    job.planner()
    return job


@contextmanager
def ray_session(address: str | None) -> Iterator:
    """Ray for one run: the instance this process already has, else a connection to the
    cluster at `address`, else a private local one; shut down afterwards if started here."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        start_local_ray()
    try:
        yield ray
    finally:
        ray.shutdown()


# -- stage 1: read and split (Ray tasks) --------------------------------------------------
def _split_image(row: dict, job: _Job):
    """Header row, then the patch batches of one image, exactly as `upscale_planes` forms them."""
    from srexport.runtime.imageio import read_image
    from srexport.runtime.resize import bicubic

    index, path = int(row["index"]), str(row["path"])
    try:
        upscaler = job.planner()
        manifest = upscaler.bundle.manifest
        image = read_image(path)
        planes = pre_upscale(to_planes(image), manifest.input_kind, upscaler.scale)
        plan = upscaler.graph_plan(*planes.shape[1:])
        height, width = planes.shape[1:]
        padded = pad_image(planes, plan)
        s = upscaler.output_scale
        alpha = b""
        if image.alpha is not None:
            alpha = _pack(np.clip(bicubic(image.alpha[None], s * height, s * width)[0], 0.0, 1.0))
    except Exception as exc:  # one image's failure must not stop the others
        yield _row(index, -1, error=_message(path, exc))
        return
    batch = upscaler.batch
    shape = {"height": plan.height, "width": plan.width, "patch_h": plan.patch_h, "patch_w": plan.patch_w,
             "extra_h": plan.extra_h, "extra_w": plan.extra_w, "before_h": plan.before_h, "before_w": plan.before_w}
    meta = {
        "path": path, "height": height, "width": width, "bits": image.bits, "gray": image.gray,
        "output_scale": s, "window": upscaler.window, "batch": batch,
        "batches": -(-len(plan.tiles) // batch), "patches": len(plan.tiles), "plan": shape,
        "tiles": [list(t) for t in plan.tiles], "owned": [list(o) for o in plan.owned],
    }
    yield _row(index, -1, meta=meta, alpha=alpha)
    small = {"path": path, "plan": shape}
    for seq, (_first, tiles, patches) in enumerate(batches(padded, plan, batch)):
        try:
            packed = _pack(np.asarray(tiles, np.int64)), _pack(patches)
        except Exception as exc:
            yield _row(index, seq, error=_message(path, exc))
            return
        yield _row(index, seq, meta=small, tiles=packed[0], data=packed[1])


# -- stage 2: inference (Ray actors, one loaded bundle each) ------------------------------
class _PatchWorker:
    """Holds one loaded bundle (session) and runs patch batches with their noise crops."""

    def __init__(self, job: _Job):
        self.failure = ""
        try:
            self.upscaler = job.load()
            self.note = job.describe(self.upscaler)
        except Exception as exc:  # reported once by the driver, as one line
            self.upscaler, self.note = None, ""
            self.failure = _message(job.bundle, exc)

    def __call__(self, row: dict) -> dict:
        if self.failure:
            row.update(fatal=True, error=f"a Ray worker could not open the bundle: {self.failure}", data=b"")
            return row
        if row["error"]:
            return row
        if row["seq"] < 0:
            row["note"] = self.note
            return row
        meta = json.loads(row["meta"])
        try:
            tiles = [tuple(int(v) for v in t) for t in _unpack(row["tiles"])]
            plan = TilePlan(**meta["plan"], tiles=tuple(tiles))
            inputs = {"image": _unpack(row["data"])}
            # The single-process runtime's own noise crops (a function of seed and coordinates).
            inputs.update(self.upscaler.noise_batch(plan, tiles))
            row["data"] = _pack(self.upscaler.session.run(inputs))
            row["worker"] = os.getpid()
        except Exception as exc:
            row.update(error=_message(meta.get("path", "?"), exc), data=b"")
        return row


# -- stage 3: blending and writing (driver) -----------------------------------------------
@dataclass
class _Image:
    """One image being blended: its header, and batches waiting for their turn."""

    header: dict | None = None
    alpha: np.ndarray | None = None
    target: object = None  # the pipeline's stitcher (crop or blend)
    next_seq: int = 0
    waiting: dict = field(default_factory=dict)  # seq -> (tiles bytes, outputs bytes)

    def open(self, meta: dict, alpha: bytes) -> None:
        self.header = meta
        self.alpha = _unpack(alpha) if alpha else None
        plan = TilePlan(**meta["plan"], tiles=tuple(tuple(t) for t in meta["tiles"]),
                        owned=tuple(tuple(o) for o in meta["owned"]))
        self.target = stitcher(plan, meta["output_scale"], meta["window"])

    def drain(self) -> int:
        """Blend every batch whose turn has come; returns how many patches were added."""
        added = 0
        if self.header is None:
            return added
        while self.next_seq in self.waiting:
            _tiles, data = self.waiting.pop(self.next_seq)
            outputs = _unpack(data)
            first = self.next_seq * self.header["batch"]
            for index, out in enumerate(outputs, first):  # the order of upscale_planes
                self.target.add(out, index)
            added += len(outputs)
            self.next_seq += 1
        return added

    @property
    def complete(self) -> bool:
        return self.header is not None and self.next_seq == self.header["batches"]

    def write(self, dst: Path) -> int:
        """Normalise as `upscale_loaded` does and write the PNG; returns output pixels."""
        from srexport.runtime.imageio import LoadedImage, write_png

        meta = self.header
        planes = self.target.result()
        shell = LoadedImage(np.empty((0, 0, 1), np.float32), None, meta["bits"], meta["gray"])
        done = finish(planes, shell)
        write_png(dst, done.pixels, self.alpha, meta["bits"])
        return planes.shape[1] * planes.shape[2]


@dataclass
class RayRunReport:
    """What a Ray run did, for the CLI and the benchmark."""

    images: int
    failures: int
    output_px: int
    workers: int
    wall_s: float
    first_result_s: float | None  # until the first row came back: cluster and actor start-up
    note: str = ""
    done_at_s: list[float] = field(default_factory=list)  # when each written image finished
    batches_by_worker: dict[int, int] = field(default_factory=dict)  # worker process id -> batches run

    @property
    def steady_s(self) -> float | None:
        """Seconds from the first result to the last written image (start-up excluded)."""
        if self.first_result_s is None or not self.done_at_s:
            return None
        return max(self.done_at_s) - self.first_result_s


def _cluster_plan(ray, workers: int | None, cpus_per_worker: float, gpus_per_worker: float | None):
    resources = ray.cluster_resources()
    cpus, gpus = float(resources.get("CPU", 0)), float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    if workers is None:
        workers = max(1, int(gpus // gpus_per_worker) if gpus_per_worker else int(cpus // cpus_per_worker))
    if workers * cpus_per_worker > cpus + 1e-9:
        raise SrExportError(f"{workers} Ray workers need {workers * cpus_per_worker:g} CPUs; the cluster has "
                            f"{cpus:g} (use fewer --ray-workers)")
    if workers * gpus_per_worker > gpus + 1e-9:
        raise SrExportError(f"{workers} Ray workers need {workers * gpus_per_worker:g} GPUs; the cluster has "
                            f"{gpus:g} (use fewer --ray-workers)")
    return workers, gpus_per_worker


def _root_cause_error(exc: BaseException) -> SrExportError | None:
    """The sr-export error inside a Ray exception chain, if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, SrExportError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def ray_upscale(
    bundle: str | Path,
    inputs: list[Path],
    output: Path,
    *,
    address: str | None = None,
    workers: int | None = None,
    backend: str = "auto",
    precision: str = "auto",
    quiet: bool = False,
    console=None,
    report_error: Callable[[str], None] = print,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    **upscaler_options,
) -> RayRunReport:
    """`run_images_ray` returning the full report (timings included)."""
    load_options = LoadOptions.from_keywords(upscaler_options)
    if not inputs:
        raise SrExportError("no input images found")
    check_request(workers, cpus_per_worker, backend)
    output = Path(output)
    targets = output_paths([Path(p) for p in inputs], output)
    clean_stale_parts(targets)
    outputs = Outputs(targets)
    import_ray()
    job = driver_job(bundle, backend, precision, load_options)
    with ray_session(address) as ray:
        workers, gpus_per_worker = _cluster_plan(ray, workers, cpus_per_worker, gpus_per_worker)
        job = job.sized(cpus_per_worker, gpus_per_worker)
        sink = _Sink(targets, report_error)
        try:
            # After ray.init, which installs handlers of its own in the driver.
            with stop_on_signals(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Ray Data's notices about its own fields
                return _execute(ray, job, [str(Path(p).resolve()) for p in inputs], sink, workers,
                                cpus_per_worker, gpus_per_worker, quiet, console)
        except (Stop, KeyboardInterrupt) as stop:
            raise interrupted(stop, outputs, output) from None


@contextmanager
def _data_context() -> Iterator:
    """Ray Data set up for one run (its settings and log level restored afterwards)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.target_max_block_size, context.enable_progress_bars,
             context.wait_for_min_actors_s)
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    context.execution_options.preserve_order = True  # rows come back in (image, batch) order
    context.target_max_block_size = 1  # one row per block: patch batches spread over all actors
    context.enable_progress_bars = False  # ours counts images and patches
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S  # all workers up before work is dealt out
    data_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        (context.execution_options.preserve_order, context.target_max_block_size,
         context.enable_progress_bars, context.wait_for_min_actors_s) = saved
        data_logger.setLevel(saved_level)


def _pipeline(ray, job: _Job, paths: list[str], workers: int, cpus_per_worker: float, gpus_per_worker: float):
    """The streamed dataset: split every image into patch batches, run them on the actor pool."""
    from ray.data import ActorPoolStrategy, TaskPoolStrategy

    ds = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)], override_num_blocks=len(paths))
    ds = ds.flat_map(_split_image, fn_kwargs={"job": job}, num_cpus=0,
                     compute=TaskPoolStrategy(size=max(1, min(workers, 4))))
    # max_restarts=0: an actor that dies fails its rows with an error line (restarting one
    # whose constructor arguments live in the object store is unsafe, and Ray says so on stderr).
    return ds.map(_PatchWorker, fn_constructor_kwargs={"job": job}, compute=ActorPoolStrategy(size=workers),
                  num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None, max_restarts=0)


class _Sink:
    """The driver's side of the rows: blends each image's batches in order, writes the
    finished images, reports each failed one in one line, and counts what it did."""

    def __init__(self, targets: list[Path], report_error: Callable[[str], None]):
        self.targets, self.report_error = targets, report_error
        self.images: dict[int, _Image] = {}
        self.finished: set[int] = set()
        self.failures = self.written_px = 0
        self.note = ""
        self.done_at: list[float] = []
        self.by_worker: dict[int, int] = {}
        self.patches = 0
        self.progress = self.image_bar = self.patch_bar = None
        self.start = time.perf_counter()

    def show(self, progress) -> None:
        """Count images and patches on a rich `Progress`, and time from now on."""
        self.start = time.perf_counter()
        self.progress = progress
        self.image_bar = progress.add_task("images", total=len(self.targets))
        self.patch_bar = progress.add_task("  patches", total=0)

    def fail(self, index: int, message: str) -> None:
        self.failures += 1
        self.finished.add(index)
        self.images.pop(index, None)
        self.report_error(message)
        self.progress.advance(self.image_bar)

    def take(self, row: dict) -> str:
        """One row from the pipeline; returns the workers' note when this row brings the first."""
        if row["fatal"]:
            raise SrExportError(row["error"])
        index = int(row["index"])
        if index in self.finished:
            return ""
        if row["error"]:
            self.fail(index, row["error"])
            return ""
        state = self.images.setdefault(index, _Image())
        first_note = ""
        if row["seq"] < 0:
            meta = json.loads(row["meta"])
            state.open(meta, row["alpha"])
            self.patches += meta["patches"]
            self.progress.update(self.patch_bar, total=self.patches)
            if row["note"] and not self.note:
                self.note = first_note = row["note"]
        else:
            state.waiting[int(row["seq"])] = (row["tiles"], row["data"])
            worker = int(row["worker"])
            self.by_worker[worker] = self.by_worker.get(worker, 0) + 1
        self.progress.advance(self.patch_bar, state.drain())
        if state.complete:
            self._write(index, state)
        return first_note

    def _write(self, index: int, state: _Image) -> None:
        try:
            self.written_px += state.write(self.targets[index])
        except ImageError as exc:
            self.fail(index, str(exc))
            return
        self.done_at.append(time.perf_counter() - self.start)
        self.finished.add(index)
        self.images.pop(index, None)
        self.progress.advance(self.image_bar)

    def missing(self, paths: list[str]) -> None:
        """Fail every image the pipeline gave no result for: never silently lose one."""
        for index in sorted(set(range(len(paths))) - self.finished):
            self.fail(index, f"{paths[index]}: the Ray pipeline returned no result for this image")


# Ray Data's iterator threads (2.60: "iter_threaded", "map_tp_*", "StreamingExecutor-*").
# They end on their own once the iterator is closed, but may still be inside a ray.get.
_DATA_THREAD_PREFIXES = ("iter_threaded", "map_tp_", "StreamingExecutor")
_DATA_THREAD_JOIN_S = 5.0


def _join_data_threads(before: set[threading.Thread]) -> None:
    """Waits (bounded) for the Ray Data iterator threads started since `before` to end, so
    that none touches the core worker after ray.shutdown(): one that does ends the process
    with exit status 1. Other iterators' threads in the process are left alone."""
    deadline = time.monotonic() + _DATA_THREAD_JOIN_S
    for thread in set(threading.enumerate()) - before:  # the calling thread is in `before`
        if thread.name.startswith(_DATA_THREAD_PREFIXES):
            thread.join(max(0.0, deadline - time.monotonic()))


def _execute(ray, job: _Job, paths: list[str], sink: _Sink, workers: int, cpus_per_worker: float,
             gpus_per_worker: float, quiet: bool, console) -> RayRunReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    first_result = None
    with _data_context(), Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=quiet, transient=False,
    ) as progress:
        sink.show(progress)
        start = sink.start
        ds = _pipeline(ray, job, paths, workers, cpus_per_worker, gpus_per_worker)
        threads_before = set(threading.enumerate())
        rows = iter(ds.iter_rows())
        try:
            for row in rows:
                if first_result is None:
                    first_result = time.perf_counter() - start
                note = sink.take(row)
                if note and not quiet and console is not None:
                    console.print(f"ray: {workers} workers; {note}", highlight=False, markup=False)
        except ray.exceptions.GetTimeoutError:
            raise SrExportError(f"{workers} Ray workers did not start within {ACTOR_START_TIMEOUT_S} s: the "
                                f"cluster lacks the CPUs/GPUs they ask for, or cannot import sr-export") from None
        except Exception as exc:
            cause = _root_cause_error(exc)
            if cause is not None and cause is not exc:
                raise cause from None
            raise
        finally:
            # Stops Ray Data's executor and prefetch threads now: left to the garbage
            # collector, they can touch the core worker after ray.shutdown(), which kills
            # the process (a signal raised here keeps this frame alive in its traceback).
            rows.close()
            _join_data_threads(threads_before)
        sink.missing(paths)
    return RayRunReport(len(paths), sink.failures, sink.written_px, workers, time.perf_counter() - start,
                        first_result, sink.note, sink.done_at, sink.by_worker)


def run_images_ray(
    bundle: str | Path,
    inputs: list[Path],
    output: Path,
    address: str | None = None,
    workers: int | None = None,
    backend: str = "auto",
    precision: str = "auto",
    quiet: bool = False,
    report_error: Callable[[str], None] = print,
    console=None,
    **upscaler_options,
) -> int:
    """Upscale every input on a Ray cluster; return how many failed (each reported in one line).

    `address`: an existing cluster ("auto", "ray://head:10001", "10.0.0.5:6379"); None starts
    a private local one (loopback only) unless Ray is already initialised in this process.
    `workers`: actors holding the bundle (default: one per GPU, else one per CPU).
    `cpus_per_worker` / `gpus_per_worker` (keywords) size the actors. The other keywords
    are `srexport.load`'s (patch, overlap, window, batch, noise, seed, threads). Same
    outputs as `srexport.runtime.folder_run.run_images`, bit for bit.
    """
    return ray_upscale(bundle, inputs, output, address=address, workers=workers, backend=backend,
                       precision=precision, quiet=quiet, console=console, report_error=report_error,
                       **upscaler_options).failures
