"""BF16 accuracy: what the FP32 graph loses when OpenVINO computes it in bfloat16.

BF16 has no graph of its own: the OpenVINO backend compiles `model.fp32.onnx` with
INFERENCE_PRECISION_HINT bf16 (AVX512-BF16 / AMX CPUs). Its manifest entry therefore
points at the FP32 file and records how it runs and what it measured:

    "bf16": {"file": "model.fp32.onnx", "psnr_vs_fp32_db": ..., "psnr_y_db": ...,
             "notes": {"runs_on": "openvino", "backend": "openvino" | "onnxruntime",
                       "inference_precision": "bf16", "measured_with": ...,
                       "psnr_y_loss_vs_fp32_db": ..., "gate": ...}}

"runs_on" is the backend that runs BF16 for users; "backend" the one that computed the
figures (ONNX Runtime for the emulation).

Measurement (the same protocol as `srexport.calib.measure.measure` for FP16/INT8): every
accuracy image goes through the real tiled runtime (`Upscaler`, the bundle's patch and
overlap, noise W = 0) once with the FP32 graph on ONNX Runtime (the reference) and once in
BF16; PSNR vs FP32 (outputs clamped to [0, 1], peak 1) and, where the images have ground
truth, PSNR-Y and its loss against the FP32 figure.

How BF16 is computed (`method`):
- "openvino": the OpenVINO backend in bf16 (needs a CPU with BF16; the figure users get);
- "emulated": where no such CPU is at hand, ONNX Runtime runs a copy of the FP32 graph
  in which every floating-point activation (graph inputs and every computing node's
  output) and every Conv/ConvTranspose/MatMul/Gemm weight is rounded to bfloat16
  (round to nearest even), products accumulated in float32 (biases stay float32). This
  is bfloat16 storage everywhere, as AMX/AVX512-BF16 kernels compute; OpenVINO keeps a
  few tensors in float32, so the emulation errs towards a larger loss (an upper bound
  for gating, not the exact figure). The notes say which method produced the numbers.
- "auto": "openvino" where available, else "emulated".
"""

from __future__ import annotations

import dataclasses
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from srexport.bundle import Bundle, PrecisionInfo
from srexport.calib import accuracy as acc
from srexport.calib.measure import psnr_y_notes, upscaler_for, verify_note

GATE_DB = 0.05  # largest PSNR-Y loss vs FP32 the issue accepts for BF16
METHODS = ("auto", "openvino", "emulated")
WEIGHTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
# ops that only move or select values: their output is bfloat16-exact when their input is
MOVING_OPS = {
    "Constant", "Identity", "Reshape", "Transpose", "Slice", "Concat", "Split", "Squeeze",
    "Unsqueeze", "Flatten", "DepthToSpace", "SpaceToDepth", "Pad", "Gather", "Expand", "Tile",
    "Relu", "MaxPool", "Shape", "Cast",
}
_SUFFIX = "__srx_bf16"


# -- the emulation graph ------------------------------------------------------------------
def round_bf16(values: np.ndarray) -> np.ndarray:
    """float32 -> the nearest bfloat16 value (ties to even), returned as float32."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = (bits + (((bits >> 16) & 1) + np.uint32(0x7FFF))) & np.uint32(0xFFFF0000)
    finite = np.isfinite(values)
    return np.where(finite, rounded.view(np.float32), values).astype(np.float32)


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)
    return {v.name for v in values if v.type.tensor_type.elem_type == TensorProto.FLOAT}


def emulate_bf16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of an FP32 graph that computes what bfloat16 storage computes (see module
    docstring): inputs and computing nodes' outputs pass through Cast(bf16) -> Cast(f32),
    weights of WEIGHTED_OPS are rounded to bfloat16 in place."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    floats = _float_tensors(model)
    initializers = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in initializers:
            init = initializers[node.input[1]]
            if init.data_type == TensorProto.FLOAT:
                init.CopyFrom(numpy_helper.from_array(round_bf16(numpy_helper.to_array(init)), init.name))

    def rounding(source: str, target: str, tag: str) -> list[onnx.NodeProto]:
        middle = target + _SUFFIX + "_" + tag
        return [
            helper.make_node("Cast", [source], [middle], to=TensorProto.BFLOAT16, name=middle + "_to"),
            helper.make_node("Cast", [middle], [target], to=TensorProto.FLOAT, name=middle + "_back"),
        ]

    nodes: list[onnx.NodeProto] = []
    for inp in graph.input:
        if inp.name in floats and inp.name not in initializers:
            rounded = inp.name + _SUFFIX
            nodes += rounding(inp.name, rounded, "in")
            for node in graph.node:
                for i, name in enumerate(node.input):
                    if name == inp.name:
                        node.input[i] = rounded
    for node in graph.node:
        nodes.append(node)
        if node.op_type in MOVING_OPS:
            continue
        for i, out in enumerate(node.output):
            if out and out in floats:
                raw = out + _SUFFIX + "_raw"
                node.output[i] = raw
                nodes += rounding(raw, out, "out")
    del graph.node[:]
    graph.node.extend(nodes)
    return model


# -- measuring ----------------------------------------------------------------------------
def bf16_available() -> bool:
    """OpenVINO is installed and this CPU computes bfloat16 (AVX512-BF16 or AMX)."""
    from srexport.runtime.backends.selection import available_backends, cpu_capabilities

    return "BF16" in cpu_capabilities(available_backends())


def resolve_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"bf16 method must be one of {', '.join(METHODS)}, got '{method}'")
    if method == "auto":
        return "openvino" if bf16_available() else "emulated"
    return method


EMULATED = ("emulated on ONNX Runtime: activations and conv weights rounded to bfloat16 (RNE), "
            "float32 accumulation (no BF16 CPU at hand; errs towards a larger loss)")


@contextmanager
def bf16_upscaler(bundle: Bundle, method: str = "auto", threads: int = 0) -> Iterator[tuple[object, str, str]]:
    """(upscaler, method, how) computing `bundle` in BF16 by `method` (see the module
    docstring); the emulation graph lives in a temporary folder for the `with` block."""
    from srexport.runtime.upscaler import Upscaler

    method = resolve_method(method)
    fp32_file = bundle.manifest.precisions["fp32"].file
    if method == "openvino":
        from srexport.runtime.backends.openvino import OvSession, cpu_name

        yield Upscaler(bundle, OvSession(bundle, "bf16", threads)), method, f"openvino {_ov_version()} bf16 on {cpu_name()}"
        return
    with tempfile.TemporaryDirectory(prefix="srexport-bf16-") as tmp:
        emulated = emulate_bf16(onnx.load(str(bundle.root / fp32_file)))
        onnx.save(emulated, str(Path(tmp) / "model.bf16-emulated.onnx"))
        manifest = dataclasses.replace(
            bundle.manifest, precisions={"fp32": PrecisionInfo(file="model.bf16-emulated.onnx")}
        )
        yield upscaler_for(Bundle(Path(tmp), manifest), "fp32", threads), method, EMULATED


def measure_bf16(
    bundle: Bundle,
    images: Sequence[acc.EvalImage],
    *,
    method: str = "auto",
    reference_outputs: list[np.ndarray] | None = None,
    reference_measurement: acc.Measurement | None = None,
    description: str = "",
    threads: int = 0,
    verify: Sequence[acc.EvalImage] = (),
    verify_outputs: list[np.ndarray] | None = None,
) -> PrecisionInfo:
    """The manifest entry of BF16 for `bundle` (a loaded bundle, or the in-memory one of
    the build), measured on `images` against the FP32 graph on ONNX Runtime.

    Pass the FP32 reference outputs (and their Measurement, for the PSNR-Y of FP32) when the
    caller already has them (`srexport.calib.measure.Reference`) to skip the FP32 pass.
    `verify`: the build's verification pictures (`srexport.calib.measure.verify_inputs`,
    with their FP32 outputs), whose figure `sr-export verify` recomputes, recorded in
    notes["verify"].
    """
    images = list(images)
    if reference_outputs is None:
        reference_measurement, reference_outputs = acc.compare(upscaler_for(bundle, "fp32", threads), images)
    fp32_file = bundle.manifest.precisions["fp32"].file
    with bf16_upscaler(bundle, method, threads) as (upscaler, method, how):
        m, _ = acc.compare(upscaler, images, reference_outputs=reference_outputs)
        checked = None
        if verify:
            checked, _ = acc.compare(upscaler, list(verify), reference_outputs=verify_outputs)
    notes = {
        "runs_on": "openvino",
        "backend": "openvino" if method == "openvino" else "onnxruntime",
        "inference_precision": "bf16",
        "graph": f"{fp32_file} compiled with INFERENCE_PRECISION_HINT bf16 (AVX512-BF16 / AMX CPUs)",
        "measured_with": how,
        "method": method,
        "accuracy_images": description or f"{len(images)} images",
        "psnr_vs_fp32_per_image_db": {n: acc.round_db(x) for n, x in zip(m.names, m.psnr_vs_reference)},
    }
    if checked is not None:
        notes["verify"] = verify_note(checked, method).to_json()
    psnr_y = None
    if m.psnr_y:
        psnr_y, loss, y_notes = psnr_y_notes(m, reference_measurement, loss_digits=4)
        notes.update(y_notes)
        notes["gate"] = {"psnr_y_loss_vs_fp32_db_max": GATE_DB, "met": loss is not None and loss <= GATE_DB}
    return PrecisionInfo(file=fp32_file, psnr_vs_fp32_db=acc.round_db(m.mean_psnr_vs_reference), psnr_y_db=psnr_y,
                         notes=notes)


def _ov_version() -> str:
    from srexport.lazy import import_openvino

    return import_openvino().__version__.split("-")[0]
