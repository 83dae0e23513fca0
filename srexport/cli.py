"""The `sr-export` command line: thin wrappers around the library."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
try:  # typer >= 0.20 carries its own click; older ones use the click package
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from srexport.errors import Interrupted, SrExportError
from srexport.validation import check_options

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


def error_line(message: str) -> None:
    """One error line on stderr; the message is printed verbatim (no rich markup), with
    line breaks and other control characters escaped so that it stays one line."""
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> None:
    error_line(message)
    raise typer.Exit(code)


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


def parse_patch(text: str | None) -> tuple[int, int] | str | None:
    if text is None or text.lower() == "auto":
        return None if text is None else "auto"
    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        fail(f"--patch takes auto, HxW or N (positive integers), got '{text}'")
    return (values[0], values[-1])


@app.command("models")
def models_cmd(as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False) -> None:
    """List the registered networks: variants, scales, parameters, weights needed."""
    import torch

    from srexport.export.build import graph_parameters
    from srexport.models import registry
    from srexport.models.published import shipped_for

    rows = []
    for entry in registry.entries().values():
        for variant, scales in entry.variants.items():
            for scale in scales:
                with torch.device("meta"):  # counts shapes without allocating weights
                    params = graph_parameters(entry.factory(variant, scale))
                rows.append({
                    "name": entry.name, "variant": variant, "scale": scale, "params": params,
                    "task": entry.task, "needs_weights": entry.needs_weights,
                    "weights": entry.weights_hint, "description": entry.description,
                    "shipped_weights": [
                        {"name": c.name, "default": c.default, "licence": c.licence, "source": c.source,
                         "description": c.description}
                        for c in shipped_for(entry.name)
                    ],
                })
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="sr-export models")
    for column in ("model", "variant", "scale", "params"):
        table.add_column(column, no_wrap=True)
    table.add_column("trained weights (--weights)")
    for r in rows:
        if r["shipped_weights"]:
            weights = ", ".join(c["name"] + (" (default)" if c["default"] else "") for c in r["shipped_weights"])
        else:
            weights = "published, not shipped: a PATH" if r["needs_weights"] else "none published"
        table.add_row(r["name"], r["variant"], f"x{r['scale']}", f"{r['params']:,}", weights)
    out.print(table)
    out.print("`--weights NAME` takes a shipped name; `sr-export models --json` lists where each family's "
              "checkpoints come from.", highlight=False)


@app.command("build")
def build_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model name (see `sr-export models`).")],
    variant: Annotated[Optional[str], typer.Option(help="Model variant.")] = None,
    weights: Annotated[Optional[str], typer.Option(help="A shipped checkpoint name (see `sr-export models`), a checkpoint path (.pth/.model), or 'init' for the model's initialisation. Default: the model's shipped checkpoint, where it has one.")] = None,
    scale: Annotated[Optional[int], typer.Option(help="Upscaling factor (default: the variant's largest).")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Bundle directory.")] = None,
    patch: Annotated[Optional[int], typer.Option(help="Recommended patch edge in input pixels.")] = None,
    fp16: Annotated[bool, typer.Option("--fp16", help="Also build an FP16 graph.")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Also build an INT8 (QDQ) graph; needs --calib-dir.")] = False,
    bf16: Annotated[bool, typer.Option("--bf16", help="Also measure and record BF16 (OpenVINO on AVX512-BF16/AMX CPUs runs the FP32 graph in bf16; emulated where this CPU lacks BF16).")] = False,
    calib_dir: Annotated[Optional[Path], typer.Option(help="Folder of representative images for calibration.")] = None,
    calib_patches: Annotated[int, typer.Option(help="Calibration patches to sample.")] = 64,
    calib_method: Annotated[str, typer.Option(help="entropy, percentile or minmax.")] = "percentile",
    seed: Annotated[int, typer.Option(help="Seed of the calibration patch sampling.")] = 0,
    eval_dir: Annotated[Optional[Path], typer.Option(help="HR images to measure PSNR-Y of each precision.")] = None,
    plugins: Annotated[bool, typer.Option("--plugins", help="Also write a graph with VN+SC fused into the srexport::VNSC TensorRT plugin.")] = False,
    device: Annotated[str, typer.Option(help="Engines: auto (TensorRT where a GPU is), cpu (ONNX only) or cuda (require TensorRT).")] = "auto",
    opt_level: Annotated[int, typer.Option(help="TensorRT builder optimization level (0-5).")] = 3,
    max_patch: Annotated[Optional[int], typer.Option(help="Largest patch edge a TensorRT engine accepts.")] = None,
    max_batch: Annotated[Optional[int], typer.Option(help="Largest batch a TensorRT engine accepts.")] = None,
) -> None:
    """Export a checkpoint to a verified bundle (manifest + ONNX graphs)."""
    from srexport.calib.options import PrecisionOptions
    from srexport.export.build import BuildRequest, EngineOptions, build_bundle
    from srexport.tensorrt.builder import engine_records

    check_options(patch=patch, calib_patches=calib_patches, seed=seed, max_patch=max_patch, max_batch=max_batch)
    options = PrecisionOptions(fp16, int8, calib_dir, calib_patches, calib_method, seed, eval_dir, bf16)
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device must be auto, cpu or cuda, got '{device}'")
    if not 0 <= opt_level <= 5:
        fail(f"--opt-level must be between 0 and 5, got {opt_level}")
    engines = EngineOptions(opt_level=opt_level, max_patch=max_patch, max_batch=max_batch, device=device)
    request = BuildRequest(model=model, variant=variant, scale=scale, weights=weights, out=out_dir, patch=patch,
                           precision=options, plugins=plugins, engines=engines)
    with err.status(f"exporting {model}..."):
        bundle = build_bundle(request, warn=warn)
    m = bundle.manifest
    out.print(f"[green]built[/] {bundle.root}  ({m.model} {m.variant} x{m.scale}, {m.params:,} parameters)",
              highlight=False)
    if m.checkpoint is not None:
        source = (f"the shipped checkpoint {m.checkpoint.shipped} ({m.checkpoint.licence})"
                  if m.checkpoint.shipped else m.checkpoint.file)
        out.print(f"  weights: {source}, sha256 {m.checkpoint.sha256[:12]}", highlight=False, markup=False)
    for name, info in m.precisions.items():
        figures = [f"{label} {value:{fmt}}" for label, value, fmt in (
            ("max error vs PyTorch", info.max_abs_error_vs_torch, ".2e"),
            ("PSNR vs fp32", info.psnr_vs_fp32_db, ".2f"),
            ("PSNR-Y", info.psnr_y_db, ".2f"),
        ) if value is not None]
        notes = info.notes or {}
        runs_as = f" (bf16 on openvino, {notes.get('method', '')})" if name == "bf16" else ""
        out.print(f"  {info.file}{runs_as}: {', '.join(figures)}", highlight=False)
        if "accuracy_images" in notes and info.psnr_vs_fp32_db is not None:
            out.print(f"    PSNR measured on {notes['accuracy_images']}", highlight=False, markup=False)
        check = info.verify_note()
        if check is not None and check.psnr_vs_fp32_db is not None and check.inputs != notes.get("accuracy_images"):
            out.print(f"    verify figure: PSNR vs fp32 {check.psnr_vs_fp32_db:.2f} on {check.inputs}",
                      highlight=False, markup=False)
    if m.stitch_halo is not None:
        out.print(f"  stitching halo: {m.stitch_halo.pixels} px measured (receptive field {m.stitch_halo.geometric} px)",
                  highlight=False, markup=False)
    for engine in engine_records(m):
        out.print(f"  {engine.line()}", highlight=False, markup=False, soft_wrap=True)
    if m.plugin_graph:
        fused = ", ".join(f"{count} x {op}" for op, count in m.plugin_graph["plugins"].items())
        out.print(f"  {m.plugin_graph['file']}: {fused} (TensorRT plugin graph)", highlight=False)


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
    patch: Annotated[str, typer.Option(help="Patch HxW in input pixels, or auto: a patch --memory allows (images that fit run whole; CPU tiles kept small where that is faster).")] = "auto",
    overlap: Annotated[Optional[int], typer.Option(help="Overlap in input pixels for blending (default: the bundle's).")] = None,
    window: Annotated[str, typer.Option(help="Blending window: hamming, bartlett, none or triangular-authors (the MGBPv2 authors' triangle, never zero).")] = "hamming",
    memory: Annotated[Optional[float], typer.Option(help="Memory budget in GiB for --patch auto (default: half the available RAM; 70% of free GPU memory).")] = None,
    stitch: Annotated[str, typer.Option(help="auto (crop where the network's halo is finite), crop (exact) or blend (window).")] = "auto",
    recipe: Annotated[Optional[str], typer.Option(help="A published block recipe instead of --patch/--overlap/--window: aim2019 (the MGBPv2 authors' run.py, by the bundle's variant), aim2019-perceptual or aim2019-fidelity.")] = None,
    batch: Annotated[int, typer.Option(help="Patches per inference call.")] = 1,
    backend: Annotated[str, typer.Option(help="auto, tensorrt, openvino, onnxruntime or torch.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (the fastest precision the bundle holds that this machine runs within its recorded accuracy gate), fp32, fp16, bf16 (openvino) or int8.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    ray: Annotated[bool, typer.Option("--ray", help="Run on Ray: a private local cluster, or --ray-address.")] = False,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDRESS",
        help="Existing Ray cluster ('auto', 'ray://head:10001', 'head:6379'); implies --ray.")] = None,
    ray_workers: Annotated[Optional[int], typer.Option("--ray-workers", min=1,
        help="Ray actors holding the bundle (default: one per GPU, else per CPU); implies --ray.")] = None,
    codec: Annotated[Optional[str], typer.Option(help="Video: encoder (default: the input's, else libx264; ffv1 is lossless).")] = None,
    crf: Annotated[Optional[int], typer.Option(help="Video: constant quality (default 18 for libx264).")] = None,
    bitrate: Annotated[Optional[str], typer.Option(help="Video: bits per second, e.g. 8M (instead of --crf).")] = None,
    preset: Annotated[Optional[str], typer.Option(help="Video: encoder preset, e.g. slow.")] = None,
    pix_fmt: Annotated[Optional[str], typer.Option("--pix-fmt", help="Video: output pixel format (default: the input's).")] = None,
    frames: Annotated[Optional[str], typer.Option(help="Video: frames A:B (presentation order, B excluded).")] = None,
    static_noise: Annotated[bool, typer.Option("--static-noise", help="Video: one noise field for all frames (default: per-frame seeds).")] = False,
) -> None:
    """Upscale images or folders of images into PNGs, or a video into a video."""
    check_options(noise=noise, seed=seed, patch=parse_patch(patch), overlap=overlap, batch=batch, memory=memory)
    from srexport.video.options import is_video

    if recipe is not None and (ray or ray_address or ray_workers or any(is_video(i) for i in inputs)):
        fail("--recipe runs images in one process: drop --ray, give images")
    if len(inputs) > 1 and any(is_video(i) for i in inputs):
        fail("give one video per run (with -o OUT.mp4), not several inputs")
    if len(inputs) == 1 and is_video(inputs[0]):
        from srexport.video.options import FrameRange, VideoOptions
        from srexport.video.runner import RayPlacement, run_video

        placement = RayPlacement(ray_address, ray_workers) if (ray or ray_address or ray_workers) else None
        video = VideoOptions(codec=codec, crf=crf, bitrate=bitrate, preset=preset, pix_fmt=pix_fmt,
                             frames=FrameRange.parse(frames), static_noise=static_noise)
        run_video(bundle, inputs[0], output, video, noise=noise, seed=seed, patch=parse_patch(patch),
                  overlap=overlap, window=window, batch=batch, stitch=stitch, memory=memory,
                  backend=backend, precision=precision,
                  quiet=quiet, console=out, warn=warn, ray=placement)
        return
    common = dict(noise=noise, seed=seed, patch=parse_patch(patch), overlap=overlap, window=window, batch=batch,
                  stitch=stitch, memory=memory,
                  backend=backend, precision=precision, quiet=quiet, console=out, report_error=error_line)
    if ray or ray_address or ray_workers:
        from srexport.distributed.ray_run import run_images_ray

        failures = run_images_ray(bundle, _collect_inputs(inputs), output, address=ray_address,
                                  workers=ray_workers, **common)
    else:
        from srexport.runtime.folder_run import run_images

        failures = run_images(bundle, _collect_inputs(inputs), output, **common,
                              **({"recipe": recipe} if recipe is not None else {}))
    if failures:
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command("verify")
def verify_cmd(bundle: Annotated[Path, typer.Argument(help="Bundle directory.")]) -> None:
    """Re-check every graph of a bundle against the PyTorch model."""
    from srexport.export.verify_bundle import verify_bundle

    failed = False
    for result in verify_bundle(bundle):
        failed |= not result.ok
        status = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
        out.print(f"{result.line()} {status}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _profile_video(bundle: Path, clip: Path, frames: int, json_path: Path | None, **load_options) -> None:
    from srexport.runtime.folder_run import describe
    from srexport.runtime.upscaler import load
    from srexport.video.realtime import profile_video

    if frames < 1:
        fail(f"--video-frames must be >= 1, got {frames}")
    if not clip.is_file():
        fail(f"{clip}: no such file")
    upscaler = load(bundle, **load_options)
    result = profile_video(upscaler, clip, frames=frames, run_line=describe(upscaler.for_frames()),
                           log=lambda m: err.print(m, highlight=False, soft_wrap=True, markup=False))
    for line in result.lines():
        out.print(line, highlight=False, soft_wrap=True, markup=False)
    if json_path is not None:
        from srexport.fsutil import atomic_path

        with atomic_path(json_path) as tmp:
            tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n")


@app.command("profile")
def profile_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    size: Annotated[Optional[str], typer.Option(help="Output WxH, or a preset: 720p, 1080p, 8k, pirm, 1000, or a workload key (default: the model's paper workload).")] = None,
    precision: Annotated[str, typer.Option(help="auto (as run), fp32, fp16, bf16 (openvino) or int8.")] = "auto",
    backend: Annotated[str, typer.Option(help="auto, tensorrt, openvino, onnxruntime or torch.")] = "auto",
    patch: Annotated[str, typer.Option(help="Patch HxW in graph input pixels, or auto (as run: a patch --memory allows).")] = "auto",
    overlap: Annotated[Optional[int], typer.Option(help="Overlap in graph input pixels (default: the bundle's).")] = None,
    memory: Annotated[Optional[float], typer.Option(help="Memory budget in GiB for --patch auto (default as run).")] = None,
    stitch: Annotated[str, typer.Option(help="auto, crop or blend (as run).")] = "auto",
    batch: Annotated[Optional[int], typer.Option(help="Patches per call (default: the best of 1, 2, 4, 8; with --patch auto, 1 as run).")] = None,
    repeats: Annotated[int, typer.Option(help="Timed calls per patch measurement.")] = 10,
    warmup: Annotated[int, typer.Option(help="Untimed calls first.")] = 2,
    e2e_repeats: Annotated[int, typer.Option("--e2e-repeats", help="Timed whole-image runs.")] = 3,
    threads: Annotated[int, typer.Option(help="Threads (0: the CPUs this process may use).")] = 0,
    workload: Annotated[Optional[str], typer.Option(help="Titan X row to compare with (e.g. mgbpv2-1000-767).")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="Write the JSON profile here.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG: latency vs patch, throughput per precision (needs matplotlib).")] = None,
    video: Annotated[Optional[Path], typer.Option("--video", help="Profile video instead: fps on this clip end to end and upscaling alone, and whether UHD output runs in real time (24/30/60 fps).")] = None,
    video_frames: Annotated[int, typer.Option("--video-frames", help="Frames of the --video clip timed.")] = 24,
) -> None:
    """Throughput, latency, memory, FLOP/s and the ratio to the papers' Titan X figures."""
    check_options(patch=parse_patch(patch), overlap=overlap, batch=batch, repeats=repeats, warmup=warmup,
                  e2e_repeats=e2e_repeats, threads=threads, memory=memory)
    if video is not None:
        _profile_video(bundle, video, video_frames, json_path, backend=backend, precision=precision,
                       patch=parse_patch(patch), overlap=overlap, memory=memory, stitch=stitch,
                       batch=batch or 1, threads=threads)
        return
    from srexport.profiling import run_profile, summary

    result = run_profile(
        bundle, json_path=json_path, plot_path=plot, size=size, precision=precision, backend=backend,
        patch=parse_patch(patch), overlap=overlap, batch=batch, repeats=repeats, warmup=warmup,
        e2e_repeats=e2e_repeats, threads=threads, workload=workload, stitch=stitch, memory=memory,
        log=lambda m: err.print(m, highlight=False, soft_wrap=True, markup=False),
    )
    for line in summary(result):
        out.print(line, highlight=False, soft_wrap=True, markup=False)


@app.command("export-triton")
def export_triton_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory.")],
    repo: Annotated[Path, typer.Option("--repo", help="Triton model repository (created if absent).")],
    name: Annotated[Optional[str], typer.Option(help="Model name (default: <model>-<variant>-x<scale>).")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="Triton max_batch_size (patches per request).")] = 8,
    instances: Annotated[int, typer.Option(min=1, help="Model instances per GPU (or on the CPU).")] = 1,
    kind: Annotated[str, typer.Option(help="Instance kind: auto, gpu or cpu.")] = "auto",
    gpus: Annotated[Optional[str], typer.Option(help="Pin instances to these GPU ids, e.g. 0,1.")] = None,
    platform: Annotated[str, typer.Option(help="auto (TensorRT plans when the bundle has them), onnx or tensorrt.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 graph of the bundle.")] = "fp32",
) -> None:
    """Write a Triton Inference Server model repository entry for a bundle."""
    from srexport.triton import export_triton

    gpu_ids = None
    if gpus:
        try:
            gpu_ids = [int(g) for g in gpus.split(",")]
        except ValueError:
            fail(f"--gpus takes comma-separated GPU ids, got '{gpus}'")
    model_dir = export_triton(bundle, repo, name, max_batch, instances, kind, precision=precision,
                              platform=platform, gpus=gpu_ids, warn=warn)
    files = ", ".join(sorted(p.name for p in (model_dir / "1").iterdir()))
    out.print(f"[green]wrote[/] {escape(str(model_dir))} (config.pbtxt + {files})", highlight=False)
    out.print(f"serve: tritonserver --model-repository {escape(str(repo))}", highlight=False)


@app.command("doctor")
def doctor_cmd() -> None:
    """What this machine offers: GPU, driver, CUDA, TensorRT, ONNX Runtime providers, nvcc."""
    from srexport.doctor import collect, render

    out.print(render(collect()), highlight=False, markup=False, soft_wrap=True)


def _usage_line(exc: click_errors.UsageError) -> str:
    """A click/typer usage error as one line (typer would draw a box)."""
    message = " ".join(exc.format_message().split())
    command = exc.ctx.command_path if exc.ctx is not None else "sr-export"
    return f"{message} (see '{command} --help')"


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `sr-export` console script: bad input is one line and exit 2."""
    try:
        with warnings.catch_warnings():
            # Warnings that signal bad input are turned into SrExportErrors where they
            # arise (image pixel limit); the rest are noise to a user.
            warnings.simplefilter("ignore")
            code = app(args=argv, prog_name="sr-export", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except click_errors.UsageError as exc:
        error_line(_usage_line(exc))
        sys.exit(EXIT_BAD_INPUT)
    except click_errors.ClickException as exc:
        error_line(" ".join(exc.format_message().split()))
        sys.exit(EXIT_BAD_INPUT)
    except Interrupted as exc:
        err.print(escape(str(exc)), highlight=False, soft_wrap=True)
        sys.exit(exc.code)
    except SrExportError as exc:
        error_line(" ".join(str(exc).split()))
        sys.exit(EXIT_BAD_INPUT)
    except (KeyboardInterrupt, typer.Abort):
        err.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
