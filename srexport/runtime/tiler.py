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

    The image is reflect-padded on the bottom/right by (`extra_h`, `extra_w`) only
    where it is smaller than one legal patch. Tiles are (patch_h, patch_w) at the
    listed (top, left). Image borders are not padded: a tile edge on the image border
    sees exactly what the untiled network sees there, so the borders match the untiled
    output and only interior seams carry the network's boundary effect, which the
    overlap and the window hide.
    """

    height: int
    width: int
    patch_h: int
    patch_w: int
    extra_h: int
    extra_w: int
    tiles: tuple[tuple[int, int], ...]

    @property
    def padded_size(self) -> tuple[int, int]:
        return (self.height + self.extra_h, self.width + self.extra_w)


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
    # One patch covering the whole image is cheaper than several overlapping ones.
    ph = min(ph, rules.legal_at_least(height))
    pw = min(pw, rules.legal_at_least(width))
    extra_h, extra_w = max(0, ph - height), max(0, pw - width)
    rows = axis_starts(height + extra_h, ph, overlap)
    cols = axis_starts(width + extra_w, pw, overlap)
    tiles = tuple((top, left) for top in rows for left in cols)
    return TilePlan(height, width, ph, pw, extra_h, extra_w, tiles)
