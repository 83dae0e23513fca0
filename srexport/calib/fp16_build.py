"""The FP16 graph of a bundle: float16 everywhere the probes show no overflow
(`srexport.calib.fp16.convert_fp16`), and what a strongly typed FP16 engine loses, measured
on an emulation that really rounds every float16 tensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from srexport.calib import accuracy as acc
from srexport.calib.patches import CalibrationSet, synthetic_set

FP16_FILE = "model.fp16.onnx"
FP16_PROBES = 16


def _probe_inputs(model, calib: CalibrationSet | None, seed: int) -> tuple[list[dict], list[dict], str]:
    """(picture probes, stress probes, description) for the FP16 overflow search."""
    from srexport.calib.fp16 import stress_inputs

    if calib is not None:
        probes = calib.inputs[:FP16_PROBES]
        size = calib.patch[0]
        source = f"{len(probes)} calibration patches"
    else:
        synthetic = synthetic_set(model, FP16_PROBES // 2, seed)
        probes = synthetic.inputs
        size = synthetic.patch[0]
        source = f"{len(probes)} synthetic patches (pictures and uniform noise)"
    stress = stress_inputs(model, size, seed)
    return probes, stress, f"{source} + {len(stress)} stress inputs ({size}x{size})"


def build_fp16(model, root: Path, fp32_path: Path, calib: CalibrationSet | None, seed: int) -> tuple[str, dict]:
    from srexport.calib.fp16 import convert_fp16, emulate_fp16
    from srexport.export.onnx_export import save_onnx
    from srexport.ort import inference_session

    fp32 = onnx.load(str(fp32_path))
    pictures, stress, description = _probe_inputs(model, calib, seed)
    half, report = convert_fp16(fp32, pictures + stress)
    save_onnx(half, root / FP16_FILE)
    notes = report.notes()
    notes["probes"] = description
    # what a strongly typed FP16 engine computes (every float16 tensor really rounded),
    # which ONNX Runtime CPU's upcasting hides: PSNR vs FP32 on the probes' pictures
    emulated = inference_session(emulate_fp16(fp32, report.blocked))
    reference = inference_session(fp32)
    names = [i.name for i in reference.get_inputs()]
    figures = []
    for probe in pictures:
        feed = {n: probe[n] for n in names}
        a = reference.run(None, feed)[0]
        b = emulated.run(None, feed)[0]
        figures.append(acc.psnr(np.clip(a, 0, 1), np.clip(b, 0, 1)))
    notes["psnr_vs_fp32_float16_storage_db"] = acc.round_db(acc.mean_finite(figures))
    return FP16_FILE, notes
