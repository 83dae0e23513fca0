"""Folder in, folder out: what `sr-export run` does, with progress and per-file errors."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from srexport.errors import ImageError, Interrupted, SrExportError
from srexport.runtime.imageio import LoadedImage, image_size, read_image, write_png
from srexport.runtime.upscaler import load
from srexport.validation import refuse_overwriting_inputs


def output_paths(inputs: list[Path], output: Path) -> list[Path]:
    """One input with an image suffix on `output` writes that file; otherwise `output`
    is a folder receiving <stem>.png for each input."""
    if len(inputs) == 1 and output.suffix.lower() == ".png":
        refuse_overwriting_inputs(inputs, [output])
        return [output]
    if output.suffix and not output.is_dir():
        raise SrExportError(f"output {output} must be a folder (several inputs) or a .png file (one input)")
    stems = [p.stem for p in inputs]
    duplicates = {s for s in stems if stems.count(s) > 1}
    if duplicates:
        raise SrExportError(f"several inputs would write the same output name: {sorted(duplicates)[0]}.png")
    targets = [output / f"{stem}.png" for stem in stems]
    refuse_overwriting_inputs(inputs, targets)
    return targets


def clean_stale_parts(targets: list[Path]) -> None:
    """Remove temporaries a killed run left beside these outputs (.<name>.*.part)."""
    for target in targets:
        for stale in target.parent.glob(f".{target.name}.*.part") if target.parent.is_dir() else ():
            try:
                if stale.is_file() and not stale.is_symlink():
                    stale.unlink()
            except OSError:
                pass


class Outputs:
    """Which file each target held when a run started, so that a stopped run reports what
    it wrote from the disk itself: a signal can land after a write's atomic rename and
    before any counter moves. Each write renames a new file (a new inode) over its target."""

    def __init__(self, targets: list[Path]):
        self.targets = targets
        self._before = {target: _inode(target) for target in targets}

    def written(self) -> int:
        """Targets that now hold a file this run wrote."""
        return sum(1 for target in self.targets if _inode(target) not in (None, self._before[target]))


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except OSError:
        return None


_SIGNALS = {getattr(signal, name): name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}


class Stop(BaseException):
    """Raised from a signal handler; unwinds through every `finally` (temporaries go)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise `Stop` in the main thread, once; later ones
    are ignored while the run cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Stop(signum)

    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def describe(upscaler, items_in_flight: int | None = None, items: int | None = None) -> str:
    """One line: which backend, providers and tiling the run uses (and how many items it
    keeps in flight, where that is fewer than the streams)."""
    session = upscaler.session
    providers = session.providers
    where = f" ({', '.join(providers)})" if providers else ""
    note = session.selection_note
    return (f"backend {session.name}{where}{f' - {note}' if note else ''}; {upscaler.tiling_note()}; "
            f"{upscaler.streams_note(items_in_flight, items)}")


def run_images(
    bundle: Path,
    inputs: list[Path],
    output: Path,
    *,
    quiet: bool = False,
    console: Console | None = None,
    report_error: Callable[[str], None] = print,
    backend: str = "auto",
    precision: str = "auto",
    **options,
) -> int:
    """Upscale every input; return how many failed (each reported in one line)."""
    if not inputs:
        raise SrExportError("no input images found")
    targets = output_paths(inputs, output)
    clean_stale_parts(targets)
    outputs = Outputs(targets)
    try:
        with stop_on_signals():
            upscaler = load(bundle, backend, precision, **options)
            workers = upscaler.items_in_flight(image_size(src) for src in inputs)
            if not quiet and console is not None:
                console.print(describe(upscaler, workers, len(inputs)), highlight=False, markup=False, soft_wrap=True)
            failures = 0
            with Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=console, disable=quiet, transient=False,
            ) as progress:
                images = progress.add_task("images", total=len(inputs))
                patches = progress.add_task("patches", total=None)

                def on_patch(done: int, total: int) -> None:
                    progress.update(patches, completed=done, total=total)

                for src, dst, result in upscale_files(upscaler, inputs, targets, on_patch, workers):
                    progress.update(patches, description=f"  {src.name}")
                    try:
                        if isinstance(result, ImageError):
                            raise result
                        write_png(dst, result.pixels, result.alpha, result.bits)
                    except ImageError as exc:
                        failures += 1
                        report_error(str(exc))
                    progress.advance(images)
    except (Stop, KeyboardInterrupt) as stop:
        clean_stale_parts(targets)  # a stop landing inside a write's own cleanup can leave its temporary
        raise interrupted(stop, outputs, output) from None
    return failures


FOLDER_DEPTH_PER_STREAM = 4  # images held per stream: read ahead, in flight, or waiting for their turn


def upscale_files(upscaler, inputs: list[Path], targets: list[Path], on_patch: Callable[[int, int], None],
                  workers: int | None = None) -> Iterator[tuple[Path, Path, "LoadedImage | ImageError"]]:
    """(input, target, upscaled image or its ImageError) per input, in order: images are read
    on a reader thread and `workers` of them (default `upscaler.items_in_flight` of their
    sizes) upscaled at once, while the caller writes the previous ones (writing stays on the
    calling thread, where signals arrive)."""
    def read(pairs):
        for src, dst in pairs:
            try:
                yield src, dst, read_image(src)
            except ImageError as exc:
                yield src, dst, exc

    if workers is None:
        workers = upscaler.items_in_flight(image_size(src) for src in inputs)

    def work(item):
        src, dst, image = item
        if isinstance(image, ImageError):
            return src, dst, image
        try:
            return src, dst, upscaler.upscale_loaded(image, on_patch if workers == 1 else None)
        except ImageError as exc:
            return src, dst, exc

    # Results leave in order, so an image slower than the ones after it holds their slots
    # until it is done: with 2 streams and the default 4 slots, G-MGBP's 128x128 baby.png
    # kept the other stream idle for 0.5 s of a 2.9 s CSet5 run. 4 slots per stream (up to
    # 8 images read ahead or waiting to be written) made it 2.55 s.
    return upscaler.in_flight(read(zip(inputs, targets)), work, FOLDER_DEPTH_PER_STREAM * workers, workers)


def interrupted(stop: BaseException, outputs: Outputs, output: Path) -> Interrupted:
    """The one-line `Interrupted` (exit 128 + signal) of a folder run stopped by `stop`;
    call it after `clean_stale_parts`."""
    signum = stop.signum if isinstance(stop, Stop) else signal.SIGINT
    name = _SIGNALS.get(signum, f"signal {signum}")
    targets = outputs.targets
    where = output if len(targets) > 1 else targets[0]
    return Interrupted(f"interrupted by {name}: {outputs.written()} of {len(targets)} images written to {where} "
                       f"(each complete; no partial file left)", 128 + int(signum))
