"""`sr-export export-triton`: a Triton Inference Server model repository for a bundle.

    <repo>/<name>/config.pbtxt
    <repo>/<name>/1/model.onnx                      ONNX variant (platform onnxruntime_onnx)
    <repo>/<name>/1/model.plan                      TensorRT variant (tensorrt_plan), one GPU arch
    <repo>/<name>/1/model_sm86.plan, ...            several archs: cc_model_filenames picks one

The server runs patches; the client tiles, draws the noise and blends
(`srexport.triton.connect`), so large images never travel as one request and the
result is the same as the local runtime's. The whole model folder is written beside
its final place and swapped in only when complete.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from srexport.bundle import Bundle, load_bundle
from srexport.errors import ExportError, SrExportError
from srexport.fsutil import atomic_directory
from srexport.triton.config import (
    KINDS,
    MANIFEST_PARAMETER,
    PLATFORMS,
    InstanceGroup,
    ModelConfig,
    TensorSpec,
    Warmup,
    graph_io,
)

VERSION = "1"


def default_model_name(bundle: Bundle) -> str:
    """'pcarn-m-x4', 'gmgbp-pirm2018-x4': letters, digits, '-', '_' and '.' only."""
    m = bundle.manifest
    parts = [m.model] if m.model.endswith(f"-{m.variant}") or not m.variant else [m.model, m.variant]
    return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(parts + [f"x{m.scale}"]))


def _cc(sm: str) -> str:
    """'86' -> '8.6', '120' -> '12.0' (Triton's compute-capability keys)."""
    return f"{sm[:-1]}.{sm[-1]}"


def _pick_engines(bundle: Bundle, precision: str, max_batch: int, warn: Callable[[str], None]):
    """{sm: (key, path)}: per GPU architecture, the plan of the newest TensorRT whose profile
    is largest (batch first, then patch edge), among plans built from this bundle's graph."""
    from srexport.tensorrt.keys import ENGINE_DIR, GRAPH_DIGITS, list_engines
    from srexport.lazy import version_tuple

    graph = bundle.manifest.files.get(bundle.manifest.precisions[precision].file, "")[:GRAPH_DIGITS]
    chosen: dict = {}
    for key, path in list_engines(bundle.root / ENGINE_DIR):
        if key.precision != precision:
            continue
        if key.graph != graph:
            warn(f"{path.name} skipped: built from another version of the {precision} graph")
            continue
        rank = (version_tuple(key.trt_version), min(key.profile.max_batch, max_batch), key.profile.max_edge)
        if key.sm not in chosen or rank > chosen[key.sm][0]:
            chosen[key.sm] = (rank, key, path)
    return {sm: (key, path) for sm, (_, key, path) in chosen.items()}


def _comments(bundle: Bundle, specs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    """Say in config.pbtxt what each tensor is: the client must follow it."""
    m = bundle.manifest
    noise = {n.name: n for n in m.noise_inputs}
    out = []
    for spec in specs:
        if spec.name in noise:
            n = noise[spec.name]
            text = (f"N x {n.channels} x {n.factor}*(h+2*{n.border}) x {n.factor}*(w+2*{n.border}): "
                    f"W * N(0,1) cropped from a whole-image field (zeros for W=0)")
        elif spec.name in m.inputs:
            text = f"N x 3 x h x w patch, RGB in [0, 1] ({m.input_kind} input)"
        else:
            s = m.shape_rules.output_scale
            text = f"N x 3 x {s}h x {s}w, not clamped; blend overlapping patches with a window"
        out.append(TensorSpec(spec.name, spec.data_type, spec.dims, text))
    return tuple(out)


def _instance_groups(kind: str, platform: str, instances: int, gpus) -> tuple[InstanceGroup, ...]:
    kind = kind.lower().removeprefix("kind_")
    if kind not in KINDS:
        raise SrExportError(f"unknown instance kind '{kind}' (kinds: {', '.join(KINDS)})")
    if instances < 1:
        raise SrExportError(f"instances must be >= 1, got {instances}")
    if platform == "tensorrt":
        if kind == "cpu":
            raise SrExportError("a TensorRT plan runs on GPUs only (use --platform onnx for CPU instances)")
        kind = "gpu"
    if gpus and kind == "cpu":
        raise SrExportError("--gpus applies to GPU instances, not CPU ones")
    if gpus:  # `instances` copies on each listed GPU
        return tuple(InstanceGroup(KINDS["gpu"], instances, (int(g),)) for g in gpus)
    return (InstanceGroup(KINDS[kind], instances),)  # on every GPU (or the CPU)


def triton_config(bundle: Bundle, name: str, *, platform: str, precision: str, max_batch: int, instances: int,
                  kind: str, gpus=None, engines: dict | None = None, warmup: bool = True,
                  max_queue_delay_us: int = 100) -> ModelConfig:
    """The ModelConfig of this bundle's graph (`engines`: the chosen plans, TensorRT only)."""
    m = bundle.manifest
    io = graph_io(bundle.graph_path(precision))
    batch = max_batch if io.dynamic_batch else 0
    parameters = {MANIFEST_PARAMETER: json.dumps(asdict(m), separators=(",", ":"), sort_keys=True)}
    parameters["srexport.precision"] = precision
    parameters["srexport.tiling"] = (f"patch {m.patch} overlap {m.overlap} (input pixels), output x"
                                     f"{m.shape_rules.output_scale}, legal edges {m.shape_rules.offset} + "
                                     f"{m.shape_rules.multiple_of}k >= {m.shape_rules.min_size}")
    files: dict[str, str] = {}
    default = "model.onnx"
    if platform == "tensorrt":
        engines = engines or {}
        if len(engines) == 1:
            (sm,) = engines
            files, default = {_cc(sm): "model.plan"}, "model.plan"
        else:  # no default: a GPU without its own plan must not load another arch's
            files, default = {_cc(sm): f"model_sm{sm}.plan" for sm in engines}, None
        batch = min(batch, *(key.profile.max_batch for key, _ in engines.values())) if batch else 0
        parameters["srexport.engines"] = ", ".join(sorted(path.name for _, path in engines.values()))
        edges = [(key.profile.min_edge, key.profile.max_edge) for key, _ in engines.values()]
        parameters["srexport.patch_range"] = f"{max(e[0] for e in edges)}..{min(e[1] for e in edges)}"
    preferred = tuple(sorted({b for b in (batch // 2, batch) if b >= 1}))
    warm = ()
    if warmup:
        edge = m.shape_rules.legal_at_least(m.patch)  # patches are in the graph's input pixels
        if platform == "tensorrt":  # within every plan's optimization profile
            edge = min(edge, *(key.profile.max_edge for key, _ in engines.values()))
        shapes = {}
        noise = {n.name: n for n in m.noise_inputs}
        for spec in io.inputs:
            full = (noise[spec.name].shape(1, edge, edge) if spec.name in noise else (1, 3, edge, edge))
            shapes[spec.name] = (spec.data_type, full[1:] if io.dynamic_batch else full)
        warm = (Warmup(f"patch {edge}x{edge}", 1, shapes),)
    header = (f"Triton model configuration written by sr-export {m.tools.get('sr-export', '')} for "
              f"{m.model} {m.variant} x{m.scale} ({precision}).",
              "Serves patches; tile, draw noise and blend on the client: srexport.triton.connect(url, name).")
    return ModelConfig(
        name=name, platform=PLATFORMS[platform], max_batch_size=batch,
        inputs=_comments(bundle, io.inputs), outputs=_comments(bundle, io.outputs),
        instance_groups=_instance_groups(kind, platform, instances, gpus),
        default_model_filename=default, cc_model_filenames=files, preferred_batch_sizes=preferred if batch else (),
        max_queue_delay_microseconds=max_queue_delay_us, parameters=parameters, warmup=warm, header=header,
    )


def _external_data(onnx_path: Path) -> list[str]:
    """Files an ONNX graph keeps its weights in (beside it), if any."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    names = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    return sorted(names)


def export_triton(
    bundle: str | Path | Bundle,
    repo: str | Path,
    name: str | None = None,
    max_batch: int = 8,
    instances: int = 1,
    kind: str = "auto",
    *,
    precision: str = "fp32",
    platform: str = "auto",
    gpus: list[int] | None = None,
    warmup: bool = True,
    warn: Callable[[str], None] | None = None,
) -> Path:
    """Write `<repo>/<name>/` (config.pbtxt + version 1) for the bundle; return that folder.

    platform: "onnx" (ONNX Runtime backend), "tensorrt" (the bundle's engines/*.plan of
    this precision) or "auto" (TensorRT when the bundle has plans, else ONNX).
    kind: instance kind, "auto" | "gpu" | "cpu"; `instances` per GPU (or on the CPU);
    `gpus` pins instances to those GPU ids. max_batch: Triton's max_batch_size, capped by
    the plans' optimization profiles.
    """
    warn = warn or (lambda message: None)
    loaded = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if loaded.manifest.task != "sr":
        raise SrExportError(f"bundle {loaded.root} holds a {loaded.manifest.task} network, not a super-resolution one")
    if max_batch < 1:
        raise SrExportError(f"max batch must be >= 1, got {max_batch}")
    name = name or default_model_name(loaded)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise SrExportError(f"model name '{name}' must use only letters, digits, '-', '_' and '.'")
    if platform not in ("auto", *PLATFORMS):
        raise SrExportError(f"unknown platform '{platform}' (platforms: auto, {', '.join(PLATFORMS)})")
    if precision == "bf16":
        raise SrExportError("bf16 has no graph of its own (OpenVINO runs the fp32 graph in bf16): "
                            "export fp32, fp16 or int8")
    onnx_path = loaded.graph_path(precision)
    engines = _pick_engines(loaded, precision, max_batch, warn) if platform in ("auto", "tensorrt") else {}
    if platform == "tensorrt" and not engines:
        raise SrExportError(f"bundle {loaded.root} has no {precision} TensorRT plans (engines/*.plan): build them "
                            f"with `sr-export build` on the serving GPU, or use --platform onnx")
    chosen = "tensorrt" if engines else "onnx"
    config = triton_config(loaded, name, platform=chosen, precision=precision, max_batch=max_batch,
                           instances=instances, kind=kind, gpus=gpus, engines=engines, warmup=warmup)
    if config.max_batch_size and config.max_batch_size < max_batch:
        warn(f"max batch {max_batch} lowered to {config.max_batch_size}: the TensorRT plans' profiles stop there")
    repo = Path(repo)
    try:
        with atomic_directory(repo / name) as tmp:
            version = tmp / VERSION
            version.mkdir()
            if chosen == "tensorrt":
                for sm, (_, path) in engines.items():
                    target = config.cc_model_filenames[_cc(sm)]
                    shutil.copyfile(path, version / target)
            else:
                shutil.copyfile(onnx_path, version / "model.onnx")
                for extra in _external_data(onnx_path):
                    shutil.copyfile(onnx_path.parent / extra, version / extra)
            (tmp / "config.pbtxt").write_text(config.to_pbtxt())
    except OSError as exc:
        raise ExportError(f"cannot write the Triton model {repo / name}: {exc.strerror or exc}") from None
    return repo / name
