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

INT8 exclusions are chosen by measurement (`choose_exclusions`): candidates (all INT8; the
image-space first/last layers in FP32; those plus whole modules of the network in FP32)
are quantized from one calibration and scored on held-out patches of the calibration
folder (seed + 1) against their ground truth. The target is the issue's budget, PSNR-Y
loss vs FP32 <= SELECT_LOSS_DB = 0.2 dB (PSNR vs FP32 >= SELECT_PSNR_DB where the folder
gives no ground truth); among candidates meeting it the fastest (measured CPU time) wins,
the more accurate one when their costs are within SPEED_TIE (5%) of the graph's MACs. The
cost is deterministic: the multiply-accumulates a candidate leaves in floating point, counted
on the FP32 graph at the patch size the runtime tiles with (an INT8 convolution is cheaper
than a float one on every CPU and GPU backend, so fewer float MACs is faster). A measured
time would make two builds with the same inputs and seed choose differently.
The evaluation folder never takes part in the choice.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from srexport.bundle import Bundle, Manifest, PrecisionInfo
from srexport.calib import accuracy as acc
from srexport.calib.options import CALIB_METHODS, PrecisionOptions
from srexport.profiling.flops import node_macs
from srexport.calib.patches import CalibrationError, CalibrationSet, sample_patches, synthetic_image, synthetic_set

FP16_FILE = "model.fp16.onnx"
INT8_FILE = "model.int8.onnx"
INT8_TRT_FILE = "model.int8.tensorrt.onnx"
SELECT_PATCHES = 16
SELECT_LOSS_DB = 0.2  # the budget for INT8, here on held-out calibration patches
SELECT_PSNR_DB = 40.0
SPEED_TIE = 0.05  # candidates whose float MACs differ by < 5% of all MACs count as equally fast
FP16_PROBES = 16
VERIFY_IMAGES = 2
VERIFY_LR = (40, 48)  # LR height, width of each verification picture
VERIFY_TOLERANCE_DB = 1.0
VERIFY_DESCRIPTION = f"{VERIFY_IMAGES} synthetic {VERIFY_LR[0]}x{VERIFY_LR[1]} LR pictures (seeds 1000..)"
SYNTHETIC_IMAGES = 3
SYNTHETIC_LR = (64, 72)

Warn = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# -- running graphs the way the runtime does -------------------------------------------------
def runtime_bundle(model, root: Path, files: dict[str, str]) -> Bundle:
    """An in-memory Bundle around graphs in `root` (the manifest is not written yet), so
    that measurements go through the real `Upscaler` and ONNX Runtime backend."""
    from srexport.export.build import recommended_overlap
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
    from srexport.export.verify import make_session

    rules = model.shape_rules()
    size = rules.legal_at_least(max(rules.min_size, 16))
    inputs = [t.numpy() for t in model.example_inputs(1, size, size)]
    session = make_session(fp32_path)
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
    from srexport.export.verify import make_session

    ref, test = make_session(reference_path), make_session(test_path)
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


def verify_note(measured: acc.Measurement) -> dict:
    """notes["verify"] of a precision: its PSNR vs FP32 on `verify_inputs`, which
    `sr-export verify` recomputes."""
    return {"inputs": VERIFY_DESCRIPTION, "psnr_vs_fp32_db": acc.round_db(measured.mean_psnr_vs_reference),
            "tolerance_db": VERIFY_TOLERANCE_DB}


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
        "verify": verify_note(v),
    }
    psnr_y = None
    if accuracy.has_truth:
        psnr_y, _, y_notes = psnr_y_notes(m, reference.measurement)
        notes.update(y_notes)
    info = PrecisionInfo(file="", psnr_vs_fp32_db=psnr, psnr_y_db=psnr_y, notes=notes)
    return info, notes


# -- FP16 ---------------------------------------------------------------------------------------
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
    from srexport.export.verify import make_session

    fp32 = onnx.load(str(fp32_path))
    pictures, stress, description = _probe_inputs(model, calib, seed)
    half, report = convert_fp16(fp32, pictures + stress)
    save_onnx(half, root / FP16_FILE)
    notes = report.notes()
    notes["probes"] = description
    # what a strongly typed FP16 engine computes (every float16 tensor really rounded),
    # which ONNX Runtime CPU's upcasting hides: PSNR vs FP32 on the probes' pictures
    emulated = make_session(emulate_fp16(fp32, report.blocked))
    reference = make_session(fp32)
    names = [i.name for i in reference.get_inputs()]
    figures = []
    for probe in pictures:
        feed = {n: probe[n] for n in names}
        a = reference.run(None, feed)[0]
        b = emulated.run(None, feed)[0]
        figures.append(acc.psnr(np.clip(a, 0, 1), np.clip(b, 0, 1)))
    notes["psnr_vs_fp32_float16_storage_db"] = acc.round_db(acc.mean_finite(figures))
    return FP16_FILE, notes


# -- INT8 ---------------------------------------------------------------------------------------
@dataclass
class Candidate:
    label: str
    excluded: list[str]
    psnr_vs_fp32_db: float
    psnr_y_loss_db: float | None
    meets: bool
    float_macs: int
    path: Path

    def record(self) -> dict:
        return {
            "exclusions": self.label,
            "excluded_count": len(self.excluded),
            "psnr_vs_fp32_db": acc.round_db(self.psnr_vs_fp32_db),
            "psnr_y_loss_vs_fp32_db": acc.round_db(self.psnr_y_loss_db),
            "meets_target": self.meets,
            "float_macs_per_patch": self.float_macs,
        }

    def goodness(self) -> float:
        return -self.psnr_y_loss_db if self.psnr_y_loss_db is not None else self.psnr_vs_fp32_db


class PatchScorer:
    """Scores a graph on held-out patches: PSNR vs the FP32 graph and, where the patches
    have ground truth, PSNR-Y loss vs FP32 (shave = scale)."""

    def __init__(self, fp32_path: Path, patches: CalibrationSet, scale: int):
        from srexport.export.verify import make_session

        self.patches = patches
        self.scale = scale
        session = make_session(fp32_path)
        self.names = [i.name for i in session.get_inputs()]
        self.reference = [session.run(None, self._feed(p))[0][0] for p in patches.inputs]
        self.truth = all(t is not None for t in patches.targets) and bool(patches.targets)
        self.reference_y = self._psnr_y(self.reference) if self.truth else None

    def _feed(self, sample):
        return {n: sample[n] for n in self.names}

    def _psnr_y(self, outputs) -> float:
        values = [acc.psnr_y(o.transpose(1, 2, 0), t, self.scale) for o, t in zip(outputs, self.patches.targets)]
        return acc.mean_finite(values)

    def score(self, graph_path: Path) -> tuple[float, float | None]:
        from srexport.export.verify import make_session

        session = make_session(graph_path)
        outputs = [session.run(None, self._feed(p))[0][0] for p in self.patches.inputs]
        vs = acc.mean_finite(
            acc.psnr(np.clip(r, 0, 1), np.clip(o, 0, 1)) for r, o in zip(self.reference, outputs)
        )
        loss = self.reference_y - self._psnr_y(outputs) if self.truth else None
        return vs, loss


def choose_exclusions(fp32_path: Path, cache: Path, method: str, scorer: PatchScorer, work: Path,
                      macs: dict[str, int]) -> tuple[Candidate, list[Candidate]]:
    """Pick the INT8 exclusion set by measurement (see the module docstring):

    1. all INT8, and the image-space (first/last) layers in FP32: the faster of those
       meeting the target wins;
    2. else each module group (`int8.module_groups`) in FP32 on top of the image-space
       layers, one at a time: the fastest meeting the target wins;
    3. else the groups are added in the order of their measured benefit until the target
       is met;
    4. if nothing meets it, the most accurate candidate is kept.
    Speed is the deterministic cost: the MACs (`macs`, per FP32 node at the runtime's patch
    size: small patches would hide the cost of the high-resolution layers) left in float.
    """
    from srexport.calib.int8 import exclusion_candidates, quantize

    fp32 = onnx.load(str(fp32_path))
    tried: list[Candidate] = []

    def attempt(label: str, excluded: list[str]) -> Candidate:
        path = work / f"candidate{len(tried)}.onnx"
        quantize(fp32_path, path, cache, method, excluded)
        vs, loss = scorer.score(path)
        meets = (loss <= SELECT_LOSS_DB) if loss is not None else (vs >= SELECT_PSNR_DB)
        cand = Candidate(label, sorted(excluded), vs, loss, bool(meets and math.isfinite(vs)),
                         sum(macs.get(name, 0) for name in set(excluded)), path)
        tried.append(cand)
        return cand

    tie = SPEED_TIE * sum(macs.values())

    def fastest(cands: list[Candidate]) -> Candidate | None:
        """The cheapest candidate meeting the target; costs within `tie` of the cheapest
        count as equal, and then accuracy decides (the earlier candidate on equal accuracy)."""
        good = [c for c in cands if c.meets]
        if not good:
            return None
        cheapest = min(c.float_macs for c in good)
        near = [c for c in good if c.float_macs <= cheapest + tie]
        return max(near, key=lambda c: c.goodness())

    base, groups = exclusion_candidates(fp32)
    first = [attempt(label, excluded) for label, excluded in base]
    image = base[-1][1]
    if (pick := fastest(first)) is not None:
        return pick, tried
    single = [attempt(f"image-space layers + {g}", image + names) for g, names in groups.items()]
    if (pick := fastest(single)) is not None:
        return pick, tried
    ranked = [g for _, g in sorted(zip(single, groups), key=lambda pair: -pair[0].goodness())]
    for k in range(2, len(ranked) + 1):
        excluded = image + [n for g in ranked[:k] for n in groups[g]]
        if attempt("image-space layers + " + " + ".join(ranked[:k]), excluded).meets:
            return tried[-1], tried
    return max(tried, key=lambda c: c.goodness()), tried


def build_int8(model, root: Path, fp32_path: Path, calib: CalibrationSet, options: PrecisionOptions,
               warn: Warn) -> tuple[str, dict]:
    from srexport.calib.int8 import SCHEMES, qdq_structure, quantize, calibrate

    with tempfile.TemporaryDirectory(prefix="srexport-int8-") as tmp:
        work = Path(tmp)
        cache = calibrate(fp32_path, calib.inputs, options.calib_method, work / "ranges.json", work)
        held_out = sample_patches(options.calib_dir, model, min(SELECT_PATCHES, max(4, options.calib_patches)),
                                  options.seed + 1, patch=calib.patch[0])
        scorer = PatchScorer(fp32_path, held_out, int(model.scale))
        patch = model.recommended_patch()
        macs = node_macs(fp32_path, {n: v.shape for n, v in synthetic_set(model, 1, options.seed, patch=patch).inputs[0].items()})
        chosen, tried = choose_exclusions(fp32_path, cache, options.calib_method, scorer, work, macs)
        shutil.copyfile(chosen.path, root / INT8_FILE)
        trt_path = root / INT8_TRT_FILE
        quantize(fp32_path, trt_path, cache, options.calib_method, chosen.excluded, scheme="tensorrt")
        trt_vs, trt_loss = scorer.score(trt_path)
    if not chosen.meets:
        warn(f"INT8: no exclusion set met the selection target; kept '{chosen.label}' "
             f"(PSNR vs FP32 {chosen.psnr_vs_fp32_db:.2f} dB on held-out patches)")
    structure = qdq_structure(onnx.load(str(root / INT8_FILE)))
    excluded = set(chosen.excluded)
    not_per_channel = [c.name for c in structure if c.weight_quantized and not c.per_channel]
    unquantized = [c.name for c in structure if not c.weight_quantized]
    cpu = SCHEMES["cpu"]
    notes = {
        "format": "QDQ",
        "scheme": {
            "activations": "uint8 asymmetric, one scale per tensor",
            "weights": "int8 symmetric, one scale per output channel, reduce_range (7-bit)",
            "bias": "int32",
            "ops": "every op ONNX Runtime quantizes (Conv, ConvTranspose, Add, Concat, Relu, ...)",
            "reduce_range": cpu.reduce_range,
        },
        "calibration": {**calib.summary(), "method": options.calib_method},
        "excluded_nodes": sorted(excluded),
        "exclusion_choice": chosen.label,
        "exclusion_candidates": [c.record() for c in tried],
        "selection": {
            "patches": f"{len(held_out.inputs)} held-out patches of {options.calib_dir} (seed {options.seed + 1})",
            "target": (f"PSNR-Y loss vs FP32 <= {SELECT_LOSS_DB} dB" if scorer.truth
                       else f"PSNR vs FP32 >= {SELECT_PSNR_DB} dB"),
            "met": chosen.meets,
            "speed": f"MACs left in float on one {patch} px patch of the FP32 graph ({sum(macs.values())} "
                     f"MACs in all; costs within {SPEED_TIE:.0%} of that: the more accurate)",
        },
        "convolutions": len(structure),
        "convolutions_int8_per_channel": sum(c.weight_quantized and c.per_channel for c in structure),
        "convolutions_fp32": sorted(unquantized),
        "convolutions_not_per_channel": sorted(not_per_channel),
        "tensorrt": {
            "file": INT8_TRT_FILE,
            "scheme": "int8 symmetric activations (zero point 0) and per-channel weights, float bias: "
                      "the QDQ form TensorRT's strongly typed builder takes; same ranges and exclusions",
            "psnr_vs_fp32_db_held_out_patches": acc.round_db(trt_vs),
            "psnr_y_loss_vs_fp32_db_held_out_patches": acc.round_db(trt_loss),
        },
    }
    return INT8_FILE, notes


def _torch_error(model, graph: Path) -> float | None:
    """Largest deviation from the PyTorch model on the FP32 graph's verification sizes."""
    from srexport.export.verify import check_parity

    worst = max(c.max_abs_error for c in check_parity(model, graph))
    return float(worst) if math.isfinite(worst) else None


# -- entry point ----------------------------------------------------------------------------
def _check(options: PrecisionOptions) -> None:
    if options.calib_method not in CALIB_METHODS:
        raise CalibrationError(f"calibration method must be one of {', '.join(CALIB_METHODS)}, "
                               f"got '{options.calib_method}'")
    if options.calib_patches < 1:
        raise CalibrationError(f"calibration needs at least one patch, got {options.calib_patches}")
    if options.int8 and options.calib_dir is None:
        raise CalibrationError("INT8 needs a calibration folder (--calib-dir DIR of representative images)")
    for folder, what in ((options.calib_dir, "calibration"), (options.eval_dir, "evaluation")):
        if folder is not None and not Path(folder).is_dir():
            raise CalibrationError(f"{what} folder {folder} is not a folder")


def build_precisions(
    model, bundle_dir: Path, fp32_file: str, options: PrecisionOptions, warn: Warn | None = None
) -> dict[str, PrecisionInfo]:
    """Write model.fp16.onnx / model.int8.onnx (+ model.int8.tensorrt.onnx) into
    `bundle_dir` as `options` asks and return their PrecisionInfo (see the module docstring)."""
    warn = warn or _stderr
    _check(options)
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
        files["int8"], notes["int8"] = build_int8(model, root, fp32_path, calib, options, warn)
    if not is_image_graph(model, fp32_path):
        if options.bf16:
            raise CalibrationError("--bf16 is measured through the tiled runtime, for networks that output an "
                                   "upscaled image; this graph does not")
        inputs = direct_inputs(model.shape_rules(), model.noise_inputs)
        for precision in ("fp16", "int8"):
            if precision in files:
                value = acc.round_db(direct_psnr(fp32_path, root / files[precision], inputs))
                verify = {"inputs": f"{len(inputs)} synthetic whole inputs, peak = FP32 output range",
                          "psnr_vs_fp32_db": value, "tolerance_db": VERIFY_TOLERANCE_DB}
                results[precision] = PrecisionInfo(files[precision], psnr_vs_fp32_db=value,
                                                   notes={**notes[precision], "verify": verify,
                                                          "accuracy_images": verify["inputs"]})
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
