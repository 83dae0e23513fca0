"""Folder in, folder out: what `sr-export run` does, with progress and per-file errors."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from srexport.errors import ImageError, SrExportError
from srexport.runtime.upscaler import load


def output_paths(inputs: list[Path], output: Path) -> list[Path]:
    """One input with an image suffix on `output` writes that file; otherwise `output`
    is a folder receiving <stem>.png for each input."""
    if len(inputs) == 1 and output.suffix.lower() == ".png":
        return [output]
    if output.suffix and not output.is_dir():
        raise SrExportError(f"output {output} must be a folder (several inputs) or a .png file (one input)")
    stems = [p.stem for p in inputs]
    duplicates = {s for s in stems if stems.count(s) > 1}
    if duplicates:
        raise SrExportError(f"several inputs would write the same output name: {sorted(duplicates)[0]}.png")
    return [output / f"{stem}.png" for stem in stems]


def describe(upscaler) -> str:
    """One line: which backend, providers and tiling the run uses."""
    session = upscaler.session
    providers = getattr(session, "providers", None)
    where = f" ({', '.join(providers)})" if providers else ""
    note = getattr(session, "selection_note", "")
    return f"backend {session.name}{where}{f' - {note}' if note else ''}; {upscaler.tiling_note()}"


def run_images(
    bundle: Path,
    inputs: list[Path],
    output: Path,
    *,
    quiet: bool = False,
    console: Console | None = None,
    report_error: Callable[[str], None] = print,
    backend: str = "auto",
    precision: str = "fp32",
    **options,
) -> int:
    """Upscale every input; return how many failed (each reported in one line)."""
    if not inputs:
        raise SrExportError("no input images found")
    targets = output_paths(inputs, output)
    upscaler = load(bundle, backend, precision, **options)
    if not quiet and console is not None:
        console.print(describe(upscaler), highlight=False, markup=False, soft_wrap=True)
    failures = 0
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=quiet, transient=False,
    ) as progress:
        images = progress.add_task("images", total=len(inputs))
        patches = progress.add_task("patches", total=None)
        for src, dst in zip(inputs, targets):
            progress.update(patches, description=f"  {src.name}", completed=0, total=None)

            def on_patch(done: int, total: int) -> None:
                progress.update(patches, completed=done, total=total)

            try:
                upscaler.upscale_file(src, dst, on_patch)
            except ImageError as exc:
                failures += 1
                report_error(str(exc))
            progress.advance(images)
    return failures
