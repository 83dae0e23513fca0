"""TensorRT engines from a bundle's ONNX graphs (TensorRT >= 11: strongly typed only).

Precision comes from the graph itself: model.fp16.onnx carries float16 tensors and
model.int8.onnx explicit Q/DQ nodes. TensorRT 11 has no FP16/INT8 builder flags and no
calibrators, so the builder sets none: ONNX parser -> strongly typed network -> one
optimization profile (profiles.py) -> `builder_optimization_level` -> the bundle's
persistent timing cache -> a serialized plan under engines/ named by its key (keys.py).

Without TensorRT or a GPU nothing is built: each requested engine comes back `skipped`
with the reason, and the caller carries on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from srexport.errors import SrExportError
from srexport.fsutil import atomic_path, sha256_file
from srexport.lazy import EngineUnavailable, import_tensorrt
from srexport.tensorrt.keys import ENGINE_DIR, TIMING_CACHE, EngineKey, find_engine
from srexport.tensorrt.profiles import PatchProfile, manifest_input_shapes, profile_for_manifest

Log = Callable[[str], None]
OPT_LEVELS = range(0, 6)  # IBuilderConfig.builder_optimization_level: 0 (fast build) .. 5; TensorRT's default 3
DEFAULT_OPT_LEVEL = 3
REDUCED = ("fp16", "int8")
DEVICES = ("auto", "cpu", "cuda")


class EngineBuildError(EngineUnavailable):
    """TensorRT could not parse the graph or build the engine."""


@dataclass
class EngineResult:
    """What happened to one requested engine."""

    precision: str
    status: str  # "built" | "cached" | "skipped" | "failed"
    reason: str = ""
    path: Path | None = None
    key: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("built", "cached")

    def line(self) -> str:
        """One line for the CLI: 'fp16 engine built: engines/fp16_sm86_....plan (83.2 s)'."""
        return self.record().line()

    def record(self) -> "EngineRecord":
        return EngineRecord(self.precision, self.status, self.reason, self.path.name if self.path else None,
                            self.seconds)

    def to_dict(self) -> dict:
        return self.record().to_json()


@dataclass(frozen=True)
class EngineRecord:
    """What the manifest keeps of one engine build (manifest.tools["tensorrt_engines"])."""

    precision: str
    status: str
    reason: str = ""
    file: str | None = None
    seconds: float | None = None

    def line(self) -> str:
        where = f"{ENGINE_DIR}/{self.file}" if self.file is not None else ""
        if self.status == "built":
            return f"{self.precision} engine built: {where} ({self.seconds:.1f} s)"
        if self.status == "cached":
            return f"{self.precision} engine up to date: {where}"
        return f"{self.precision} engine {self.status}: {self.reason}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "EngineRecord":
        """Also reads the records of older bundles, which carried a pre-rendered "line"."""
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def engine_records(manifest) -> list[EngineRecord]:
    """The engine builds a manifest recorded, oldest format included."""
    return [EngineRecord.from_json(r) for r in manifest.tools.get("tensorrt_engines", []) if isinstance(r, dict)]


# -- environment -------------------------------------------------------------------------
def engine_environment(gpu_index: int = 0):
    """(tensorrt module, GpuInfo), or raise `EngineUnavailable` saying what is missing."""
    from srexport.tensorrt.device import query_gpu

    trt = import_tensorrt()
    gpu = query_gpu(gpu_index)
    return trt, gpu


def _logger(trt, log: Log):
    """A trt.ILogger forwarding TensorRT's warnings and errors to `log`."""
    severity = trt.ILogger.Severity
    shown = {severity.INTERNAL_ERROR: "error", severity.ERROR: "error", severity.WARNING: "warning"}

    class _Forward(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, level, msg) -> None:  # noqa: A003 - TensorRT's name
            kind = shown.get(level)
            if kind is not None:
                log(f"TensorRT {kind}: {msg}")

    return _Forward()


# -- graph checks ------------------------------------------------------------------------
def qdq_incompatibility(graph: Path) -> str | None:
    """Why TensorRT would reject this Q/DQ graph, or None. TensorRT takes symmetric
    quantization only: int8 (not uint8) with every zero point 0."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph), load_external_data=False)
    inits = {t.name: t for t in model.graph.initializer}
    constants = {o: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute
                 for o in n.output if n.attribute[0].name == "value"}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3 or not node.input[2]:
            continue
        tensor = inits.get(node.input[2]) or constants.get(node.input[2])
        if tensor is None:
            continue
        zero = numpy_helper.to_array(tensor)
        if zero.dtype == np.uint8:
            return (f"{graph.name} quantizes to uint8 ({node.op_type} '{node.name}'); TensorRT takes symmetric int8 "
                    "Q/DQ only: quantize with activation_type=QInt8 and ActivationSymmetric/WeightSymmetric")
        if np.any(zero != 0):
            return (f"{graph.name} has non-zero zero points ({node.op_type} '{node.name}'); TensorRT takes "
                    "symmetric quantization only (every zero point 0)")
    return None


def engine_graph_file(manifest, precision: str, bundle_root: Path | None = None) -> str:
    """The graph TensorRT builds `precision` from: the int8 graph's TensorRT variant
    (notes["tensorrt"]["file"]: symmetric int8 Q/DQ, which calib/ writes beside the CPU
    one) when the bundle has it, else the precision's own graph."""
    info = manifest.precisions[precision]
    variant = (info.notes or {}).get("tensorrt", {})
    name = variant.get("file") if isinstance(variant, dict) else None
    if name and (name in manifest.files or (bundle_root is not None and (Path(bundle_root) / name).is_file())):
        return name
    return info.file


def graph_digest(bundle_root: Path, manifest, precision: str) -> str:
    name = engine_graph_file(manifest, precision, bundle_root)
    recorded = manifest.files.get(name)
    return recorded if recorded else sha256_file(Path(bundle_root) / name)


def default_precisions(manifest) -> list[str]:
    """The reduced-precision graphs the bundle has; fp32 when it has none."""
    reduced = [p for p in REDUCED if p in manifest.precisions]
    return reduced or ["fp32"]


# -- one engine --------------------------------------------------------------------------
def build_plan(trt, graph: Path, shapes: dict, opt_level: int, log: Log, cache_in: Path | None = None,
               cache_out: Path | None = None) -> bytes:
    """Parse `graph`, build a strongly typed engine with one profile of `shapes`
    ({input: (min, opt, max)}), and return the serialized plan. The timing cache is read
    from `cache_in` (when it exists) and the updated one written to `cache_out` (when
    given). Raises EngineBuildError, whatever went wrong inside TensorRT."""
    try:
        return _build_plan(trt, graph, shapes, opt_level, log, cache_in, cache_out)
    except SrExportError:
        raise
    except Exception as exc:  # pybind11 turns TensorRT failures into RuntimeError/TypeError
        raise EngineBuildError(f"TensorRT failed on {graph.name}: {type(exc).__name__}: {exc}") from None


def _build_plan(trt, graph: Path, shapes: dict, opt_level: int, log: Log, cache_in: Path | None,
                cache_out: Path | None) -> bytes:
    logger = _logger(trt, log)
    builder = trt.Builder(logger)
    # Strong typing is the only mode of TensorRT 11 (the flag is accepted and ignored there);
    # setting it keeps the precision of the graph on any version that still offers weak typing.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {graph.name}: {errors or 'no detail'}")
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    missing = [n for n in names if n not in shapes]
    if missing:
        raise EngineBuildError(f"{graph.name} has inputs the manifest does not describe: {', '.join(missing)}")

    config = builder.create_builder_config()
    config.builder_optimization_level = int(opt_level)
    profile = builder.create_optimization_profile()
    for name in names:
        low, opt, high = shapes[name]
        profile.set_shape(name, trt.Dims(list(low)), trt.Dims(list(opt)), trt.Dims(list(high)))
    config.add_optimization_profile(profile)

    cache = _timing_cache(config, cache_in, log)
    if not config.set_timing_cache(cache, False):
        log(f"the timing cache {cache_in} belongs to another GPU or TensorRT; starting a new one")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, True)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT could not build an engine from {graph.name} (see the TensorRT errors above)")
    if cache_out is not None:
        try:
            with atomic_path(cache_out) as tmp:
                tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
        except OSError as exc:
            log(f"could not save the timing cache to {cache_out}: {exc}")
    return bytes(memoryview(plan))


def _timing_cache(config, path: Path | None, log: Log):
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    try:
        cache = config.create_timing_cache(data)
    except Exception as exc:  # a corrupt cache must not stop a build
        cache = None
        log(f"ignoring the unreadable timing cache {path}: {exc}")
    if cache is None:
        cache = config.create_timing_cache(b"")
    return cache


# -- a bundle's engines ------------------------------------------------------------------
def engine_key(trt, gpu, bundle_root: Path, manifest, precision: str, profile: PatchProfile) -> EngineKey:
    return EngineKey.for_device(precision, gpu.capability, trt.__version__, profile,
                                graph_digest(bundle_root, manifest, precision))


def build_engines(
    bundle_root: Path,
    manifest,
    precisions: list[str] | None = None,
    opt_level: int = DEFAULT_OPT_LEVEL,
    max_patch: int | None = None,
    log: Log = print,
    *,
    max_batch: int | None = None,
    device: str = "auto",
    force: bool = False,
    gpu_index: int = 0,
) -> list[EngineResult]:
    """Build (or find up to date) an engine per precision under `bundle_root`/engines/.

    `precisions`: None = the bundle's reduced-precision graphs (fp32 when it has none).
    `device`: "auto" skips with the reason when TensorRT or a GPU is missing; "cpu" skips;
    "cuda" raises `EngineUnavailable` instead of skipping. Never raises for a failed
    build: that engine comes back `failed` with TensorRT's message.
    """
    if device not in DEVICES:
        raise SrExportError(f"--device must be one of {', '.join(DEVICES)}, got '{device}'")
    if opt_level not in OPT_LEVELS:
        raise SrExportError(f"--opt-level must be between 0 and 5, got {opt_level}")
    root = Path(bundle_root)
    wanted = list(precisions) if precisions else default_precisions(manifest)
    results: list[EngineResult] = []
    present = [p for p in wanted if p in manifest.precisions]
    for p in wanted:
        if p not in manifest.precisions:
            have = ", ".join(manifest.precisions)
            results.append(EngineResult(p, "skipped", f"the bundle has no {p} graph (it has: {have})"))
    if not present:
        return results
    if device == "cpu":
        return results + [EngineResult(p, "skipped", "--device cpu: TensorRT engines not built") for p in present]
    try:
        trt, gpu = engine_environment(gpu_index)
    except EngineUnavailable as exc:
        if device == "cuda":
            raise
        return results + [EngineResult(p, "skipped", str(exc)) for p in present]

    profile = profile_for_manifest(manifest, max_patch, max_batch)
    shapes = manifest_input_shapes(manifest, profile)
    engines = root / ENGINE_DIR
    for precision in present:
        key = engine_key(trt, gpu, root, manifest, precision, profile)
        target = engines / key.filename
        if target.is_file() and (not force or _is_hashed(manifest, target, root)):
            results.append(EngineResult(precision, "cached", "", target, key.name))
            continue
        graph = root / engine_graph_file(manifest, precision, root)
        if precision == "int8":
            problem = qdq_incompatibility(graph)
            if problem:
                results.append(EngineResult(precision, "skipped", problem, key=key.name))
                continue
        log(f"building the {precision} TensorRT engine for {gpu.name} ({gpu.sm}, {profile}); this takes minutes")
        start = time.perf_counter()
        try:
            cache = engines / TIMING_CACHE
            cache_out = None if _is_hashed(manifest, cache, root) else cache
            plan = build_plan(trt, graph, shapes, opt_level, log, cache, cache_out)
        except EngineBuildError as exc:
            results.append(EngineResult(precision, "failed", str(exc), key=key.name))
            continue
        with atomic_path(target) as tmp:
            tmp.write_bytes(plan)
        results.append(EngineResult(precision, "built", "", target, key.name, time.perf_counter() - start))
    return results


def ensure_engine(trt, gpu, bundle_root: Path, manifest, precision: str, profile: PatchProfile,
                  directories: list[Path], write_dir: Path | None, opt_level: int, log: Log) -> tuple[Path, str]:
    """A plan for `precision` covering `profile`: found in `directories`, else built into
    `write_dir` (None: building not allowed). Returns (path, what happened, for the user)."""
    key = engine_key(trt, gpu, bundle_root, manifest, precision, profile)
    found, passed = find_engine(directories, key)
    if found is not None:
        return found, f"engine {found.name}"
    why = ("; ".join(passed) + "; ") if passed else ""
    if write_dir is None:
        raise EngineUnavailable(
            f"no {precision} TensorRT engine for {gpu.name} ({gpu.sm}, TensorRT {key.trt_version}) in the bundle"
            f"{': ' + why.rstrip('; ') if why else ''}; build one with `sr-export build` on this machine"
        )
    graph = Path(bundle_root) / engine_graph_file(manifest, precision, bundle_root)
    if precision == "int8":
        problem = qdq_incompatibility(graph)
        if problem:
            raise EngineBuildError(problem)
    reason = f"({why.rstrip('; ')}) " if why else ""
    log(f"no matching {precision} TensorRT engine {reason}- building {key.filename} for {gpu.name}; this takes minutes")
    cache_out: Path | None = write_dir / TIMING_CACHE
    cache_in = Path(bundle_root) / ENGINE_DIR / TIMING_CACHE
    if not cache_in.is_file():
        cache_in = cache_out
    if _is_hashed(manifest, cache_out, bundle_root):
        cache_out = None  # never rewrite a file the manifest vouches for
    shapes = manifest_input_shapes(manifest, profile)
    start = time.perf_counter()
    plan = build_plan(trt, graph, shapes, opt_level, log, cache_in, cache_out)
    target = write_dir / key.filename
    with atomic_path(target) as tmp:
        tmp.write_bytes(plan)
    return target, f"engine {target.name} built in {time.perf_counter() - start:.0f} s"


def _is_hashed(manifest, path: Path, bundle_root: Path) -> bool:
    try:
        rel = path.resolve().relative_to(Path(bundle_root).resolve()).as_posix()
    except ValueError:
        return False
    return rel in manifest.files
