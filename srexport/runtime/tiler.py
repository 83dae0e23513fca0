"""Where the patches go: overlapping, equally sized, legal tiles covering an image."""

from __future__ import annotations

from dataclasses import dataclass

from srexport.errors import ShapeError
from srexport.models.base import ShapeRules


def axis_starts(length: int, patch: int, overlap: int) -> list[int]:
    """Start offsets of patches of size `patch` covering [0, length) with at least
    `overlap` shared pixels; the last patch ends exactly at `length` (>= patch)."""
    if length <= patch:
        return [0]
    stride = patch - overlap
    starts = list(range(0, length - patch, stride))
    starts.append(length - patch)
    return starts


@dataclass(frozen=True)
class TilePlan:
    """Tiling of an image of (height, width) input pixels.

    The image is reflect-padded by `margin` on every side, then on the bottom/right
    by (`extra_h`, `extra_w`) so that the padded canvas is at least one legal patch.
    Tiles are (patch_h, patch_w) at the listed (top, left) of the padded image.
    """

    height: int
    width: int
    patch_h: int
    patch_w: int
    margin: int
    extra_h: int
    extra_w: int
    tiles: tuple[tuple[int, int], ...]

    @property
    def padded_size(self) -> tuple[int, int]:
        return (self.height + 2 * self.margin + self.extra_h, self.width + 2 * self.margin + self.extra_w)


def legal_patch(requested: int, rules: ShapeRules) -> int:
    if requested < rules.min_size:
        raise ShapeError(f"patch {requested} is smaller than the model's minimum {rules.min_size}")
    return rules.legal_at_least(requested)


def plan_tiles(height: int, width: int, patch: tuple[int, int], overlap: int, rules: ShapeRules) -> TilePlan:
    """Plan legal tiles for an image; a patch larger than the image shrinks to fit it."""
    if height < 1 or width < 1:
        raise ShapeError(f"empty image ({height}x{width})")
    ph, pw = (legal_patch(p, rules) for p in patch)
    if overlap < 0 or overlap >= min(ph, pw):
        raise ShapeError(f"overlap {overlap} must be >= 0 and smaller than the patch ({ph}x{pw})")
    margin = overlap // 2
    full_h, full_w = height + 2 * margin, width + 2 * margin
    # One patch covering the whole image is cheaper than several overlapping ones.
    ph = min(ph, rules.legal_at_least(full_h))
    pw = min(pw, rules.legal_at_least(full_w))
    extra_h, extra_w = max(0, ph - full_h), max(0, pw - full_w)
    rows = axis_starts(full_h + extra_h, ph, overlap)
    cols = axis_starts(full_w + extra_w, pw, overlap)
    tiles = tuple((top, left) for top in rows for left in cols)
    return TilePlan(height, width, ph, pw, margin, extra_h, extra_w, tiles)
