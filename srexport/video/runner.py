"""What `sr-export run BUNDLE clip.mp4 -o out.mp4` does: load, describe, progress bar."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from srexport.video.job import VideoInterrupted, VideoResult, upscale_video
from srexport.video.options import VideoOptions


class _Fps(ProgressColumn):
    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.2f} fps")


@dataclass(frozen=True)
class RayPlacement:
    """Where a --ray video run goes: an existing cluster's address (None: a private local
    one) and how many actors hold the bundle (None: one per GPU, else per CPU)."""

    address: str | None = None
    workers: int | None = None


def run_video(bundle: Path, src: Path, dst: Path, video: VideoOptions, *, quiet: bool = False,
              console: Console | None = None, warn: Callable[[str], None] = print, backend: str = "auto",
              precision: str = "auto", ray: RayPlacement | None = None, **options) -> VideoResult:
    """Upscale one video with a progress bar (frames, fps, ETA), in this process or on Ray."""
    def say(line: str) -> None:
        if not quiet and console is not None:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

    if ray is None:
        from srexport.runtime.folder_run import describe
        from srexport.runtime.upscaler import load

        upscaler = load(bundle, backend, precision, **options)
        say(describe(upscaler.for_frames()))

        def execute(on_frame):
            return upscale_video(upscaler, src, dst, video, on_frame, warn)
    else:
        from srexport.distributed.ray_video import ray_upscale_video

        def execute(on_frame):
            return ray_upscale_video(bundle, src, dst, video, address=ray.address, workers=ray.workers,
                                     backend=backend, precision=precision, progress=on_frame, warn=warn,
                                     on_ready=lambda n, note: say(f"ray: {n} workers; {note}"), **options).video
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _Fps(),
                  TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                  console=console, disable=quiet, transient=False) as progress:
        task = progress.add_task(f"frames of {src.name}", total=None)

        def on_frame(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total if total and total >= done else None)

        try:
            result = execute(on_frame)
        except VideoInterrupted as stopped:
            warn(f"{stopped}; the file is closed and playable")
            raise
    if not quiet and console is not None:
        console.print(f"wrote {result.path}: {result.frames} frames, {result.size[0]}x{result.size[1]} "
                      f"{result.codec} {result.pix_fmt}, {result.copied_streams} streams copied",
                      highlight=False, markup=False, soft_wrap=True)
    return result
