"""Published inference recipes: the MGBPv2 authors' 16x block averaging (AIM 2019, `run.py`).

Their recipe, for a bundle whose graph takes the bicubic-upscaled image:
- the 8-bit LR image is upscaled with PIL's bicubic filter on 8-bit pixels (rounded and
  clipped to 0..255, not float planes);
- an image smaller than the block along an axis is reflect-padded up to the block,
  floor(d/2) before and the rest after (then cropped back);
- blocks of `block` pixels with top-left corners round(linspace(0, size - block, n)),
  n = max((size - block) // skip + 1, 2) along the rows but max((size - block) // skip, 2)
  along the columns (their code, kept as it is: it decides where the seams fall);
- each block's output weighted by the separable triangle [1, 2, .., ceil(b/2), .., 2, 1]
  divided by its mean (it never reaches zero), summed, divided by the summed weights.
Presets: `aim2019-perceptual` (767 px blocks, 64 apart; the authors run it at W = 1) and
`aim2019-fidelity` (667 px, 128 apart; W = 0); `aim2019` picks by the bundle's variant.
The runtime accumulates in float32 where the authors use float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from srexport.errors import ShapeError, SrExportError
from srexport.shapes import ShapeRules
from srexport.runtime.tiler import TilePlan

WINDOW = "triangular-authors"  # srexport.runtime.blend.triangular_window


@dataclass(frozen=True)
class BlockRecipe:
    name: str
    block: int
    skip: int
    window: str = WINDOW


RECIPES: dict[str, BlockRecipe] = {
    "aim2019-perceptual": BlockRecipe("aim2019-perceptual", 767, 64),
    "aim2019-fidelity": BlockRecipe("aim2019-fidelity", 667, 128),
}
_BY_VARIANT = {"aim2019-16x": "aim2019-perceptual", "aim2019-fidelity": "aim2019-fidelity"}
NAMES = ("aim2019", *RECIPES)


def resolve(name: str, manifest) -> BlockRecipe:
    """The recipe `name` for this bundle (`aim2019` by its variant); one clear error otherwise."""
    if name not in NAMES:
        raise SrExportError(f"unknown recipe '{name}' (recipes: {', '.join(NAMES)})")
    if manifest.input_kind != "upscaled":
        raise SrExportError(f"recipe {name} is the block averaging of networks that take the bicubic-upscaled "
                            f"image; {manifest.model} takes the LR image")
    if name == "aim2019":
        if manifest.variant not in _BY_VARIANT:
            raise SrExportError(f"recipe aim2019 knows the variants {', '.join(_BY_VARIANT)}, not "
                                f"'{manifest.variant}': name aim2019-perceptual or aim2019-fidelity")
        name = _BY_VARIANT[manifest.variant]
    return RECIPES[name]


def block_corners(length: int, block: int, skip: int, columns: bool) -> list[int]:
    """Distinct block starts along an axis of `length` (>= block) pixels (module docstring)."""
    steps = (length - block) // skip + (0 if columns else 1)
    corners = np.linspace(0, length - block, max(steps, 2)).round().astype(int)
    return sorted(set(int(c) for c in corners))  # equal corners weigh the same block twice: one suffices


def plan_blocks(height: int, width: int, recipe: BlockRecipe, rules: ShapeRules) -> TilePlan:
    """The tiling of a (height, width) graph-input image by the recipe's blocks."""
    if height < 1 or width < 1:
        raise ShapeError(f"empty image ({height}x{width})")
    b = recipe.block
    if not rules.is_legal(b):
        raise ShapeError(f"recipe {recipe.name}: block {b} is not a legal input size of this network "
                         f"(next legal: {rules.legal_at_least(b)})")
    extra_h, extra_w = max(0, b - height), max(0, b - width)
    rows = block_corners(height + extra_h, b, recipe.skip, columns=False)
    cols = block_corners(width + extra_w, b, recipe.skip, columns=True)
    return TilePlan(height, width, b, b, extra_h, extra_w, tuple((t, l) for t in rows for l in cols),
                    extra_h // 2, extra_w // 2)


def pre_upscale_8bit(planes: np.ndarray, scale: int) -> np.ndarray:
    """PIL bicubic of the 8-bit RGB image (planes are its values / 255), back to [0, 1]."""
    rgb = np.round(np.clip(planes, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0)
    image = Image.fromarray(rgb, "RGB")
    up = image.resize((image.width * scale, image.height * scale), Image.BICUBIC)
    return np.ascontiguousarray(np.asarray(up).transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
