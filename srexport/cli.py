"""The `sr-export` command line: thin wrappers around the library."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from srexport.errors import SrExportError

app = typer.Typer(
    name="sr-export",
    help="Compile super-resolution networks to deployable bundles and run them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def parse_patch(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        fail(f"--patch takes HxW or N (positive integers), got '{text}'")
    return (values[0], values[-1])


@app.command("models")
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """List the registered networks: variants, scales, parameters, weights needed."""
    from srexport.models import registry
    from srexport.export.build import graph_parameters

    rows = []
    for entry in registry.entries().values():
        for variant, scales in entry.variants.items():
            for scale in scales:
                params = graph_parameters(entry.factory(variant, scale))
                rows.append({
                    "name": entry.name, "variant": variant, "scale": scale, "params": params,
                    "task": entry.task, "needs_weights": entry.needs_weights,
                    "weights": entry.weights_hint, "description": entry.description,
                })
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("model", "variant", "scale", "params", "weights", title="sr-export models")
    for r in rows:
        weights = r["weights"] or ("published" if r["needs_weights"] else "none published (random init)")
        table.add_row(r["name"], r["variant"], f"x{r['scale']}", f"{r['params']:,}", weights)
    out.print(table)


@app.command("build")
def build_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name (see `sr-export models`).")],
    variant: Annotated[Optional[str], typer.Option(help="Model variant.")] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Trained checkpoint (.pth/.model).")] = None,
    scale: Annotated[Optional[int], typer.Option(help="Upscaling factor (default: the variant's largest).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle directory.")] = None,
    patch: Annotated[Optional[int], typer.Option(help="Recommended patch edge in input pixels.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also build an FP16 graph.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also build an INT8 (QDQ) graph.")] = False,
) -> None:
    """Export a checkpoint to a verified bundle (manifest + ONNX graphs)."""
    from srexport.export.build import BuildRequest, build_bundle

    for flag, wanted in (("--fp16", fp16), ("--int8", int8)):
        if wanted:
            fail(f"{flag} is not available yet in this version of sr-export")
    request = BuildRequest(model=model, variant=variant, scale=scale, weights=weights, out=out_dir, patch=patch)
    with err.status(f"exporting {model}..."):
        bundle = build_bundle(request, warn=warn)
    m = bundle.manifest
    info = m.precisions["fp32"]
    out.print(
        f"[green]built[/] {bundle.root}  ({m.model} {m.variant} x{m.scale}, {m.params:,} parameters, "
        f"fp32 max error vs PyTorch {info.max_abs_error_vs_torch:.2e})",
        highlight=False,
    )


def _collect_inputs(inputs: list[Path]) -> list[Path]:
    from srexport.runtime.imageio import READABLE

    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in READABLE))
        else:
            files.append(item)
    return files


@app.command("run")
def run_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file (one input) or folder.")],
    noise: Annotated[float, typer.Option(help="Noise amplitude W (0: deterministic).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the noise fields.")] = 0,
    patch: Annotated[Optional[str], typer.Option(help="Patch HxW in input pixels (default: the bundle's).")] = None,
    overlap: Annotated[Optional[int], typer.Option(help="Overlap in input pixels (default: the bundle's).")] = None,
    window: Annotated[str, typer.Option(help="Blending window: hamming, bartlett or none.")] = "hamming",
    batch: Annotated[int, typer.Option(help="Patches per inference call.")] = 1,
    backend: Annotated[str, typer.Option(help="auto, onnxruntime or torch.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8.")] = "fp32",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Upscale images or folders of images into PNGs."""
    from srexport.runtime.runner import run_images

    failures = run_images(
        bundle, _collect_inputs(inputs), output, noise=noise, seed=seed, patch=parse_patch(patch),
        overlap=overlap, window=window, batch=batch, backend=backend, precision=precision,
        quiet=quiet, console=out, report_error=lambda msg: err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True),
    )
    if failures:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command("verify")
def verify_cmd(bundle: Annotated[Path, typer.Argument(help="Bundle directory.")]) -> None:
    """Re-check every graph of a bundle against the PyTorch model."""
    from srexport.export.verify_bundle import verify_bundle

    results = verify_bundle(bundle)
    worst = 0.0
    for precision, error, tolerance in results:
        ok = error <= tolerance
        worst = max(worst, error) if precision == "fp32" else worst
        out.print(f"{precision}: max abs error vs PyTorch {error:.3e} (tolerance {tolerance:g}) "
                  f"[{'green' if ok else 'red'}]{'ok' if ok else 'FAILED'}[/]", highlight=False)
        if not ok:
            raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except SrExportError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
