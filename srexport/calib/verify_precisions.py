"""`sr-export verify` for reduced-precision graphs: recompute their accuracy and compare it
with what the manifest recorded at build time.

The build recorded, in each reduced precision's notes["verify"], the PSNR of that graph's
output against the FP32 graph's on deterministic synthetic pictures
(`srexport.calib.measure.verify_inputs`), both run through the tiled runtime on ONNX Runtime.
Here the same pictures go through the bundle's own graphs again.

Tolerance: the recomputed figure must be at least the recorded one minus
VERIFY_TOLERANCE_DB (1 dB). On the machine that built the bundle the figure is
reproduced exactly (same inputs, same kernels); another CPU may pick other kernels (FMA
orders, AVX2 vs AVX-512 integer paths, whose results agree because the INT8 weights use
7-bit reduce_range and never saturate) and move the figure by hundredths of a dB; a wrong,
swapped or damaged graph costs tens of dB, and a non-finite output fails outright. A
better figure than recorded passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from srexport.bundle import Bundle
from srexport.calib import accuracy as acc

FALLBACK_FLOOR_DB = {"fp16": 45.0, "bf16": 40.0, "int8": 30.0}


@dataclass(frozen=True)
class VerifyResult:
    """One line of `sr-export verify`: a precision's figure against its limit."""

    precision: str
    metric: str
    value: float
    limit: str
    ok: bool

    def line(self) -> str:
        return f"{self.precision}: {self.metric} {self.value:.4g} ({self.limit})"


def recompute(bundle: Bundle, precision: str) -> tuple[float, str]:
    """Mean PSNR (dB) of `precision`'s output vs the FP32 graph's on the verification
    pictures, and how it was computed ("" for a graph of the bundle run on ONNX Runtime;
    for bf16 OpenVINO where the CPU has BF16, else the emulation `srexport.calib.bf16`)."""
    from srexport.calib.measure import upscaler_for, verify_inputs

    images = verify_inputs(bundle.manifest.scale)
    reference = upscaler_for(bundle, "fp32")
    ref_out = [acc.upscale_rgb(reference, i.lr) for i in images]
    if precision == "bf16":
        from srexport.calib.bf16 import bf16_upscaler

        with bf16_upscaler(bundle) as (test, method, _):
            measured, _ = acc.compare(test, images, reference_outputs=ref_out)
        how = "openvino bf16" if method == "openvino" else "emulated: no BF16 CPU with OpenVINO here"
        return measured.mean_psnr_vs_reference, how
    measured, _ = acc.compare(upscaler_for(bundle, precision), images, reference_outputs=ref_out)
    return measured.mean_psnr_vs_reference, ""


def verify_precision(bundle: Bundle, precision: str) -> VerifyResult:
    """Check one reduced-precision graph of `bundle` against its recorded accuracy."""
    from srexport.calib.measure import VERIFY_TOLERANCE_DB

    info = bundle.manifest.precisions[precision]
    metric = "PSNR vs fp32 on the verification pictures (dB)"
    how = ""
    if bundle.manifest.task != "sr":
        from srexport.calib.measure import direct_inputs, direct_psnr

        m = bundle.manifest
        value = direct_psnr(bundle.graph_path("fp32"), bundle.graph_path(precision),
                            direct_inputs(m.shape_rules, m.noise_inputs))
    else:
        value, how = recompute(bundle, precision)
        if how:
            metric = f"PSNR vs fp32 on the verification pictures, {how} (dB)"
    shown = min(value, acc.PSNR_CAP_DB) if not math.isnan(value) else value
    note = info.verify_note()
    recorded = note.psnr_vs_fp32_db if note is not None else None
    if recorded is None:
        floor = FALLBACK_FLOOR_DB.get(precision, 30.0)
        return VerifyResult(precision, metric, shown, f">= {floor:g} (no figure recorded at build)",
                            math.isfinite(value) and value >= floor)
    floor = float(recorded) - VERIFY_TOLERANCE_DB
    limit = f">= {floor:.2f}: recorded {float(recorded):.2f} - {VERIFY_TOLERANCE_DB:g}"
    ok = not math.isnan(value) and shown >= floor
    return VerifyResult(precision, metric, shown, limit, ok)
