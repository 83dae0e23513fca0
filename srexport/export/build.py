"""`sr-export build`: checkpoint -> verified bundle."""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from srexport.bundle import (
    WEIGHTS,
    Bundle,
    CheckpointRecord,
    Manifest,
    ModelIdentity,
    PrecisionInfo,
    load_bundle,
    save_weights,
    write_manifest,
)
from srexport.errors import BundleError, ExportError
from srexport.export.cpu_rewrites import rewrite_exported
from srexport.export.zero_noise import build_zero_noise
from srexport.export.model_bundle import recommended_overlap
from srexport.export.onnx_export import OPSET, OUTPUT, export_onnx, input_names, save_onnx
from srexport.export.parity import TOLERANCE, check_parity
from srexport.export.stitch_halo import measure as measure_stitch_halo
from srexport.fsutil import atomic_directory, sha256_file
from srexport.version import __version__
from srexport.calib.options import PrecisionOptions
from srexport.models import SRModel, load_checkpoint, registry
from srexport.models.published import resolve_weights

NO_WEIGHTS_WARNING = (
    "no trained weights: the bundle holds a randomly initialised {name}; "
    "its output is MEANINGLESS until you build it from trained weights"
)


@dataclass(frozen=True)
class EngineOptions:
    """TensorRT engine building (done only where TensorRT and a GPU exist)."""

    opt_level: int = 3
    max_patch: int | None = None
    max_batch: int | None = None
    device: str = "auto"  # auto | cpu | cuda


@dataclass(frozen=True)
class BuildRequest:
    model: str
    variant: str | None = None
    scale: int | None = None
    weights: str | Path | None = None  # None: the shipped default; "init"; a shipped name; a path
    out: Path | None = None
    patch: int | None = None
    precision: PrecisionOptions | None = None
    plugins: bool = False
    engines: EngineOptions = EngineOptions()


def graph_parameters(model: SRModel) -> int:
    """Parameters the exported graph uses (a multi-scale model exports one scale)."""
    return model.graph_parameters()


def _tool_versions() -> dict:
    import onnx
    import onnxruntime
    import onnxsim

    return {
        "sr-export": __version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxsim": onnxsim.__version__,
        "python": platform.python_version(),
        "opset": OPSET,
    }


def default_out_dir(model: str, variant: str, scale: int) -> Path:
    return Path("bundles") / f"{model}-{variant}-x{scale}"


def build_bundle(request: BuildRequest, warn: Callable[[str], None] = print) -> Bundle:
    """Build, export, verify and write a bundle; nothing is left behind on failure."""
    entry = registry.get(request.model)
    variant, scale = entry.resolve(request.variant, request.scale)
    model = entry.factory(variant, scale).eval()
    if request.plugins:
        require_plugin_layers(model, entry.name)
    checkpoint = None
    weights = resolve_weights(entry.name, request.weights)
    if weights.path is not None:
        load_checkpoint(model, weights.path)
        shipped = weights.shipped
        checkpoint = CheckpointRecord(weights.path.name, sha256_file(weights.path),
                                      shipped=shipped.name if shipped else None,
                                      licence=shipped.licence if shipped else None,
                                      source=shipped.source if shipped else None)
    else:
        warn(NO_WEIGHTS_WARNING.format(name=entry.name))
    out = Path(request.out) if request.out else default_out_dir(entry.name, variant, scale)
    identity = ModelIdentity(entry.name, variant, scale, entry.task)
    return export_bundle(model, out, identity, checkpoint, request.patch, request.precision, request.plugins,
                         request.engines, warn)


def export_bundle(
    model: SRModel,
    out: Path,
    identity: ModelIdentity | dict,
    checkpoint: CheckpointRecord | None = None,
    patch: int | None = None,
    precision: PrecisionOptions | None = None,
    plugins: bool = False,
    engines: EngineOptions | None = None,
    log: Callable[[str], None] = print,
    cpu_rewrites: bool = True,
) -> Bundle:
    """Export `model` into a verified bundle at `out` (atomically replacing it).

    `identity`: the registry's model, variant, scale and task (a `ModelIdentity`, or a
    dict of those fields). With `plugins`, a
    second graph keeps layers that have a TensorRT plugin (VN+SC) fused as one node;
    model.fp32.onnx keeps the standard-op decomposition every backend runs. With
    `cpu_rewrites`, model.fp32.onnx is the exported graph after the passes of
    `srexport.export.cpu_rewrites` (checked against the export, recorded in the manifest).
    """
    model = model.eval()
    if not isinstance(identity, ModelIdentity):
        identity = ModelIdentity(**identity)
    if plugins:
        require_plugin_layers(model, identity.model)
    rules = model.shape_rules()
    patch = rules.legal_at_least(patch) if patch else model.recommended_patch()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BundleError(f"cannot write bundle: {out} exists and is not a directory")
    try:
        with atomic_directory(out) as tmp:
            graph_file = "model.fp32.onnx"
            exported = export_onnx(model, tmp / graph_file)
            graphs = rewrite_exported(model, exported) if cpu_rewrites else None
            rewrites = graphs.record if graphs is not None else None
            if rewrites is not None:
                save_onnx(graphs.fp32, tmp / graph_file)
            zero_noise = build_zero_noise(model, graphs.fp32) if graphs is not None else None
            if zero_noise is not None:
                save_onnx(zero_noise[0], tmp / zero_noise[1].file)
            save_weights(model.state_dict(), tmp / WEIGHTS)
            checks = check_parity(model, tmp / graph_file)
            worst = max(c.max_abs_error for c in checks)
            if not np.isfinite(worst) or worst > TOLERANCE:
                raise ExportError(
                    f"exported graph differs from PyTorch by {worst:.3g} (> {TOLERANCE:g}); bundle not written"
                )
            # trained weights only: a random initialisation says nothing about how far the input matters
            stitch_halo = measure_stitch_halo(model, tmp / graph_file) if checkpoint is not None else None
            precisions = {"fp32": PrecisionInfo(file=graph_file, max_abs_error_vs_torch=worst)}
            plugin_graph = _write_plugin_graph(tmp, graph_file, model) if plugins else None
            if precision is not None and precision.wanted():
                from srexport.calib.precisions import build_precisions

                precisions.update(build_precisions(model, tmp, graph_file, precision,
                                                   quantizable=graphs.quantizable if graphs is not None else None))
            manifest = Manifest(
                model=identity.model,
                variant=identity.variant,
                scale=identity.scale,
                task=identity.task,
                input_kind=model.input_kind,
                params=graph_parameters(model),
                inputs=input_names(model),
                noise_inputs=list(model.noise_inputs),
                outputs=[OUTPUT],
                shape_rules=rules,
                patch=patch,
                overlap=recommended_overlap(model, patch),
                precisions=precisions,
                checkpoint=checkpoint,
                tools=_tool_versions(),
                verification=checks,
                plugin_graph=plugin_graph,
                graph_rewrites=rewrites.to_dict() if rewrites is not None else None,
                zero_noise_graph=zero_noise[1].to_dict() if zero_noise is not None else None,
                stitch_halo=stitch_halo,
            )
            if engines is not None and engines.device != "cpu":
                from srexport.tensorrt.builder import build_engines

                results = build_engines(tmp, manifest, None, engines.opt_level, engines.max_patch, log=log,
                                        max_batch=engines.max_batch, device=engines.device)
                manifest.tools["tensorrt_engines"] = [r.record().to_json() for r in results]
            write_manifest(tmp, manifest)
    except PermissionError as exc:
        raise BundleError(f"cannot write bundle to {out}: {exc.strerror}") from None
    return load_bundle(out)


def require_plugin_layers(model: SRModel, name: str) -> None:
    """Refuse --plugins for a network with no layer that has a TensorRT plugin."""
    from srexport.models.discriminator import VNSC

    if not any(isinstance(m, VNSC) for m in model.modules()):
        raise ExportError(f"--plugins: {name} has no layer with a TensorRT plugin (only VN+SC has one)")


def _write_plugin_graph(root: Path, graph_file: str, model: SRModel) -> dict:
    """Fuse plugin-backed layers of the exported graph into model.fp32.plugins.onnx."""
    import onnx

    from srexport.export.onnx_export import save_onnx
    from srexport.kernels.onnx_plugin import PLUGIN_ID, fuse_vnsc

    fused, count = fuse_vnsc(onnx.load(str(root / graph_file)))
    if count == 0:  # the layer exists but the exporter's pattern was not found
        raise ExportError(f"--plugins: no VN+SC subgraph found in the exported {type(model).__name__} graph")
    name = "model.fp32.plugins.onnx"
    save_onnx(fused, root / name)
    return {"file": name, "plugins": {PLUGIN_ID: count}}
