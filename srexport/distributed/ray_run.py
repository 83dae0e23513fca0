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
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from srexport.bundle import load_bundle
from srexport.errors import ImageError, SrExportError
from srexport.lazy import import_ray
from srexport.runtime.backends import BACKENDS, resolve_precision
from srexport.runtime.pipeline import batches, finish, pad_image, pre_upscale, stitcher, to_planes
from srexport.runtime.runner import Stop, clean_stale_parts, describe, interrupted, output_paths, stop_on_signals
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
class _Job:
    """What every task and actor needs: plain, small, picklable."""

    bundle: str
    backend: str
    precision: str
    options: dict  # `srexport.load` keyword arguments

    def planner(self) -> Upscaler:
        """A session-less Upscaler: tiling rules and noise settings only."""
        opts = {k: v for k, v in self.options.items() if k != "threads"}
        patch = opts.pop("patch", "auto")
        return Upscaler(load_bundle(self.bundle, verify_hashes=False), None, patch, **opts)


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
            self.upscaler = load(job.bundle, job.backend, job.precision, **job.options)
            self.note = describe(self.upscaler)
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
    precision: str = "fp32",
    quiet: bool = False,
    console=None,
    report_error: Callable[[str], None] = print,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    **upscaler_options,
) -> RayRunReport:
    """`run_images_ray` returning the full report (timings included)."""
    unknown = set(upscaler_options) - set(_UPSCALER_OPTIONS)
    if unknown:
        raise TypeError(f"unknown upscaler option(s): {', '.join(sorted(unknown))}")
    if not inputs:
        raise SrExportError("no input images found")
    if cpus_per_worker <= 0:
        raise SrExportError(f"cpus per Ray worker must be positive, got {cpus_per_worker}")
    if workers is not None and workers < 1:
        raise SrExportError(f"--ray-workers must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise SrExportError(f"unknown backend '{backend}' (backends: {', '.join(BACKENDS)})")
    output = Path(output)
    targets = output_paths([Path(p) for p in inputs], output)
    clean_stale_parts(targets)
    ray = import_ray()
    options = {k: v for k, v in upscaler_options.items() if v is not None}
    if isinstance(options.get("patch"), int):
        options["patch"] = (options["patch"], options["patch"])
    bundle_path = str(Path(bundle).resolve())
    loaded = load_bundle(bundle_path)  # a missing or damaged bundle
    # "auto" is resolved once, on the driver, so that every worker runs the same graph.
    precision = resolve_precision(loaded, backend, precision).precision
    loaded.graph_path(precision)  # a missing precision
    job = _Job(bundle_path, backend, precision, options)
    job.planner()  # and a bad patch, overlap, window or batch

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            start_local_ray()
        started = True
    try:
        workers, gpus_per_worker = _cluster_plan(ray, workers, cpus_per_worker, gpus_per_worker)
        if not options.get("threads") and not gpus_per_worker:
            job = _Job(bundle_path, backend, precision, {**options, "threads": max(1, int(cpus_per_worker))})
        written = _Written()
        try:
            # After ray.init, which installs handlers of its own in the driver.
            with stop_on_signals(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # Ray Data's notices about its own fields
                return _execute(ray, job, [str(Path(p).resolve()) for p in inputs], targets, workers,
                                cpus_per_worker, gpus_per_worker, quiet, console, report_error, written)
        except (Stop, KeyboardInterrupt) as stop:
            raise interrupted(stop, written.images, targets, output) from None
    finally:
        if started:
            ray.shutdown()


@dataclass
class _Written:
    """Images written so far (for the line of an interrupted run)."""

    images: int = 0


def _execute(ray, job: _Job, paths: list[str], targets: list[Path], workers: int, cpus_per_worker: float,
             gpus_per_worker: float, quiet: bool, console, report_error, written: _Written) -> RayRunReport:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

    context = DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.target_max_block_size, context.enable_progress_bars,
             context.wait_for_min_actors_s)
    data_logger = logging.getLogger("ray.data")
    saved_level = data_logger.level
    context.execution_options.preserve_order = True  # rows come back in (image, batch) order
    context.target_max_block_size = 1  # one row per block: patch batches spread over all actors
    context.enable_progress_bars = False  # ours below counts images and patches
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S  # all workers up before work is dealt out
    data_logger.setLevel(logging.ERROR)

    images: dict[int, _Image] = {}
    finished: set[int] = set()
    failures = written_px = patch_total = 0
    note = ""
    done_at: list[float] = []
    by_worker: dict[int, int] = {}
    first_result = None
    start = time.perf_counter()
    try:
        ds = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)],
                                 override_num_blocks=len(paths))
        ds = ds.flat_map(_split_image, fn_kwargs={"job": job}, num_cpus=0,
                         compute=TaskPoolStrategy(size=max(1, min(workers, 4))))
        # max_restarts=0: an actor that dies fails its rows with an error line (restarting one
        # whose constructor arguments live in the object store is unsafe, and Ray says so on stderr).
        ds = ds.map(_PatchWorker, fn_constructor_kwargs={"job": job}, compute=ActorPoolStrategy(size=workers),
                    num_cpus=cpus_per_worker, num_gpus=gpus_per_worker or None, max_restarts=0)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=quiet, transient=False,
        ) as progress:
            image_bar = progress.add_task("images", total=len(paths))
            patch_bar = progress.add_task("  patches", total=0)

            def fail(index: int, message: str) -> None:
                nonlocal failures
                failures += 1
                finished.add(index)
                images.pop(index, None)
                report_error(message)
                progress.advance(image_bar)

            try:
                for row in ds.iter_rows():
                    if first_result is None:
                        first_result = time.perf_counter() - start
                    if row["fatal"]:
                        raise SrExportError(row["error"])
                    index = int(row["index"])
                    if index in finished:
                        continue
                    if row["error"]:
                        fail(index, row["error"])
                        continue
                    state = images.setdefault(index, _Image())
                    if row["seq"] < 0:
                        meta = json.loads(row["meta"])
                        state.open(meta, row["alpha"])
                        patch_total += meta["patches"]
                        progress.update(patch_bar, total=patch_total)
                        if row["note"] and not note:
                            note = row["note"]
                            if not quiet and console is not None:
                                console.print(f"ray: {workers} workers; {note}", highlight=False, markup=False)
                    else:
                        state.waiting[int(row["seq"])] = (row["tiles"], row["data"])
                        by_worker[int(row["worker"])] = by_worker.get(int(row["worker"]), 0) + 1
                    progress.advance(patch_bar, state.drain())
                    if state.complete:
                        try:
                            written_px += state.write(targets[index])
                            written.images += 1
                            done_at.append(time.perf_counter() - start)
                            finished.add(index)
                            images.pop(index, None)
                            progress.advance(image_bar)
                        except ImageError as exc:
                            fail(index, str(exc))
            except ray.exceptions.GetTimeoutError:
                raise SrExportError(f"{workers} Ray workers did not start within {ACTOR_START_TIMEOUT_S} s: the "
                                    f"cluster lacks the CPUs/GPUs they ask for, or cannot import sr-export") from None
            except Exception as exc:
                cause = _root_cause_error(exc)
                if cause is not None and cause is not exc:
                    raise cause from None
                raise
            for index in sorted(set(range(len(paths))) - finished):  # never silently lose an image
                fail(index, f"{paths[index]}: the Ray pipeline returned no result for this image")
    finally:
        (context.execution_options.preserve_order, context.target_max_block_size,
         context.enable_progress_bars, context.wait_for_min_actors_s) = saved
        data_logger.setLevel(saved_level)
    return RayRunReport(len(paths), failures, written_px, workers, time.perf_counter() - start, first_result,
                        note, done_at, by_worker)


def run_images_ray(
    bundle: str | Path,
    inputs: list[Path],
    output: Path,
    address: str | None = None,
    workers: int | None = None,
    backend: str = "auto",
    precision: str = "fp32",
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
    outputs as `srexport.runtime.runner.run_images`, bit for bit.
    """
    return ray_upscale(bundle, inputs, output, address=address, workers=workers, backend=backend,
                       precision=precision, quiet=quiet, console=console, report_error=report_error,
                       **upscaler_options).failures
