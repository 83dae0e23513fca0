"""Static performance report of the custom CUDA kernels; prints JSON. No GPU needed.

For each kernel: DRAM bytes moved and FLOPs per output pixel (from the kernels' own tile
schedules), ptxas resources per architecture (registers, shared memory, spills; compiled
with nvcc when it is installed) with the theoretical occupancy they allow, and the
bandwidth-bound time of an 8K frame (7680 x 4320 output pixels) on a Titan X (Maxwell,
336 GB/s) and an H100 SXM (3.35 TB/s), next to the compute-bound time for comparison.

    python benchmarks/kernels_report.py [--out report.json] [--no-compile]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srexport.kernels import compiler, launch  # noqa: E402
from srexport.runtime.tiler import axis_starts  # noqa: E402

FRAME = {"name": "8K UHD", "width": 7680, "height": 4320}
PIXELS = FRAME["width"] * FRAME["height"]
GPUS = {
    "titan_x_maxwell": {"bandwidth_GBps": 336.0, "fp32_TFLOPs": 6.1},
    "h100_sxm": {"bandwidth_GBps": 3350.0, "fp32_TFLOPs": 67.0},
}
CHANNELS = 3
# per SM: (max threads, max blocks, shared memory bytes) -- CUDA programming guide tables
SM_LIMITS = {
    "sm_75": (1024, 16, 64 * 1024),
    "sm_80": (2048, 32, 164 * 1024),
    "sm_86": (1536, 16, 100 * 1024),
    "sm_89": (1536, 24, 100 * 1024),
    "sm_90": (2048, 32, 228 * 1024),
}
BLOCK_THREADS = {"srx_blend_accumulate": 256, "srx_blend_finalize": 256, "srx_vnsc": 256}


def coverage(patch: int, overlap: int) -> float:
    """Average number of output patches covering an 8K output pixel for a square tiling."""
    def axis(length):
        starts = axis_starts(length, patch, overlap)
        return len(starts) * patch / length

    return axis(FRAME["width"]) * axis(FRAME["height"])


def times(bytes_px: float, flops_px: float) -> dict:
    out = {}
    for name, gpu in GPUS.items():
        t_bw = bytes_px * PIXELS / (gpu["bandwidth_GBps"] * 1e9)
        t_fp = flops_px * PIXELS / (gpu["fp32_TFLOPs"] * 1e12)
        out[name] = {
            "bandwidth_bound_ms": round(t_bw * 1e3, 3),
            "compute_bound_ms": round(t_fp * 1e3, 3),
            "bound_by": "bandwidth" if t_bw >= t_fp else "compute",
        }
    return out


def entry(bytes_px: float, flops_px: float, **notes) -> dict:
    return {
        "bytes_per_output_pixel": round(bytes_px, 3),
        "flops_per_output_pixel": round(flops_px, 3),
        "flops_per_byte": round(flops_px / bytes_px, 3),
        "frame_8k": times(bytes_px, flops_px),
        **notes,
    }


def blend_model() -> dict:
    """Accumulate: per covering patch, read C patch values, window product (1 mul), C mul+add,
    weight add -> 2C + 2 FLOPs; the canvas pixel (C planes + weight) is read and written
    once per batch that covers it (gather schedule), b >= 1 times."""
    kernels = {}
    c = CHANNELS
    scenarios = {
        "no_overlap": coverage(256, 0),
        "patch256_overlap32": coverage(256, 32),
        "patch192_overlap96": coverage(192, 96),
    }
    for dtype, size in (("f32", 4), ("f16", 2)):
        for scenario, k in scenarios.items():
            for batches, label in ((1, "one_batch_per_pixel"), (k, "every_patch_its_own_batch")):
                key = f"srx_blend_accumulate_{dtype}/{scenario}/{label}"
                bytes_px = k * c * size + batches * (c + 1) * 4 * 2
                kernels[key] = entry(bytes_px, k * (2 * c + 2), patches_per_pixel=round(k, 4),
                                     canvas_passes=round(batches, 4))
    for dtype, size in (("u8", 1), ("u16", 2), ("f32", 4)):
        flops = c * (5 if dtype != "f32" else 1)  # div, max, min, mul, rint (f32: div)
        kernels[f"srx_blend_finalize_{dtype}"] = entry((c + 1) * 4 + c * size, flops,
                                                       note="reads C canvas planes + weight, writes HWC")
    kernels["canvas_clear (cuMemsetD8Async)"] = entry((c + 1) * 4, 0.0, note="zeroes C planes + weight")
    return kernels


def vnsc_model() -> dict:
    """Per block: Y tile 28x44 (luma: 3 mul + 2 add + 1 mul), N tile 22x38 (49 taps of
    sub, mul, add, mul, add; then mul, sub, max, sqrt, add, neg, div), 32x16 outputs of
    49 products each. DRAM: the RGB input once and the 49 planes once (the halo re-reads
    hit L2)."""
    tile_out = launch.VNSC_TILE[0] * launch.VNSC_TILE[1]
    y_tile, n_tile = 28 * 44, 22 * 38
    luma, normalise, products = 6, 49 * 5 + 7, 49
    flops = (y_tile * luma + n_tile * normalise) / tile_out + products
    algorithmic = luma + normalise + products
    out = {}
    for dtype, size in (("f32", 4), ("f16", 2)):
        out[f"srx_vnsc_{dtype}"] = entry(
            3 * size + launch.VNSC_CHANNELS * size, flops,
            algorithmic_flops_per_output_pixel=algorithmic,
            halo_recompute_factor=round(flops / algorithmic, 3),
            input_bytes_per_output_pixel_with_halo_l2=round(3 * size * y_tile / tile_out, 3),
            shared_bytes_per_block=launch.VNSC_SHARED_BYTES,
            discriminator_note="the discriminator runs VN+SC on the image and its 1/2, 1/4, 1/8 downscales: "
                               "x1.328 of these figures per HR pixel",
        )
    return out


def occupancy(r: compiler.KernelResources) -> dict:
    threads = next(v for k, v in BLOCK_THREADS.items() if r.kernel.startswith(k))
    max_threads, max_blocks, smem = SM_LIMITS.get(r.arch, (1024, 16, 48 * 1024))
    regs_per_warp = -(-max(r.registers, 1) * 32 // 256) * 256
    warps = threads // 32
    by_regs = (65536 // regs_per_warp) // warps
    by_smem = smem // r.shared_bytes if r.shared_bytes else max_blocks
    blocks = min(by_regs, by_smem, max_blocks, max_threads // threads)
    return {"blocks_per_sm": blocks, "occupancy": round(blocks * threads / max_threads, 3)}


def ptxas_report(compile_: bool) -> dict:
    if not compile_:
        return {"skipped": "--no-compile"}
    if compiler.nvcc_path() is None:
        return {"skipped": "nvcc not installed"}
    builds = compiler.compile_all(allow_spills=True)
    report: dict = {"nvcc": builds[0].nvcc_version, "archs": list(compiler.ARCHS), "ptx": compiler.PTX_ARCH, "kernels": {}}
    for b in builds:
        for r in sorted(b.resources, key=lambda r: (r.kernel, r.arch)):
            report["kernels"].setdefault(r.kernel, {})[r.arch] = {
                "registers": r.registers, "shared_bytes": r.shared_bytes, "stack_bytes": r.stack_bytes,
                "spill_stores": r.spill_stores, "spill_loads": r.spill_loads, **occupancy(r),
            }
    report["spills"] = sum(r.spill_stores + r.spill_loads for b in builds for r in b.resources)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-compile", action="store_true", help="skip nvcc (no ptxas figures)")
    args = parser.parse_args()
    blend = blend_model()
    vnsc = vnsc_model()
    blend_frame = {  # one 8K output frame through the GPU blender, typical tiling
        name: round(blend["canvas_clear (cuMemsetD8Async)"]["frame_8k"][name]["bandwidth_bound_ms"]
                    + blend["srx_blend_accumulate_f16/patch256_overlap32/one_batch_per_pixel"]["frame_8k"][name][
                        "bandwidth_bound_ms"]
                    + blend["srx_blend_finalize_u8"]["frame_8k"][name]["bandwidth_bound_ms"], 3)
        for name in GPUS
    }
    report = {
        "frame": {**FRAME, "pixels": PIXELS},
        "gpus": GPUS,
        "channels": CHANNELS,
        "kernels": {**blend, **vnsc},
        "blend_8k_frame_total_ms": {
            "pipeline": "clear + accumulate (f16 patches, 256 px, 32 overlap, one pass) + finalize u8",
            **blend_frame,
        },
        "ptxas": ptxas_report(not args.no_compile),
    }
    text = json.dumps(report, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
