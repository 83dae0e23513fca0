"""`--precision auto`: the fastest precision a bundle was built and verified with that this
machine runs, within the accuracy gate the bundle recorded for it.

The order of preference (`machine_order`), fastest first:
- on an NVIDIA GPU (TensorRT or ONNX Runtime's CUDA provider): int8, fp16, fp32;
- on a CPU through OpenVINO with BF16 (AVX512-BF16 or AMX): int8, bf16, fp32;
- on a CPU through OpenVINO with VNNI (AVX512-VNNI or AVX-VNNI) but no BF16: int8, fp32;
- on a CPU through OpenVINO with INT8 kernels but neither (AVX2 alone): int8, fp32 for frame
  streams (`repeating`), fp32 for images (`AVX2_INT8_NOTE`);
- anywhere else (ONNX Runtime or PyTorch on the CPU, a CPU without those units): fp32.
On the BF16 CPU a mixed INT8 graph (layers kept in float by its build) moves after bf16
for images (`bundle_order`), and keeps its place for frame streams (`repeating`: the frames
of `upscale_frames` and video, whose one size OpenVINO compiles static). The first precision of that order whose graph the bundle holds and whose
recorded accuracy passes its gate (`passes_gate`) wins; fp32, the reference, always passes. A bundle built with
fp32 only therefore runs fp32, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from srexport.bundle import PrecisionInfo

# Gates, from the precision work's targets: FP16 >= 50 dB PSNR vs FP32; INT8 <= 0.2 dB PSNR-Y
# loss (its build-time selection target); BF16 <= 0.05 dB PSNR-Y loss (the bf16 gate).
FP16_MIN_PSNR_DB = 50.0
INT8_MAX_LOSS_DB = 0.2
BF16_MAX_LOSS_DB = 0.05
BF16_MIN_PSNR_DB = 50.0  # where no ground truth was given at build time


@dataclass(frozen=True)
class PrecisionChoice:
    precision: str
    reason: str


@dataclass(frozen=True)
class Machine:
    """What the precision choice needs to know about this machine and the chosen backend."""

    backend: str  # auto | tensorrt | onnxruntime | openvino | torch
    gpu: bool  # TensorRT or ONNX Runtime's CUDA provider with a GPU
    openvino: bool  # the openvino package loads
    cpu_caps: frozenset[str]  # OpenVINO's OPTIMIZATION_CAPABILITIES
    cpu_flags: frozenset[str]  # /proc/cpuinfo flags


VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})

# OpenVINO's int8 kernels on AVX2 alone multiply uint8 by int8 with vpmaddubsw, which
# saturates pairs of products at int16; the bundles' 7-bit weights keep every pair within
# range, so int8 computes the same there as with VNNI. Measured on a 2-core AMD EPYC (AVX2,
# FMA; no AVX-512, VNNI or BF16), OpenVINO 2026.4.1, 2 threads: 320x180 frames, PCARN-M-L1 x4
# 1.72-2.40 output Mpx/s in int8 against 0.74-0.85 in fp32 (ONNX Runtime; OpenVINO fp32
# 0.81-0.85), G-MGBP BOE-R1 x4 0.145 against 0.076-0.083; but the CSet5 folder run of
# G-MGBP took 11.5 s in int8 against 9.5-9.9 s in fp32 (one dynamic compile for every size,
# where the int8 kernels lose their fusions).
AVX2_INT8_NOTE = ("this CPU runs int8 on AVX2 alone (no VNNI or BF16): faster than fp32 for frames of one size, "
                  "compiled static, not for images of many sizes")


def machine_order(machine: Machine, repeating: bool = False) -> tuple[tuple[str, ...], str]:
    """Precisions fastest first on this machine and backend, with the reason (`repeating`:
    for a stream of frames of one size)."""
    gpu_backend = machine.backend in ("auto", "tensorrt", "onnxruntime") and machine.gpu
    if gpu_backend:
        return ("int8", "fp16", "fp32"), "an NVIDIA GPU runs int8, then fp16, fastest"
    if machine.backend in ("auto", "openvino") and machine.openvino:
        if "BF16" in machine.cpu_caps:
            return ("int8", "bf16", "fp32"), "this CPU has BF16 (AVX512-BF16/AMX): OpenVINO runs int8, then bf16, fastest"
        if machine.cpu_flags & VNNI_FLAGS:
            return ("int8", "fp32"), "this CPU has VNNI: OpenVINO runs int8 fastest"
        if "INT8" in machine.cpu_caps:
            return (("int8", "fp32") if repeating else ("fp32",)), AVX2_INT8_NOTE
        return ("fp32",), "this CPU has no BF16 or VNNI, where reduced precision pays on OpenVINO"
    where = "ONNX Runtime" if machine.backend == "auto" else machine.backend
    return ("fp32",), f"on the CPU through {where}, reduced precision brings no speed"


def passes_gate(precision: str, info: PrecisionInfo) -> tuple[bool, str]:
    """Whether the accuracy recorded for `precision` at build time is within its gate."""
    notes = info.notes or {}
    loss = notes.get("psnr_y_loss_vs_fp32_db")
    psnr = info.psnr_vs_fp32_db
    if precision == "fp32":
        return True, "the reference"
    if precision == "fp16":
        ok = psnr is not None and psnr >= FP16_MIN_PSNR_DB
        return ok, f"PSNR vs fp32 {psnr} dB (gate >= {FP16_MIN_PSNR_DB:g})"
    if precision == "int8":
        selection = notes.get("selection", {})
        met = bool(selection.get("met")) and (loss is None or loss <= INT8_MAX_LOSS_DB)
        shown = f"PSNR-Y loss {loss} dB" if loss is not None else "the build's held-out target"
        return met, f"{shown} (gate <= {INT8_MAX_LOSS_DB:g} dB)"
    if precision == "bf16":
        if loss is not None:
            return loss <= BF16_MAX_LOSS_DB, f"PSNR-Y loss {loss} dB (gate <= {BF16_MAX_LOSS_DB:g} dB)"
        ok = psnr is not None and psnr >= BF16_MIN_PSNR_DB
        return ok, f"PSNR vs fp32 {psnr} dB (gate >= {BF16_MIN_PSNR_DB:g})"
    return False, f"unknown precision {precision}"


def mixed_int8(info: PrecisionInfo | None) -> bool:
    """An INT8 graph whose build left layers inside the network in float (whole modules, on
    top of the image-space first and last layers). Bundles from before that was recorded
    count as mixed when anything was left in float."""
    notes = (info.notes or {}) if info is not None else {}
    if "float_in_trunk" in notes:
        return bool(notes["float_in_trunk"])
    return bool(notes.get("excluded_nodes"))


def bundle_order(order: tuple[str, ...], why: str, recorded: Mapping[str, PrecisionInfo],
                 repeating: bool = False) -> tuple[tuple[str, ...], str]:
    """`order` adjusted to what this bundle holds: on a BF16 CPU a mixed INT8 graph comes after
    bf16 for images (`repeating` False), not for frame streams of one size.

    Images of many sizes run on one dynamic compile, where OpenVINO's int8 kernels lose
    their fusions; frames compile static per size. Measured on a 2-core AMX Xeon, OpenVINO
    2026.4.1, G-MGBP BOE-R1's INT8 graph (its Analysis module, 80 nodes and 18% of the MACs,
    in float): dynamic, the CSet5 images took 1.85 s against 0.90 s in bf16 (and 1.65 s to
    compile against 0.28 s); static, 320x180 frames 1.07 s against 1.37 s in bf16 and the
    CSet5 sizes 0.65 s against 0.76-0.85 s, after a static compile of 2.3 s per size (bf16:
    0.4 s). PCARN-M's INT8 graph, float only in its image-space last layer, beats bf16 either way."""
    if "bf16" in order and "int8" in order and "bf16" in recorded and mixed_int8(recorded.get("int8")):
        if repeating:
            return order, (f"{why}; frames of one size: this bundle's int8 graph keeps layers in float "
                           "but, compiled static, still runs faster than bf16 here")
        rest = [p for p in order if p != "int8"]
        rest.insert(rest.index("bf16") + 1, "int8")
        return tuple(rest), (f"{why}; this bundle's int8 graph keeps layers in float, slower than bf16 here "
                             "on images of many sizes (frame streams run it)")
    return order, why


def choose_precision(recorded: Mapping[str, PrecisionInfo], machine: Machine,
                     repeating: bool = False) -> PrecisionChoice:
    """The pure rule of the module docstring (`repeating`: for a stream of frames of one size)."""
    order, why = bundle_order(*machine_order(machine, repeating), recorded, repeating)
    passed: list[str] = []
    for precision in order:
        info = recorded.get(precision)
        if info is None:
            passed.append(f"{precision}: not in the bundle")
            continue
        ok, figure = passes_gate(precision, info)
        if ok:
            skipped = f"; {', '.join(passed)}" if passed else ""
            return PrecisionChoice(precision, f"precision auto: {precision} ({why}; {figure}{skipped})")
        passed.append(f"{precision}: outside its gate, {figure}")
    return PrecisionChoice("fp32", f"precision auto: fp32 ({'; '.join(passed)})")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def this_machine(backend: str) -> Machine:
    """Probe this machine for `choose_precision` (imports OpenVINO only when it may be used)."""
    from srexport.runtime.backends.selection import available_backends, cpu_capabilities

    available = available_backends()
    gpu = bool(available["tensorrt"] or available["onnxruntime-cuda"])
    caps: set[str] = set()
    if available["openvino"] and backend in ("auto", "openvino") and not (gpu and backend == "auto"):
        caps = cpu_capabilities(available)
    return Machine(backend, gpu, bool(available["openvino"]) and (bool(caps) or gpu),
                   frozenset(caps), cpu_flags())
