"""The runtime: plan tiles from a memory budget, run patches on a backend, stitch them (crop or blend)."""

from __future__ import annotations

import copy
import itertools
import threading
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from srexport.bundle import Bundle, load_bundle
from srexport.errors import ImageError, OptionError, ShapeError, SrExportError
from srexport import graphcheck, validation
from srexport.runtime.backends import AUTO_CANDIDATES, Session, open_session, resolve_precision
from srexport.runtime.backends.base import NoSession
from srexport.runtime.backends.options import BackendOptions
from srexport.runtime.backends.table import options_by_backend
from srexport.runtime.blend import WINDOWS, window_1d
from srexport.runtime.budget import CPU_RECOMPUTE, MemoryModel, budget_patch, default_budget, fits, memory_model
from srexport.runtime.imageio import LoadedImage, from_pil, quantize, read_image, to_pil, write_png
from srexport.runtime.noise import normal_field
from srexport.runtime.pipeline import LUMA, batches, box_windows, finish, pad_image, pre_upscale, stitcher, to_planes
from srexport.runtime import recipes
from srexport.runtime.recipes import BlockRecipe, plan_blocks, pre_upscale_8bit
from srexport.runtime.throughput import ordered_map
from srexport.runtime.tiler import (TilePlan, check_blend_patch, crop_overlap, crop_patch_ok, plan_crop,
                                    plan_tiles)

Progress = Callable[[int, int], None]
_LUMA = LUMA


STITCHES = ("auto", "crop", "blend")
IN_FLIGHT_PIXELS = 1.1  # items or tiles in flight may compute this much more than one at a time
_NO_FRAME = object()


def _frame_size(frame) -> tuple[int, int] | None:
    """(height, width) of a frame `upscale` takes (an array or a PIL image)."""
    if isinstance(frame, Image.Image):
        return frame.height, frame.width
    shape = getattr(frame, "shape", None)
    return (int(shape[0]), int(shape[1])) if shape is not None and len(shape) >= 2 else None


class Upscaler:
    """A loaded bundle ready to upscale images (see `srexport.load`).

    `patch`: (h, w) graph input pixels, "auto" (a patch the memory budget allows,
    `budget.budget_patch`; an image that fits runs whole at its own legal size) or None (the bundle's patch).
    `stitch`: "crop" (exact, for networks with a finite halo: overlap 2 * halo, each output
    pixel from the tile where it lies at least a halo inside), "blend" (window blending) or
    "auto" (crop where the halo is finite and the patch leaves room for it, unless an
    overlap is given; blend otherwise). Networks without a finite halo keep the bundle's
    (training) patch and blend. `memory`: the budget in GiB (default: see `budget.py`).
    """

    def __init__(
        self,
        bundle: Bundle,
        session: Session | None,
        patch: tuple[int, int] | str | None = None,
        overlap: int | None = None,
        window: str = "hamming",
        batch: int = 1,
        noise: float = 0.0,
        seed: int = 0,
        *,
        stitch: str = "auto",
        memory: float | None = None,
        recipe: BlockRecipe | None = None,
        frames_session: Callable[[], Session] | None = None,
    ):
        manifest = bundle.manifest
        if manifest.task != "sr":
            raise SrExportError(f"bundle {bundle.root} holds a {manifest.task} network, not a super-resolution one")
        if stitch not in STITCHES:
            raise SrExportError(f"unknown stitching '{stitch}' ({', '.join(STITCHES)})")
        rules = manifest.stitching_rules
        if stitch == "crop" and rules.halo is None:
            raise SrExportError(f"{manifest.model} has no finite receptive field (its output depends on the whole "
                                "patch): crop stitching cannot be exact; use --stitch blend")
        self.bundle = bundle
        self.session: Session = NoSession() if session is None else session  # None: a planner (tiling only)
        self.auto = patch == "auto" and rules.halo is not None
        if patch == "auto" and rules.halo is None:
            patch = None  # instance norm and the like: the training patch
        self.patch = (manifest.patch, manifest.patch) if patch is None or self.auto else tuple(patch)
        self.overlap_given = overlap is not None
        self.overlap = manifest.overlap if overlap is None else overlap
        self.stitch = stitch
        # Validate patch and overlap now, not in the middle of a folder.
        if not self.auto and stitch != "crop":
            check_blend_patch(self.patch, self.overlap, rules, bundle_overlap=not self.overlap_given)
        self.recipe = recipe  # a published block recipe replaces patch, overlap and window
        window = recipe.window if recipe is not None else window
        self.window = window
        if window not in WINDOWS:
            raise SrExportError(f"unknown window '{window}' (windows: {', '.join(WINDOWS)})")
        if batch < 1:
            raise SrExportError(f"batch must be >= 1, got {batch}")
        self.batch = batch
        self.noise = float(noise)
        self.seed = int(seed)
        self.scale = manifest.scale
        self.output_scale = rules.output_scale
        self.budget = default_budget(self.session.device, memory) if self.auto else None
        self._memory_model = None
        self._precision = self.session.precision
        self._pipelined = threading.local()  # set on the frame / folder pipelines' worker threads
        self._open_frames_session = frames_session
        self._frames: Upscaler | None = None
        self._frames_lock = threading.Lock()

    # -- lifetime ------------------------------------------------------------------------
    def close(self) -> None:
        """Close the session (its runtime objects, a GPU's buffers); the Upscaler cannot run after."""
        self.session.close()
        if self._frames is not None:
            self._frames.session.close()

    def for_frames(self) -> "Upscaler":
        """The Upscaler that runs streams of frames of one size (`upscale_frames`, video):
        this one, or, where precision auto chose another precision for them (a mixed INT8
        graph on a BF16 CPU: `precision_auto.bundle_order`), one with the same tiling on a
        session of that precision, opened on first use and closed with this one."""
        if self._open_frames_session is None:
            return self
        with self._frames_lock:
            if self._frames is None:
                frames = copy.copy(self)
                frames.session = self._open_frames_session()
                frames._precision = frames.session.precision
                frames._memory_model = None
                frames._open_frames_session = None
                frames._frames = None
                frames._frames_lock = threading.Lock()
                self._frames = frames
            return self._frames

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- throughput ---------------------------------------------------------------------
    @property
    def concurrency(self) -> int:
        """Items (frames, images, tiles) the session runs at once (its stream plan)."""
        return max(1, int(self.session.concurrency))

    def streams_note(self, items_in_flight: int | None = None, items: int | None = None) -> str:
        """The run line's streams part (`items_in_flight`: what `items_in_flight` chose for
        the run's `items`, when it knows them)."""
        plan = self.session.stream_plan
        note = f"throughput: {plan.note()}" if plan is not None else "throughput: 1 stream"
        if items_in_flight is None or items_in_flight >= self.concurrency:
            return note
        if items is not None and items_in_flight >= items:
            return note + ("; one image: every thread on it" if items == 1 else f"; {items} images: one per stream")
        return note + (f"; {items_in_flight} item at a time here (the memory budget shared by {self.concurrency} "
                       "would tile them more)")

    @property
    def patches_in_flight(self) -> int:
        """Patches in memory at once: the batch, or one per stream (what the budget plans for)."""
        return self.batch if self.batch > 1 else self.concurrency

    def _stream_run(self):
        """The session call for one of several items in flight."""
        return self.session.run_concurrent if self.concurrency > 1 else self.session.run

    def in_flight(self, items, work, depth: int | None = None, workers: int | None = None):
        """`work(item)` for each item, in order, `workers` (default `concurrency`) at once
        (reading ahead on a reader thread, up to `depth` items); each worker runs its item's
        patches on one stream. With one worker each item is upscaled by itself (every
        thread; its tiles in flight where `alone_plan` says so)."""
        workers = self.concurrency if workers is None else workers
        if workers == 1:
            return ordered_map(items, work, 1, depth)

        def flagged(item):
            self._pipelined.on = True
            return work(item)

        return ordered_map(items, flagged, workers, depth)

    def items_in_flight(self, sizes: Iterable[tuple[int, int] | None]) -> int:
        """How many of these items, of (height, width) sizes (LR; None: unknown), to keep in
        flight: `concurrency`, at most one per item (a lone image gets every thread), unless
        the budget that many items share makes them compute more than IN_FLIGHT_PIXELS times
        the pixels of one item at a time with the whole budget (a tight --memory: PCARN-M-L1
        x4 on CSet14 under 0.1 GiB, ONNX Runtime on 2 threads, took 23.6 s two at a time
        against 3.8 s one at a time); then 1."""
        if self.concurrency == 1:
            return 1  # the sizes (a folder's headers) are not even read
        sizes = list(sizes)
        workers = min(self.concurrency, len(sizes)) if sizes else self.concurrency
        if workers == 1 or self.batch > 1 or not self.auto or self.session.device != "cpu":
            return workers
        shared = alone = 0
        for size, count in Counter(s for s in sizes if s is not None).items():
            height, width = self.graph_size(*size)
            shared += count * self.graph_plan(height, width).computed_pixels
            alone += count * self.graph_plan(height, width, in_flight=1).computed_pixels
        return workers if shared <= IN_FLIGHT_PIXELS * alone else 1

    # -- planning ---------------------------------------------------------------------
    def crops(self, patch: tuple[int, int], height: int | None = None, width: int | None = None) -> bool:
        """Whether tiles of this patch are crop-stitched (on an image of this size, when given:
        a patch covering an axis needs no overlap along it)."""
        if self.stitch == "blend":
            return False
        if self.stitch == "crop":
            return True
        if self.overlap_given:
            return False
        rules = self.bundle.manifest.stitching_rules
        if height is None or width is None:
            return crop_patch_ok(patch, rules)
        return rules.halo is not None and all(
            rules.legal_at_least(p) >= rules.legal_at_least(length) or crop_patch_ok((p, p), rules)
            for p, length in zip(patch, (height, width)))

    def memory_model(self) -> MemoryModel:
        if self._memory_model is None:
            self._memory_model = memory_model(self.bundle, self._precision, self.session.name or None)
        return self._memory_model

    def _auto_patch(self, height: int, width: int, crop: bool, in_flight: int) -> tuple[int, int] | None:
        """The budget's patch for this image (None: it runs whole); crop-stitched tiles are at
        least 2 * halo + 1 wide and overlap by 2 * halo."""
        rules = self.bundle.manifest.stitching_rules
        # Blended tiles step by at least the overlap (each pixel computed at most about 4x):
        # a smaller patch would not fit a tight budget anyway (at 0.1 GiB, G-MGBP's 49 px
        # patches fit no better than 96 px ones) and would compute each pixel hundreds of times.
        floor = 2 * rules.halo + 1 if crop else max(rules.min_size, self.overlap + 1, 2 * self.overlap)
        return budget_patch(self.memory_model(), self.budget.bytes, rules, height, width, in_flight,
                            not crop, floor, 2 * rules.halo if crop else self.overlap,
                            self.session.max_patch_edge, CPU_RECOMPUTE if self.session.device == "cpu" else None)

    def graph_plan(self, height: int, width: int, in_flight: int | None = None) -> TilePlan:
        """The tiling of an image of (height, width) graph input pixels, with the budget shared
        by `in_flight` patches (default `patches_in_flight`)."""
        rules = self.bundle.manifest.stitching_rules
        if self.recipe is not None:
            return plan_blocks(height, width, self.recipe, rules)
        in_flight = self.patches_in_flight if in_flight is None else in_flight
        patch = self.patch
        if self.auto:
            crop = self.stitch != "blend"
            chosen = self._auto_patch(height, width, crop, in_flight)
            if crop and self.stitch == "auto" and chosen is not None and not fits(
                    self.memory_model(), self.budget.bytes, rules, height, width, chosen, in_flight, False):
                # a halo too wide for the budget (MGBP track 3: 1,159 px): blend tiles rather than exceed it
                chosen = self._auto_patch(height, width, False, in_flight)
            patch = (rules.legal_at_least(height), rules.legal_at_least(width)) if chosen is None else chosen
        if self.crops(patch, height, width):
            return plan_crop(height, width, patch, rules)
        return plan_tiles(height, width, patch, self.overlap, rules)

    def alone_plan(self, height: int, width: int) -> tuple[TilePlan, bool]:
        """The tiling of an image upscaled by itself (not one of a folder's or a stream's
        items in flight), and whether its tiles run in flight on the streams.

        In flight, the streams share the budget, so their tiles are smaller; that pays only
        while they compute at most IN_FLIGHT_PIXELS times the pixels of one tile at a time
        on the whole budget (PCARN-M-L1 x4, ONNX Runtime, 2 one-thread sessions against one
        two-thread session, 2-core AMX Xeon: an 8K output 20.1 s in 9 tiles against 21.2 s
        in 4, for 1.06x the pixels; a 147x96 image under 0.5 GiB 0.131 s in 2 tiles against
        0.098 s whole, under 0.1 GiB 1.36 s in 120 tiles against 0.23 s in 8)."""
        shared = self.graph_plan(height, width)
        if self.concurrency == 1 or self.batch > 1 or len(shared.tiles) == 1 or self.session.device != "cpu":
            return shared, False  # a GPU session's streams hold their buffers whether or not tiles are in flight
        if not self.auto:
            return shared, True
        alone = self.graph_plan(height, width, in_flight=1)
        if shared.computed_pixels <= IN_FLIGHT_PIXELS * alone.computed_pixels:
            return shared, True
        return alone, False

    def graph_size(self, height: int, width: int) -> tuple[int, int]:
        """The graph input size of an LR image of this size (after the bicubic pre-upscale
        for networks that take upscaled input: BPP, MGBPv2)."""
        if self.bundle.manifest.input_kind == "upscaled":
            return height * self.scale, width * self.scale
        return height, width

    def plan(self, height: int, width: int) -> TilePlan:
        """The tiling of an LR image of this size upscaled by itself, in the graph's input pixels."""
        return self.alone_plan(*self.graph_size(height, width))[0]

    def tiling_note(self) -> str:
        """The run line's tiling part."""
        if self.recipe is not None:
            r = self.recipe
            return f"recipe {r.name}: blocks {r.block}x{r.block}, {r.skip} px apart, window {r.window}, batch {self.batch}"
        if self.auto:
            how = "crop stitching" if self.stitch != "blend" else f"overlap {self.overlap}, window {self.window}"
            return (f"patch auto (memory budget {self.budget.gib:.1f} GiB, {self.budget.source}; images that fit "
                    f"run whole), {how}, batch {self.batch}")
        ph, pw = self.patch
        if self.crops(self.patch):
            return f"patch {ph}x{pw}, crop stitching (overlap {crop_overlap(self.bundle.manifest.stitching_rules)}), batch {self.batch}"
        return f"patch {ph}x{pw}, overlap {self.overlap}, window {self.window}, batch {self.batch}"

    # -- arrays -----------------------------------------------------------------
    def upscale_planes(self, planes: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """3xHxW float32 RGB in [0, 1] -> 3x(sH)x(sW) float32, unclamped."""
        if self.recipe is not None:
            planes = pre_upscale_8bit(planes, self.scale)
        else:
            planes = pre_upscale(planes, self.bundle.manifest.input_kind, self.scale)
        pipelined = getattr(self._pipelined, "on", False)
        if pipelined:
            plan, tiles_in_flight = self.graph_plan(*planes.shape[1:]), False
        else:
            plan, tiles_in_flight = self.alone_plan(*planes.shape[1:])
        padded = pad_image(planes, plan)
        s = self.output_scale
        gpu = self._device_blender_for(plan)
        target = None if gpu else stitcher(plan, s, self.window)
        total = len(plan.tiles)
        run = self.session.run
        stream = self.concurrency > 1 and self.batch == 1 and not gpu
        if stream and pipelined:
            run = self._stream_run()  # this image is one of several in flight: one stream
        elif stream and tiles_in_flight:
            # a tiled image: its tiles in flight on the streams, stitched here in order
            run = self._stream_run()
            repeating = self.session.repeating_here()  # the frame stream's scope, on the tile threads too

            def infer(job):
                first, tiles, patches = job
                inputs = {"image": patches}
                inputs.update(self.noise_batch(plan, tiles))
                with self.session.repeating_shapes(on=repeating):
                    return first, run(inputs)

            for first, outputs in ordered_map(batches(padded, plan, self.batch), infer, self.concurrency):
                for index, out in enumerate(outputs, first):
                    target.add(out, index)
                if progress:
                    progress(min(first + self.batch, total), total)
            return target.result()
        for first, tiles, patches in batches(padded, plan, self.batch):
            inputs = {"image": patches}
            inputs.update(self.noise_batch(plan, tiles))
            if gpu and plan.owned:  # crop stitching on the GPU: one box weight per tile
                batch = self.session.run_to_device(inputs)
                step = int(np.prod(batch.shape[1:])) * np.dtype(batch.dtype).itemsize
                for k, (t, l) in enumerate(tiles):
                    gpu.add_batch(batch.pointer + k * step, [(s * t, s * l)], dtype=batch.dtype,
                                  window=box_windows(plan, first + k, s))
            elif gpu:
                batch = self.session.run_to_device(inputs)
                gpu.add_batch(batch.pointer, [(s * t, s * l) for t, l in tiles], dtype=batch.dtype)
            else:
                for index, out in enumerate(run(inputs), first):
                    target.add(out, index)
            if progress:
                progress(min(first + self.batch, total), total)
        if gpu:
            return gpu.download(s * plan.before_h, s * plan.before_w, s * plan.height, s * plan.width,
                                dtype=np.float32).transpose(2, 0, 1)
        return target.result()

    def _device_blender_for(self, plan: TilePlan):
        s = self.output_scale
        pad_h, pad_w = plan.padded_size
        return self._device_blender(s * pad_h, s * pad_w, s * plan.patch_h, s * plan.patch_w)

    def _device_blender(self, height: int, width: int, patch_h: int, patch_w: int):
        """The GPU blender when the session keeps outputs on a GPU (TensorRT), else None."""
        return self.session.device_blender(3, height, width, window_1d(self.window, patch_h), window_1d(self.window, patch_w))

    def noise_batch(self, plan: TilePlan, tiles) -> dict[str, np.ndarray]:
        """Crops of the whole-image noise fields (image coordinates) for these tiles."""
        if self.noise != 0.0 and self.session.zero_noise_graph:
            raise OptionError(f"this Upscaler was loaded with noise 0, so it runs the W = 0 graph; load the bundle "
                              f"with noise={self.noise:g} instead")
        fields = {}
        for index, spec in enumerate(self.bundle.manifest.noise_inputs):
            shape = spec.shape(len(tiles), plan.patch_h, plan.patch_w)
            if spec.kind == "amplitude":
                fields[spec.name] = np.full(shape, self.noise, np.float32)
                continue
            if self.noise == 0.0:
                fields[spec.name] = np.zeros(shape, np.float32)
                continue
            f, b = spec.factor, spec.border
            fields[spec.name] = np.stack([
                np.stack([
                    normal_field(self.seed, 16 * index + c, f * (top - plan.before_h - b),
                                 f * (left - plan.before_w - b), shape[2], shape[3])
                    for c in range(spec.channels)
                ])
                for top, left in tiles
            ]) * np.float32(self.noise)
        return fields

    def upscale_loaded(self, image: LoadedImage, progress: Progress | None = None) -> LoadedImage:
        validation.check_output_fits(image.pixels.shape[0], image.pixels.shape[1], self.scale)
        return finish(self.upscale_planes(to_planes(image), progress), image)

    # -- user-facing kinds -------------------------------------------------------
    def upscale(self, image: np.ndarray | Image.Image, progress: Progress | None = None) -> np.ndarray | Image.Image:
        """Upscale a PIL image or an HxW / HxWxC (C = 1, 3, 4) uint8, uint16 or float32
        array; returns the same kind (float32 output is not clamped)."""
        if isinstance(image, Image.Image):
            result = self.upscale_loaded(from_pil(image), progress)
            if result.bits == 16:
                return Image.fromarray(quantize(result.pixels[..., 0], 16))
            return to_pil(result.pixels, result.alpha)
        return self._upscale_array(np.asarray(image), progress)

    def _upscale_array(self, array: np.ndarray, progress: Progress | None) -> np.ndarray:
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
            raise ImageError(f"expected an HxW or HxWxC array with C in (1, 3, 4), got shape {array.shape}")
        peaks = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.float32): 1.0}
        if array.dtype not in peaks:
            raise ImageError(f"unsupported array dtype {array.dtype} (uint8, uint16 or float32)")
        validation.check_array(array, self.scale)
        peak = peaks[array.dtype]
        pixels = array.astype(np.float32) / peak
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        alpha = pixels[..., 3] if pixels.shape[2] == 4 else None
        color = pixels[..., :3]
        loaded = LoadedImage(color, alpha, 8, gray=color.shape[2] == 1)
        out = self.upscale_loaded(loaded, progress)
        result = out.pixels if out.alpha is None else np.concatenate([out.pixels, out.alpha[..., None]], axis=2)
        result = result[..., 0] if array.ndim == 2 else result
        if array.dtype == np.float32:
            return result.astype(np.float32, copy=False)
        return quantize(result, 8 if array.dtype == np.uint8 else 16)

    def upscale_file(self, src: str | Path, dst: str | Path, progress: Progress | None = None) -> Path:
        """Read `src`, upscale it, write a PNG to `dst` (16-bit when the input was)."""
        validation.refuse_overwriting_inputs([src], [dst])
        image = read_image(src)
        out = self.upscale_loaded(image, progress)
        write_png(dst, out.pixels, out.alpha, out.bits)
        return Path(dst)

    def upscale_frames(self, frames, *, static_noise: bool = False, depth: int = 2):
        """Upscale each frame (whatever `upscale` takes) and yield the results in order.

        Frames are pulled from `frames` on a reader thread and `concurrency` of them are upscaled
        at once on worker threads (pre-upscaling, tiling and stitching there too, each frame's
        patches on one stream) while the caller handles earlier results; at most
        max(depth, 2 * concurrency) frames are read ahead. Frame k's noise seed is
        `srexport.video.seeds.frame_seed(seed, k)` unless `static_noise`. The outputs are those
        of `upscale` called on each frame in turn (to float rounding: on OpenVINO the frames'
        size compiles static, `Session.repeating_shapes`, so each new size costs a compile;
        for images of many sizes, a folder run or `upscale` one at a time compile once). They
        run on `for_frames()`, whose precision can differ from `upscale`'s under precision auto."""
        from srexport.video.seeds import upscale_frame

        upscaler = self.for_frames()

        def work(item):
            index, frame = item
            return upscale_frame(upscaler, index, frame, static_noise)

        def stream():
            source = iter(frames)
            first = next(source, _NO_FRAME)
            if first is _NO_FRAME:
                return
            workers = upscaler.items_in_flight([_frame_size(first)])  # frames of a stream share its size
            yield from upscaler.in_flight(enumerate(itertools.chain([first], source)), work,
                                          max(depth, 2 * workers), workers)

        return stream()

    def upscale_video(self, src: str | Path, dst: str | Path, progress=None, **options):
        """Upscale a video file into `dst`, other streams copied (options: srexport.video.VideoOptions)."""
        from srexport.video.job import upscale_video
        from srexport.video.options import FrameRange, VideoOptions

        if isinstance(options.get("frames"), str):
            options["frames"] = FrameRange.parse(options["frames"])
        return upscale_video(self, src, dst, VideoOptions(**options), progress)


def load(
    bundle: str | Path,
    backend: str = "auto",
    precision: str = "auto",
    *,
    patch: int | tuple[int, int] | str | None = "auto",
    overlap: int | None = None,
    window: str = "hamming",
    batch: int = 1,
    noise: float = 0.0,
    seed: int = 0,
    threads: int = 0,
    stitch: str = "auto",
    memory: float | None = None,
    recipe: str | None = None,
    backend_options: BackendOptions | Iterable[BackendOptions] | None = None,
) -> Upscaler:
    """Open a bundle for upscaling: `srexport.load("bundles/pcarn-m-x4").upscale(img)`, or
    `with srexport.load(...) as up:` to close the session at the end.

    `patch="auto"` (the default) sizes patches from the memory budget `memory` (GiB);
    see `Upscaler` for `stitch`. `recipe` names a published block recipe (srexport.runtime.recipes,
    e.g. "aim2019"), which then sets the blocks, their corners, the window and the pre-upscale.
    `backend_options`: the backend's options (`srexport.runtime.backends.options`: `OrtOptions`,
    `OpenVINOOptions`, `TensorRTOptions`, `TorchOptions`); for backend "auto", one per backend it may pick."""
    validation.check_load(bundle, backend, precision, patch=patch, overlap=overlap, window=window, batch=batch,
                          noise=noise, seed=seed, threads=threads, memory=memory)
    options_by_backend(backend, backend_options, AUTO_CANDIDATES if backend == "auto" else (backend,))
    loaded = load_bundle(bundle)
    blocks = recipes.resolve(recipe, loaded.manifest) if recipe is not None else None
    if blocks is not None:
        patch = (blocks.block, blocks.block)
    if isinstance(patch, int):
        patch = (patch, patch)
    if patch == "auto" and loaded.manifest.shape_rules.halo is not None:
        hint = "auto"  # TensorRT: an engine profile covering every patch the budget allows
    else:
        hint = patch if patch is not None and patch != "auto" else loaded.manifest.patch
    graphcheck.check_structure(loaded, resolve_precision(loaded, backend, precision).precision)
    session = open_session(loaded, backend, precision, threads, patch=hint, batch=batch, memory=memory,
                           backend_options=backend_options, zero_noise=noise == 0.0)
    try:
        graphcheck.check_scale(loaded, session.precision, session.run)
        frames = resolve_precision(loaded, backend, precision, repeating=True)
        frames_session = None
        if frames.precision != session.precision:
            def frames_session() -> Session:  # checked and opened when the first frame comes, not for images
                graphcheck.check_graph(loaded, frames.precision)  # on ONNX Runtime: a compile here would be wasted
                return open_session(loaded, backend, frames.precision, threads, patch=hint, batch=batch, memory=memory,
                                    backend_options=backend_options, precision_reason=frames.reason,
                                    zero_noise=noise == 0.0)

        return Upscaler(loaded, session, patch, overlap, window, batch, noise, seed, stitch=stitch, memory=memory,
                        recipe=blocks, frames_session=frames_session)
    except BaseException:
        session.close()
        raise
