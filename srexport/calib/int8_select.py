"""The INT8 graphs of a bundle (QDQ for ONNX Runtime and OpenVINO, and the TensorRT form).

INT8 exclusions are chosen by measurement (`choose_exclusions`): candidates (all INT8; the
image-space first/last layers in FP32 except the last convolutions, int8 with float outputs;
the image-space layers in FP32; those plus whole modules of the network in FP32)
are quantized from one calibration and scored on held-out patches of the calibration
folder (seed + 1) against their ground truth. The target is the INT8 budget, PSNR-Y
loss vs FP32 <= SELECT_LOSS_DB = 0.2 dB (PSNR vs FP32 >= SELECT_PSNR_DB where the folder
gives no ground truth); among candidates meeting it the fastest (by the cost below) wins,
the more accurate one when their costs are within SPEED_TIE (5%) of the graph's MACs. The
cost is deterministic: the multiply-accumulates a candidate leaves in floating point, counted
on the FP32 graph at the patch size the runtime tiles with (an INT8 convolution is cheaper
than a float one on every CPU and GPU backend, so fewer float MACs is faster). A measured
time would make two builds with the same inputs and seed choose differently.
The evaluation folder never takes part in the choice.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from srexport.calib import accuracy as acc
from srexport.calib.measure import Warn
from srexport.calib.options import PrecisionOptions
from srexport.calib.patches import CalibrationSet, sample_patches, synthetic_set
from srexport.profiling.flops import node_macs

INT8_FILE = "model.int8.onnx"
INT8_TRT_FILE = "model.int8.tensorrt.onnx"
SELECT_PATCHES = 16
SELECT_LOSS_DB = 0.2  # the INT8 budget, here on held-out calibration patches
SELECT_PSNR_DB = 40.0
SPEED_TIE = 0.05  # candidates whose float MACs differ by < 5% of all MACs count as equally fast


@dataclass
class Candidate:
    label: str
    excluded: list[str]
    psnr_vs_fp32_db: float
    psnr_y_loss_db: float | None
    meets: bool
    float_macs: int
    path: Path
    float_outputs: list[str] = dataclasses.field(default_factory=list)

    def record(self) -> dict:
        return {
            "exclusions": self.label,
            "excluded_count": len(self.excluded),
            "float_output_count": len(self.float_outputs),
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
        from srexport.ort import inference_session

        self.patches = patches
        self.scale = scale
        session = inference_session(fp32_path)
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
        from srexport.ort import inference_session

        session = inference_session(graph_path)
        outputs = [session.run(None, self._feed(p))[0][0] for p in self.patches.inputs]
        vs = acc.mean_finite(
            acc.psnr(np.clip(r, 0, 1), np.clip(o, 0, 1)) for r, o in zip(self.reference, outputs)
        )
        loss = self.reference_y - self._psnr_y(outputs) if self.truth else None
        return vs, loss


def choose_exclusions(fp32_path: Path, cache: Path, method: str, scorer: PatchScorer, work: Path,
                      macs: dict[str, int]) -> tuple[Candidate, list[Candidate]]:
    """Pick the INT8 exclusion set by measurement (see the module docstring):

    1. all INT8; the image-space (first/last) layers in FP32 but the convolutions among
       them that read features, int8 with float outputs; and all image-space layers in
       FP32: the fastest of those meeting the target wins;
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

    def attempt(label: str, excluded: list[str], float_outputs: tuple[str, ...] = ()) -> Candidate:
        path = work / f"candidate{len(tried)}.onnx"
        quantize(fp32_path, path, cache, method, excluded, float_outputs=float_outputs)
        vs, loss = scorer.score(path)
        meets = (loss <= SELECT_LOSS_DB) if loss is not None else (vs >= SELECT_PSNR_DB)
        cand = Candidate(label, sorted(excluded), vs, loss, bool(meets and math.isfinite(vs)),
                         sum(macs.get(name, 0) for name in set(excluded)), path, sorted(float_outputs))
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
    first = [attempt(c.label, list(c.excluded), c.float_outputs) for c in base]
    image = list(base[-1].excluded)
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
               warn: Warn, quantizable: onnx.ModelProto | None = None) -> tuple[str, dict]:
    """Quantize `quantizable` (the FP32 file's graph where None) and score it against the FP32 file."""
    from srexport.calib.int8 import IMAGE_LAYERS, IMAGE_OUTPUTS, SCHEMES, calibrate, cpu_passes, qdq_structure, quantize

    with tempfile.TemporaryDirectory(prefix="srexport-int8-") as tmp:
        work = Path(tmp)
        source = fp32_path
        if quantizable is not None:
            source = work / "quantizable.onnx"
            onnx.save(quantizable, str(source))
        cache = calibrate(source, calib.inputs, options.calib_method, work / "ranges.json", work)
        held_out = sample_patches(options.calib_dir, model, min(SELECT_PATCHES, max(4, options.calib_patches)),
                                  options.seed + 1, patch=calib.patch[0])
        scorer = PatchScorer(fp32_path, held_out, int(model.scale))
        patch = model.recommended_patch()
        macs = node_macs(source, {n: v.shape for n, v in synthetic_set(model, 1, options.seed, patch=patch).inputs[0].items()})
        chosen, tried = choose_exclusions(source, cache, options.calib_method, scorer, work, macs)
        shutil.copyfile(chosen.path, root / INT8_FILE)
        trt_path = root / INT8_TRT_FILE
        quantize(source, trt_path, cache, options.calib_method, chosen.excluded, scheme="tensorrt",
                 float_outputs=chosen.float_outputs)
        trt_vs, trt_loss = scorer.score(trt_path)
    if not chosen.meets:
        warn(f"INT8: no exclusion set met the selection target; kept '{chosen.label}' "
             f"(PSNR vs FP32 {chosen.psnr_vs_fp32_db:.2f} dB on held-out patches)")
    int8_graph = onnx.load(str(root / INT8_FILE))
    structure = qdq_structure(int8_graph)
    excluded = set(chosen.excluded)
    not_per_channel = [c.name for c in structure if c.weight_quantized and not c.per_channel]
    unquantized = [c.name for c in structure if not c.weight_quantized]
    cpu = SCHEMES["cpu"]
    notes = {
        "format": "QDQ",
        "quantized_from": (fp32_path.name if quantizable is None else
                           f"{fp32_path.name} before its float-only rewrites (srexport.export.cpu_rewrites)"),
        "scheme": {
            "activations": "uint8 asymmetric, one scale per tensor",
            "weights": "int8 symmetric, one scale per output channel, reduce_range (7-bit)",
            "bias": "int32",
            "ops": "every op ONNX Runtime quantizes (Conv, ConvTranspose, Add, Concat, Relu, ...)",
            "reduce_range": cpu.reduce_range,
            # srexport.calib.int8_cpu_passes: what each pass changed
            "passes": cpu_passes(int8_graph),
        },
        "calibration": {**calib.summary(), "method": options.calib_method},
        "excluded_nodes": sorted(excluded),
        "float_output_nodes": chosen.float_outputs,
        "float_macs_share": round(chosen.float_macs / max(1, sum(macs.values())), 4),
        # float layers inside the network (module groups), not only at its image-space ends
        "float_in_trunk": chosen.label not in ("none", IMAGE_OUTPUTS, IMAGE_LAYERS),
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
                      "the QDQ form TensorRT's strongly typed builder takes; same ranges, exclusions "
                      "and float outputs",
            "psnr_vs_fp32_db_held_out_patches": acc.round_db(trt_vs),
            "psnr_y_loss_vs_fp32_db_held_out_patches": acc.round_db(trt_loss),
        },
    }
    return INT8_FILE, notes
