"""The papers' Titan X (Maxwell) figures as data, and how this device's time compares.

Source: the table "Throughput published on Titan X (Maxwell)" in ../shared/docs/models.md,
itself from the papers (`bpp.txt` "Performance", `mgbpv2-aim2019.txt` section 5,
`gmgbp-pirm2018.txt` abstract, `pcarn.txt` Fig. 13). Each row is a `Workload`: an output
image size, the model (and variant) it was measured on, how the image was cut into patches
if the paper says so, and the paper's seconds (None where the paper only plots a figure).

Workload sizes are OUTPUT sizes (width x height): the BPP row is a 3 x 1920 x 1080 image,
the MGBPv2 rows 1000 x 1000 and 8K outputs, the G-MGBP row an image of the PIRM average of
0.29 Mpx output (660 x 440 here, 3:2 like the DIV2K/PIRM sources; the paper gives only the
average), the PCARN row a 320 x 180 -> 1280 x 720 run at 4x. The MGBPv2 paper writes the 8K
size as "7689 x 4320" (a typo: standard 8K UHD is 7680 x 4320, as models.md has it).

Comparing (`compare`): the row is chosen by model, variant and size, preferring the row
whose tiling matches the run's (MGBPv2's rows differ only by tiling). This device's time
for the workload is the measured end-to-end median when the profile ran that very size;
otherwise it is extrapolated from the measured run by the ratio of graph input pixels the
runtime would process (tiles x patch area, same patch and overlap, or the workload's own
patch and stride where the paper fixes them) and labelled "extrapolated".
`ratio` = device seconds / Titan X seconds: above 1 this device is slower than the Titan X.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from srexport.errors import SrExportError

TITAN_X = {
    "name": "NVIDIA GeForce GTX Titan X (Maxwell)",
    "fp32_tflops": (6.1, 6.6),
    "memory_gb_s": 336,
    "fast_fp16": False,
}

# Named sizes for --size (output width x height).
PRESET_SIZES: dict[str, tuple[int, int]] = {
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "fullhd": (1920, 1080),
    "8k": (7680, 4320),
    "1000": (1000, 1000),
    "pirm": (660, 440),
}


@dataclass(frozen=True)
class Workload:
    """One published timing: `width` x `height` output pixels on a Titan X.

    `tiling`: None when the paper does not say how the image was cut, "whole" when it ran
    the image in one piece, or (patch, stride) in the graph's input pixels.
    `models`: registry names it applies to; `variants`: None for every variant.
    """

    key: str
    models: tuple[str, ...]
    variants: tuple[str, ...] | None
    width: int
    height: int
    seconds: float | None
    precision: str
    tiling: None | str | tuple[int, int]
    source: str
    note: str = ""

    @property
    def output_pixels(self) -> int:
        return self.width * self.height

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    def describe(self) -> str:
        if self.tiling == "whole":
            how = ", whole image"
        elif isinstance(self.tiling, tuple):
            how = f", {self.tiling[0]} px patches {self.tiling[1]} px apart"
        else:
            how = ""
        return f"{'/'.join(self.models)} {self.size} output{how}"


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "bpp-1080p", ("bpp",), None, 1920, 1080, 3.7, "fp16", None,
        "bpp.txt, Performance: 1.7 M pixels/s, 3.7 s for 3 x 1920 x 1080 (16-bit floats)",
        "the factor is not stated; BPP runs at the output resolution, so every factor costs the same",
    ),
    Workload(
        "mgbpv2-1000", ("mgbpv2",), ("aim2019-16x",), 1000, 1000, 1.42, "fp32", "whole",
        "mgbpv2-aim2019.txt, section 5: 1.42 s on average for 1000 x 1000 (validation)",
    ),
    Workload(
        "mgbpv2-1000-667", ("mgbpv2",), ("aim2019-16x",), 1000, 1000, 4.16, "fp32", (667, 128),
        "mgbpv2-aim2019.txt, section 5: 4.16 s with 667 x 667 patches 128 px apart (Fidelity track)",
    ),
    Workload(
        "mgbpv2-1000-767", ("mgbpv2",), ("aim2019-16x",), 1000, 1000, 2.06, "fp32", (767, 64),
        "mgbpv2-aim2019.txt, section 5: 2.06 s with 767 x 767 patches 64 px apart (Perceptual track)",
    ),
    Workload(
        "mgbpv2-8k", ("mgbpv2",), ("aim2019-16x",), 7680, 4320, 47.11, "fp32", "whole",
        "mgbpv2-aim2019.txt, section 5: 47.11 s for an 8K image without overlapping patches",
        "the paper prints 7689 x 4320, a typo for 8K UHD 7680 x 4320",
    ),
    Workload(
        "gmgbp-pirm", ("gmgbp",), None, 660, 440, 0.2, "fp32", None,
        "gmgbp-pirm2018.txt: 0.2 s per image on average (PIRM-SR self-validation, 0.29 Mpx average output)",
        "the paper gives only the 0.29 Mpx average; 660 x 440 (0.29 Mpx, 3:2) stands for it",
    ),
    Workload(
        "pcarn-720p", ("pcarn-m", "pcarn"), None, 1280, 720, None, "fp32", "whole",
        "pcarn.txt, Fig. 13: 320 x 180 -> 1280 x 720 on a Titan X, plotted only",
        "no number is printed: the Titan X time is unknown, so there is no ratio",
    ),
)


def workload(key: str) -> Workload:
    for row in WORKLOADS:
        if row.key == key:
            return row
    raise SrExportError(f"unknown workload '{key}' (workloads: {', '.join(w.key for w in WORKLOADS)})")


def workloads_for(model: str, variant: str | None = None) -> list[Workload]:
    return [
        w for w in WORKLOADS
        if model in w.models and (w.variants is None or variant is None or variant in w.variants)
    ]


def default_workload(model: str, variant: str | None = None) -> Workload | None:
    """The paper workload a profile of this model runs when no size is given."""
    rows = workloads_for(model, variant)
    return rows[0] if rows else None


def parse_size(text: str) -> tuple[int, int]:
    """'WxH', a preset name (720p, 1080p, fullhd, 8k, pirm, 1000) or a workload key ->
    (width, height) of the output image."""
    key = text.strip().lower()
    if key in PRESET_SIZES:
        return PRESET_SIZES[key]
    for row in WORKLOADS:
        if row.key == key:
            return row.width, row.height
    match = re.fullmatch(r"(\d+)\s*[x*]\s*(\d+)", key)
    if not match or min(int(match[1]), int(match[2])) < 1:
        names = ", ".join([*PRESET_SIZES, *(w.key for w in WORKLOADS)])
        raise SrExportError(f"size takes WxH (output pixels) or a preset ({names}), got '{text}'")
    return int(match[1]), int(match[2])


def _tiling_matches(row: Workload, tiles: int, patch: tuple[int, int], overlap: int, rules) -> bool:
    if row.tiling is None:
        return True
    if row.tiling == "whole":
        return tiles == 1
    want_patch, want_stride = row.tiling
    legal = rules.legal_at_least(want_patch) if rules is not None else want_patch
    return tiles > 1 and patch[0] in (want_patch, legal) and patch[0] - overlap == want_stride


def match(
    model: str,
    variant: str | None,
    width: int,
    height: int,
    tiles: int,
    patch: tuple[int, int],
    overlap: int,
    rules=None,
    scale: int = 1,
    key: str | None = None,
) -> tuple[Workload | None, dict]:
    """The row to compare a run of a `width` x `height` output with, and flags saying how
    well it matches. Sizes match within half the scale factor (the nearest output an
    integer LR size gives: 1000 / 16 = 62.5 LR pixels gives 1008). `key` forces a row."""
    rows = [workload(key)] if key else workloads_for(model, variant)
    if key and model not in rows[0].models:
        raise SrExportError(f"workload '{key}' was measured on {'/'.join(rows[0].models)}, not {model}")
    if not rows:
        return None, {}

    def close(row: Workload) -> bool:
        return abs(row.width - width) <= scale / 2 and abs(row.height - height) <= scale / 2

    same_size = [r for r in rows if close(r)]
    for row in same_size:
        if _tiling_matches(row, tiles, patch, overlap, rules):
            return row, {"size_matches": True, "tiling_matches": True}
    if same_size:
        plain = [r for r in same_size if not isinstance(r.tiling, tuple)] or same_size
        return plain[0], {"size_matches": True, "tiling_matches": False}
    row = rows[0]
    return row, {"size_matches": False, "tiling_matches": _tiling_matches(row, tiles, patch, overlap, rules)}


def _describe_plan(plan) -> str:
    tiles = len(plan.tiles)
    return (f"{plan.width}x{plan.height} graph input ({tiles} tile{'s' if tiles != 1 else ''} "
            f"of {plan.patch_w}x{plan.patch_h})")


def processed_pixels(plan) -> int:
    """Graph input pixels the runtime pushes through the network for a tile plan."""
    return len(plan.tiles) * plan.patch_h * plan.patch_w


def compare(
    row: Workload | None,
    flags: dict,
    *,
    measured_seconds: float,
    measured_plan,
    workload_plan,
    flops_per_px: float | None = None,
) -> dict:
    """The `titan_x` section of a profile (see schema.py).

    `measured_plan`: the tile plan of the run that took `measured_seconds`;
    `workload_plan`: the plan the runtime would use for the workload's size (with the
    workload's own patch and stride where the paper fixes them).
    """
    if row is None:
        return {
            "workload": None, "seconds": None, "device_seconds": None, "ratio": None,
            "method": None, "note": "the papers publish no Titan X time for this model",
        }
    same = (measured_plan.height, measured_plan.width) == (workload_plan.height, workload_plan.width)
    if same:
        device_seconds, method = measured_seconds, "measured"
    else:
        factor = processed_pixels(workload_plan) / processed_pixels(measured_plan)
        device_seconds = measured_seconds * factor
        method = (
            f"extrapolated x{factor:.4g} from the measured {_describe_plan(measured_plan)} "
            f"to {_describe_plan(workload_plan)} by graph input pixels processed"
        )
    result = {
        "workload": row.key,
        "description": row.describe(),
        "size": {"width": row.width, "height": row.height},
        "seconds": row.seconds,
        "precision": row.precision,
        "device_seconds": device_seconds,
        "ratio": None if row.seconds is None else device_seconds / row.seconds,
        "method": method,
        "size_matches": bool(flags.get("size_matches")),
        "tiling_matches": bool(flags.get("tiling_matches")),
        "source": row.source,
        "note": row.note,
    }
    if row.seconds is not None and flops_per_px is not None:
        # What the paper's time implies about the Titan X, with our FLOP count.
        tflops = flops_per_px * row.output_pixels / row.seconds / 1e12
        result["titan_x_implied_tflops"] = tflops
        result["titan_x_implied_fraction_of_fp32_peak"] = tflops / (sum(TITAN_X["fp32_tflops"]) / 2)
    return result


def workload_plan(row: Workload, rules, scale: int, input_kind: str, patch: tuple[int, int], overlap: int):
    """The tile plan of the workload on this runtime, in graph input pixels.

    The graph input is the LR image (`input_kind` "lr") or the upscaled image, which the
    papers feed at exactly the workload's size. A "whole" workload is one tile, a
    (patch, stride) workload uses the paper's patch brought to a legal size and its
    stride, and an unspecified one the run's own patch and overlap.
    """
    from srexport.runtime.tiler import plan_tiles

    if input_kind == "upscaled":
        height, width = row.height, row.width
    else:
        width, height = lr_size(row.width, row.height, scale)
    if row.tiling == "whole":
        patch, overlap = (rules.legal_at_least(height), rules.legal_at_least(width)), 0
    elif isinstance(row.tiling, tuple):
        edge = rules.legal_at_least(row.tiling[0])
        patch, overlap = (edge, edge), max(0, edge - row.tiling[1])
    return plan_tiles(height, width, patch, overlap, rules)


def lr_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """LR (width, height) whose `scale`x output is closest to (width, height), at least 1."""
    return max(1, math.floor(width / scale + 0.5)), max(1, math.floor(height / scale + 0.5))
