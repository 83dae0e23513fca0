"""`build_precisions`: the FP16 and INT8 graphs of a bundle, with their measured accuracy
(and BF16's, which has no graph of its own: OpenVINO runs the FP32 graph in bf16).

Called by `srexport.export.build.export_bundle` inside the bundle's temporary directory,
after the FP32 graph is written and verified and before the manifest is written; every
file written here is hashed into the manifest.

What is measured, and on what (all recorded in each PrecisionInfo's notes):

- `psnr_vs_fp32_db`: mean per-image PSNR (outputs clamped to [0, 1], peak 1) of the
  graph's output against the FP32 graph's, both through the real tiled runtime
  (`Upscaler` + ONNX Runtime session, the bundle's patch and overlap, noise W = 0) on the
  "accuracy images": the LR of the `--eval-dir` images if given, else of the calibration
  folder's images, else deterministic synthetic pictures.
- `psnr_y_db` (with `--eval-dir`): mean PSNR-Y against the HR images (evaluation protocol
  of `srexport.calib.accuracy`); notes hold the FP32 graph's figure and the loss.
- notes["verify"]: PSNR vs FP32 on deterministic synthetic inputs (`verify_inputs`) that
  `sr-export verify` recomputes from the bundle alone.

The jobs live beside: the runtime measurements in `srexport.calib.measure`, the FP16 graph in
`srexport.calib.fp16_build`, the INT8 exclusion search in `srexport.calib.int8_select`.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import onnx

from srexport.bundle import PrecisionInfo, VerifyNote
from srexport.calib import accuracy as acc
from srexport.calib.fp16_build import build_fp16
from srexport.calib.int8_select import build_int8
from srexport.calib.measure import (
    VERIFY_TOLERANCE_DB,
    AccuracySet,
    Reference,
    Warn,
    accuracy_set,
    direct_inputs,
    direct_psnr,
    is_image_graph,
    measure,
    runtime_bundle,
    verify_inputs,
)
from srexport.calib.options import PrecisionOptions
from srexport.calib.patches import CalibrationError, sample_patches


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _torch_error(model, graph: Path) -> float | None:
    """Largest deviation from the PyTorch model on the FP32 graph's verification sizes."""
    from srexport.export.parity import check_parity

    worst = max(c.max_abs_error for c in check_parity(model, graph))
    return float(worst) if math.isfinite(worst) else None


# -- entry point ----------------------------------------------------------------------------
def build_precisions(
    model, bundle_dir: Path, fp32_file: str, options: PrecisionOptions, warn: Warn | None = None,
    quantizable: onnx.ModelProto | None = None,
) -> dict[str, PrecisionInfo]:
    """Write model.fp16.onnx / model.int8.onnx (+ model.int8.tensorrt.onnx) into
    `bundle_dir` as `options` asks and return their PrecisionInfo (see the module docstring).
    `quantizable`: the graph INT8 quantizes where it is not the FP32 file's
    (`srexport.export.cpu_rewrites.FLOAT_ONLY_PASSES`); accuracy is still measured against
    the FP32 file."""
    warn = warn or _stderr
    root = Path(bundle_dir)
    fp32_path = root / fp32_file
    model = model.eval()
    calib = None
    if options.calib_dir is not None:
        calib = sample_patches(options.calib_dir, model, options.calib_patches, options.seed, warn=warn)
    accuracy = accuracy_set(model, options, warn)
    results: dict[str, PrecisionInfo] = {}
    files = {"fp32": fp32_file}
    notes: dict[str, dict] = {}
    if options.fp16:
        files["fp16"], notes["fp16"] = build_fp16(model, root, fp32_path, calib, options.seed)
    if options.int8:
        files["int8"], notes["int8"] = build_int8(model, root, fp32_path, calib, options, warn, quantizable)
    if not is_image_graph(model, fp32_path):
        if options.bf16:
            raise CalibrationError("--bf16 is measured through the tiled runtime, for networks that output an "
                                   "upscaled image; this graph does not")
        inputs = direct_inputs(model.shape_rules(), model.noise_inputs)
        for precision in ("fp16", "int8"):
            if precision in files:
                value = acc.round_db(direct_psnr(fp32_path, root / files[precision], inputs))
                verify = VerifyNote(f"{len(inputs)} synthetic whole inputs, peak = FP32 output range", value,
                                    VERIFY_TOLERANCE_DB)
                results[precision] = PrecisionInfo(files[precision], psnr_vs_fp32_db=value,
                                                   notes={**notes[precision], "verify": verify.to_json(),
                                                          "accuracy_images": verify.inputs})
        return results
    bundle = runtime_bundle(model, root, files)
    reference = Reference(bundle, accuracy.images, verify_inputs(int(model.scale)))
    for precision in ("fp16", "int8"):
        if precision not in files:
            continue
        info, measured = measure(reference, precision, accuracy)
        info.file = files[precision]
        if precision == "fp16":  # INT8's error on uniform noise (out of calibration range) says little
            info.max_abs_error_vs_torch = _torch_error(model, root / files[precision])
        info.notes = {**notes[precision], **measured}
        if info.psnr_vs_fp32_db is None:
            warn(f"{precision}: the graph's output is not finite on the accuracy images")
        results[precision] = info
    if options.bf16:
        results["bf16"] = _bf16_entry(reference, accuracy, warn)
    return results


def _bf16_entry(reference: Reference, accuracy: AccuracySet, warn: Warn) -> PrecisionInfo:
    """BF16 has no file of its own (OpenVINO compiles the FP32 graph in bf16): measure it
    on the same images and verification pictures as FP16/INT8, by OpenVINO where the CPU
    has BF16, else by emulation (`srexport.calib.bf16`; the notes say which)."""
    from srexport.calib.bf16 import GATE_DB, measure_bf16

    info = measure_bf16(
        reference.bundle, reference.images, reference_outputs=reference.outputs(),
        reference_measurement=reference.measurement, description=accuracy.description,
        verify=reference.verify, verify_outputs=reference.verify_outputs(),
    )
    gate = info.notes.get("gate")
    if gate and not gate["met"]:
        warn(f"bf16: PSNR-Y loss {info.notes['psnr_y_loss_vs_fp32_db']} dB vs FP32 exceeds {GATE_DB} dB")
    return info
