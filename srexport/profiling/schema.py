"""The JSON document `sr-export profile --json` writes (schema version 1).

Times are wall-clock on this machine; `{median, p10, p90, runs}` summaries use linear
percentiles. Sizes are `{width, height}` in pixels. Fields (`?` = may be null):

- `schema_version` (1), `created` (UTC ISO time), `tools` (versions), `bundle` (path).
- `model`, `variant`, `scale`, `params`: the bundle's identity (manifest).
- `precision` (fp32 | fp16 | int8), `backend` (the session that ran: onnxruntime, torch,
  tensorrt), `providers` (ONNX Runtime execution providers), `device`
  `{kind: cpu | cuda, name, threads}`.
- `size`: the OUTPUT image profiled; `requested_size` what was asked (they differ when
  the size is not `scale` x a whole LR size); `input_size`: the LR image;
  `graph_input_size`: what the tiler covers (LR, or the bicubic-upscaled image for
  BPP/MGBPv2).
- `patch` (graph input pixels), `overlap` (2 x halo when crop-stitched), `window`,
  `noise` (amplitude W), `tiles` (patches per image), `stitch` (crop | blend),
  `patch_mode` (auto: from the memory budget, as `run` does by default; fixed),
  `memory_budget_gib?` (patch auto), `batch` (the batch of the end-to-end run: the one
  asked for; else the best one found, or with patch auto `run`'s default, 1).
- `session_open_s`: time to open the session (engine build/deserialise included).
  `compile_s`: first calls of each shape beyond their steady time (model compiles on
  OpenVINO), kept out of every other time; `compiled_shapes?`: compiled models the run
  added (OpenVINO; null elsewhere).
- `latency_ms`: one patch at batch 1. `best_batch {batch, per_patch_ms, call_ms}` and
  `batches` (one row per batch timed): time per patch and per call.
- `end_to_end_s`: the whole image through the runtime (pre-upscale, tiling, noise
  maps, inference, window blending; no file I/O). `mpx_per_s`: output megapixels per
  second end to end; `patch_mpx_per_s`: output megapixels per second of patch inference
  alone at the best batch (no overlap recompute, no blending).
- `macs_per_px`, `flops_per_px`: counted on the graph at the patch size, per output
  pixel of one patch (MACs: Conv/ConvTranspose/MatMul/Gemm; FLOPs = 2 MACs + normalisation
  and elementwise, see `flops.py`); `flops`: the full count (`by_op_type`).
- `achieved_gflops`: patch FLOPs / time per patch at the best batch (what the hardware
  sustained); `achieved_gflops_end_to_end`: FLOPs of all tiles / end-to-end time.
- `peak?` `{gflops, source: measured | published, kind, fraction, ...}`: the CPU's matmul
  peak measured in this run in the graph's precision (fp32; OpenVINO's bf16 or int8 MatMul
  for those precisions on OpenVINO; `kind` says which; `before_gflops`, `after_gflops`:
  around the model timings) or the GPU's published peak; `fraction` = achieved_gflops / gflops.
- `peak_rss_mb`: the process's peak resident memory while the session opened, patches
  ran and the image was upscaled (interpreter and libraries included; `rss_before_mb` is
  the resident size when profiling began). `peak_device_mb?`: peak CUDA memory in use
  above the level before the session (null on CPU).
- `op_times?` `{source, runs, total_ms, ops: [{op_type, ms, share, calls}], patch, batch}`:
  time per run aggregated by op type, largest first.
- `titan_x` `{workload?, seconds?, device_seconds?, ratio?, method?, ...}`: the papers'
  Titan X row (`titanx.py`): `seconds` the paper's time, `device_seconds` this device's
  time for the same workload (`method`: "measured" or how it was extrapolated), `ratio`
  = device_seconds / seconds (> 1: slower than the Titan X; null where the paper prints
  no time), `size_matches`, `tiling_matches`, `titan_x_implied_tflops` (the paper's
  time with our FLOP count). `titan_x_all`: the same for every row of this model,
  from the same measurement (e.g. MGBPv2's 1000 x 1000 rows and 8K).
- `sweep?`: `[{precision, patch, latency_ms, mpx_per_s}]`, batch-1 patch timings per
  precision and patch edge (what `--plot` draws).
- `notes`: sentences about anything approximate in this profile.

`validate(doc)` checks a document against `PROFILE_SCHEMA` (a JSON Schema, draft 2020-12
subset) with a small built-in validator: type, properties, required, items, enum,
minimum. `jsonschema` validates it the same way where installed.
"""

from __future__ import annotations

from srexport.bundle import PRECISIONS
from srexport.errors import SrExportError

_NUM = {"type": "number"}
_NNUM = {"type": "number", "minimum": 0}
_INT = {"type": "integer", "minimum": 0}
_STR = {"type": "string"}
_SIZE = {
    "type": "object",
    "required": ["width", "height"],
    "properties": {"width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1}},
}
_STATS = {
    "type": "object",
    "required": ["median", "p10", "p90", "runs"],
    "properties": {"median": _NNUM, "p10": _NNUM, "p90": _NNUM, "runs": {"type": "integer", "minimum": 1}},
}
_BATCH_ROW = {
    "type": "object",
    "required": ["batch", "per_patch_ms", "call_ms"],
    "properties": {"batch": {"type": "integer", "minimum": 1}, "per_patch_ms": _STATS, "call_ms": _STATS},
}
_OP_COUNT = {
    "type": "object",
    "required": ["nodes", "macs", "flops"],
    "properties": {"nodes": _INT, "macs": _INT, "flops": _INT},
}

_TITAN = {
    "type": "object",
    "required": ["workload", "seconds", "device_seconds", "ratio", "method"],
    "properties": {
        "workload": {"type": ["string", "null"]},
        "description": _STR,
        "size": _SIZE,
        "seconds": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "precision": _STR,
        "device_seconds": {"type": ["number", "null"], "minimum": 0},
        "ratio": {"type": ["number", "null"], "minimum": 0},
        "method": {"type": ["string", "null"]},
        "size_matches": {"type": "boolean"},
        "tiling_matches": {"type": "boolean"},
        "source": _STR,
        "note": _STR,
        "titan_x_implied_tflops": _NNUM,
        "titan_x_implied_fraction_of_fp32_peak": _NNUM,
    },
}

PROFILE_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://sr-export/profile.schema.json",
    "title": "sr-export profile",
    "type": "object",
    "required": [
        "schema_version", "model", "variant", "scale", "precision", "backend", "device", "size",
        "input_size", "patch", "tiles", "batch", "latency_ms", "best_batch", "end_to_end_s",
        "mpx_per_s", "macs_per_px", "flops_per_px", "flops", "achieved_gflops", "peak",
        "peak_rss_mb", "peak_device_mb", "op_times", "titan_x", "notes",
    ],
    "properties": {
        "schema_version": {"type": "integer", "enum": [1]},
        "created": _STR,
        "tools": {"type": "object"},
        "bundle": _STR,
        "model": _STR,
        "variant": _STR,
        "scale": {"type": "integer", "minimum": 1},
        "params": _INT,
        "precision": {"type": "string", "enum": list(PRECISIONS)},
        "backend": _STR,
        "providers": {"type": "array", "items": _STR},
        "device": {
            "type": "object",
            "required": ["kind", "name", "threads"],
            "properties": {
                "kind": {"type": "string", "enum": ["cpu", "cuda"]},
                "name": _STR,
                "threads": {"type": "integer", "minimum": 1},
            },
        },
        "size": _SIZE,
        "requested_size": _SIZE,
        "input_size": _SIZE,
        "graph_input_size": _SIZE,
        "patch": _SIZE,
        "overlap": _INT,
        "window": _STR,
        "noise": _NNUM,
        "tiles": {"type": "integer", "minimum": 1},
        "stitch": {"type": "string", "enum": ["crop", "blend"]},
        "patch_mode": {"type": "string", "enum": ["auto", "fixed"]},
        "memory_budget_gib": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "batch": {"type": "integer", "minimum": 1},
        "session_open_s": _NNUM,
        "compile_s": _NNUM,
        "compiled_shapes": {"type": ["integer", "null"], "minimum": 0},
        "latency_ms": _STATS,
        "best_batch": {
            "type": "object",
            "required": ["batch", "per_patch_ms"],
            "properties": {"batch": {"type": "integer", "minimum": 1}, "per_patch_ms": _STATS, "call_ms": _STATS},
        },
        "batches": {"type": "array", "items": _BATCH_ROW},
        "end_to_end_s": _STATS,
        "mpx_per_s": {"type": "number", "exclusiveMinimum": 0},
        "patch_mpx_per_s": {"type": "number", "exclusiveMinimum": 0},
        "macs_per_px": _NNUM,
        "flops_per_px": _NNUM,
        "flops": {
            "type": "object",
            "required": ["input_shapes", "output_shape", "macs", "flops", "by_op_type"],
            "properties": {
                "input_shapes": {"type": "object"},
                "output_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}},
                "macs": _INT,
                "flops": _INT,
                "by_op_type": {"type": "object", "additionalProperties": _OP_COUNT},
            },
        },
        "achieved_gflops": _NNUM,
        "achieved_gflops_end_to_end": _NNUM,
        "peak": {
            "type": ["object", "null"],
            "required": ["gflops", "source", "kind", "fraction"],
            "properties": {
                "gflops": {"type": "number", "exclusiveMinimum": 0},
                "source": {"type": "string", "enum": ["measured", "published"]},
                "kind": _STR,
                "fraction": _NNUM,
            },
        },
        "peak_rss_mb": {"type": "number", "exclusiveMinimum": 0},
        "rss_before_mb": {"type": ["number", "null"]},
        "peak_device_mb": {"type": ["number", "null"], "minimum": 0},
        "op_times": {
            "type": ["object", "null"],
            "required": ["source", "runs", "ops"],
            "properties": {
                "source": _STR,
                "runs": {"type": "integer", "minimum": 1},
                "total_ms": _NNUM,
                "ops": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["op_type", "ms", "share"],
                        "properties": {"op_type": _STR, "ms": _NNUM, "share": _NNUM, "calls": _INT},
                    },
                },
            },
        },
        "titan_x": _TITAN,
        "titan_x_all": {"type": "array", "items": _TITAN},
        "sweep": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["precision", "patch", "latency_ms", "mpx_per_s"],
                "properties": {
                    "precision": _STR,
                    "patch": {"type": "integer", "minimum": 1},
                    "latency_ms": _STATS,
                    "mpx_per_s": _NNUM,
                },
            },
        },
        "notes": {"type": "array", "items": _STR},
    },
}


class SchemaError(SrExportError):
    """A document that does not follow the profile schema."""


_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value, name: str) -> bool:
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[name])


def errors(doc, schema: dict = PROFILE_SCHEMA, path: str = "$") -> list[str]:
    """Every violation of `schema` in `doc`, as 'path: problem' lines."""
    found: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is(doc, n) for n in names):
            return [f"{path}: expected {' or '.join(names)}, got {type(doc).__name__}"]
    if "enum" in schema and doc not in schema["enum"]:
        found.append(f"{path}: {doc!r} is not one of {schema['enum']}")
    if _is(doc, "number"):
        if "minimum" in schema and doc < schema["minimum"]:
            found.append(f"{path}: {doc} < minimum {schema['minimum']}")
        if "exclusiveMinimum" in schema and doc <= schema["exclusiveMinimum"]:
            found.append(f"{path}: {doc} <= exclusive minimum {schema['exclusiveMinimum']}")
        if isinstance(doc, float) and doc != doc:
            found.append(f"{path}: NaN")
    if isinstance(doc, dict):
        for key in schema.get("required", []):
            if key not in doc:
                found.append(f"{path}: missing '{key}'")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, value in doc.items():
            if key in properties:
                found.extend(errors(value, properties[key], f"{path}.{key}"))
            elif isinstance(extra, dict):
                found.extend(errors(value, extra, f"{path}.{key}"))
            elif extra is False:
                found.append(f"{path}: unexpected '{key}'")
    if isinstance(doc, list) and "items" in schema:
        for index, item in enumerate(doc):
            found.extend(errors(item, schema["items"], f"{path}[{index}]"))
    return found


def validate(doc, schema: dict = PROFILE_SCHEMA) -> None:
    """Raise `SchemaError` listing every violation; return None for a valid document."""
    problems = errors(doc, schema)
    if problems:
        raise SchemaError("profile does not follow the schema:\n  " + "\n  ".join(problems))
