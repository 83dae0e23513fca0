"""Measuring graphs the way the runtime runs them: the in-memory bundle of a build, the
ONNX Runtime upscaler, the accuracy and verification pictures, the FP32 reference outputs
(computed once), and the accuracy notes every reduced precision records.

`sr-export verify` (`srexport.calib.verify_precisions`) recomputes notes["verify"] with the same
pictures (`verify_inputs`) and tolerance (VERIFY_TOLERANCE_DB).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from srexport.bundle import Bundle, Manifest, PrecisionInfo, VerifyNote
from srexport.calib import accuracy as acc
from srexport.calib.options import PrecisionOptions
from srexport.calib.patches import synthetic_image

VERIFY_IMAGES = 2
VERIFY_LR = (40, 48)  # LR height, width of each verification picture
VERIFY_TOLERANCE_DB = 1.0
VERIFY_DESCRIPTION = f"{VERIFY_IMAGES} synthetic {VERIFY_LR[0]}x{VERIFY_LR[1]} LR pictures (seeds 1000..)"
SYNTHETIC_IMAGES = 3
SYNTHETIC_LR = (64, 72)

Warn = Callable[[str], None]


# -- running graphs the way the runtime does -------------------------------------------------
def runtime_bundle(model, root: Path, files: dict[str, str]) -> Bundle:
    """An in-memory Bundle around graphs in `root` (the manifest is not written yet), so
    that measurements go through the real `Upscaler` and ONNX Runtime backend."""
    from srexport.export.model_bundle import recommended_overlap
    from srexport.export.onnx_export import OUTPUT, input_names

    patch = model.recommended_patch()
    manifest = Manifest(
        model=type(model).__name__, variant="", scale=int(model.scale), task="sr",
        input_kind=model.input_kind, params=0, inputs=input_names(model),
        noise_inputs=list(model.noise_inputs), outputs=[OUTPUT], shape_rules=model.shape_rules(),
        patch=patch, overlap=recommended_overlap(model, patch),
        precisions={k: PrecisionInfo(file=v) for k, v in files.items()},
    )
    return Bundle(Path(root), manifest)


def upscaler_for(bundle: Bundle, precision: str, threads: int = 0):
    """The tiled runtime on ONNX Runtime for one graph of `bundle` (the reference path of
    every accuracy figure)."""
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.upscaler import Upscaler

    return Upscaler(bundle, OrtSession(bundle, precision, threads))


def verify_inputs(scale: int) -> list[acc.EvalImage]:
    """The deterministic pictures `sr-export verify` recomputes PSNR vs FP32 on."""
    return [
        acc.EvalImage(f"synthetic{i}", synthetic_image(*VERIFY_LR, seed=1000 + i), None)
        for i in range(VERIFY_IMAGES)
    ]


def is_image_graph(model, fp32_path: Path) -> bool:
    """Does the graph map an image to an RGB image of output_scale x its size (an SR
    network, measured through the tiled runtime), or to something else (a critic's score
    map, measured on whole inputs by `direct_psnr`)?"""
    from srexport.ort import inference_session

    rules = model.shape_rules()
    size = rules.legal_at_least(max(rules.min_size, 16))
    inputs = [t.numpy() for t in model.example_inputs(1, size, size)]
    session = inference_session(fp32_path)
    out = session.run(None, dict(zip([i.name for i in session.get_inputs()], inputs)))[0]
    s = rules.output_scale
    return out.ndim == 4 and out.shape[1] == 3 and out.shape[2:] == (s * size, s * size)


def direct_inputs(rules, noise_inputs, count: int = VERIFY_IMAGES) -> list[dict[str, np.ndarray]]:
    """Deterministic whole inputs (synthetic pictures at a legal size near 64, zero noise)
    for graphs whose output is not an image."""
    size = rules.legal_at_least(max(rules.min_size, 64))
    inputs = []
    for i in range(count):
        image = synthetic_image(size, size, seed=2000 + i).transpose(2, 0, 1)[None]
        feed = {"image": np.ascontiguousarray(image, dtype=np.float32)}
        feed.update({n.name: np.zeros(n.shape(1, size, size), np.float32) for n in noise_inputs})
        inputs.append(feed)
    return inputs


def direct_psnr(reference_path: Path, test_path: Path, inputs: list[dict[str, np.ndarray]]) -> float:
    """PSNR of a graph's raw outputs vs the reference graph's, peak = the reference
    outputs' value range (for outputs that are not images)."""
    from srexport.ort import inference_session

    ref, test = inference_session(reference_path), inference_session(test_path)
    names = [i.name for i in ref.get_inputs()]
    a = np.concatenate([ref.run(None, {n: x[n] for n in names})[0].ravel() for x in inputs])
    b = np.concatenate([test.run(None, {n: x[n] for n in names})[0].ravel() for x in inputs])
    peak = float(a.max() - a.min()) or 1.0
    return acc.psnr(a, b, peak=peak)


# -- measurements -------------------------------------------------------------------------------
@dataclass
class AccuracySet:
    images: list[acc.EvalImage]
    description: str
    has_truth: bool


def accuracy_set(model, options: PrecisionOptions, warn: Warn) -> AccuracySet:
    scale = int(model.scale)
    if options.eval_dir is not None:
        images = acc.eval_images(options.eval_dir, scale, warn)
        return AccuracySet(images, f"--eval-dir {options.eval_dir} ({len(images)} images, LR = PIL bicubic /{scale})", True)
    if options.calib_dir is not None:  # unreadable files were reported by the sampling already
        images = acc.eval_images(options.calib_dir, scale, lambda message: None)
        stripped = [acc.EvalImage(i.name, i.lr, None) for i in images]
        return AccuracySet(stripped, f"calibration images {options.calib_dir} ({len(images)}, LR = PIL bicubic /{scale})",
                           False)
    images = [acc.EvalImage(f"synthetic{i}", synthetic_image(*SYNTHETIC_LR, seed=i), None) for i in range(SYNTHETIC_IMAGES)]
    return AccuracySet(images, f"{len(images)} synthetic {SYNTHETIC_LR[0]}x{SYNTHETIC_LR[1]} LR pictures", False)


class Reference:
    """FP32 outputs through the runtime, computed once and shared by every precision."""

    def __init__(self, bundle: Bundle, images: list[acc.EvalImage], verify: list[acc.EvalImage]):
        self.bundle = bundle
        self.images = images
        self.verify = verify
        self._outputs: list[np.ndarray] | None = None
        self._verify_outputs: list[np.ndarray] | None = None
        self.measurement: acc.Measurement | None = None

    def outputs(self) -> list[np.ndarray]:
        if self._outputs is None:
            self.measurement, self._outputs = acc.compare(upscaler_for(self.bundle, "fp32"), self.images)
        return self._outputs

    def verify_outputs(self) -> list[np.ndarray]:
        if self._verify_outputs is None:
            up = upscaler_for(self.bundle, "fp32")
            self._verify_outputs = [acc.upscale_rgb(up, i.lr) for i in self.verify]
        return self._verify_outputs


def verify_note(measured: acc.Measurement, method: str | None = None) -> VerifyNote:
    """notes["verify"] of a precision: its PSNR vs FP32 on `verify_inputs`, which
    `sr-export verify` recomputes."""
    return VerifyNote(VERIFY_DESCRIPTION, acc.round_db(measured.mean_psnr_vs_reference), VERIFY_TOLERANCE_DB, method)


def psnr_y_notes(measured: acc.Measurement, fp32: acc.Measurement | None, loss_digits: int = 3
                 ) -> tuple[float | None, float | None, dict]:
    """(PSNR-Y, its loss vs FP32, notes) of a graph measured on images with ground truth:
    the notes hold FP32's PSNR-Y (from `fp32`), the rounded loss and the per-image figures."""
    ref_y = fp32.mean_psnr_y if fp32 else None
    loss = ref_y - measured.mean_psnr_y if ref_y is not None and measured.mean_psnr_y is not None else None
    notes = {
        "psnr_y_fp32_db": acc.round_db(ref_y),
        "psnr_y_loss_vs_fp32_db": acc.round_db(loss, loss_digits),
        "psnr_y_per_image_db": {n: acc.round_db(x) for n, x in zip(measured.names, measured.psnr_y)},
    }
    return acc.round_db(measured.mean_psnr_y), loss, notes


def measure(reference: Reference, precision: str, accuracy: AccuracySet) -> tuple[PrecisionInfo, dict]:
    """Accuracy figures of one graph of the (in-memory) bundle against FP32."""
    up = upscaler_for(reference.bundle, precision)
    m, _ = acc.compare(up, reference.images, reference_outputs=reference.outputs())
    v, _ = acc.compare(up, reference.verify, reference_outputs=reference.verify_outputs())
    psnr = acc.round_db(m.mean_psnr_vs_reference)
    notes = {
        "accuracy_images": accuracy.description,
        "psnr_vs_fp32_per_image_db": {n: acc.round_db(x) for n, x in zip(m.names, m.psnr_vs_reference)},
        "verify": verify_note(v).to_json(),
    }
    psnr_y = None
    if accuracy.has_truth:
        psnr_y, _, y_notes = psnr_y_notes(m, reference.measurement)
        notes.update(y_notes)
    info = PrecisionInfo(file="", psnr_vs_fp32_db=psnr, psnr_y_db=psnr_y, notes=notes)
    return info, notes
