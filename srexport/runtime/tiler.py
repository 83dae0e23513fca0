"""Where the patches go: overlapping, equally sized, legal tiles covering an image."""

from __future__ import annotations

from dataclasses import dataclass

from srexport.errors import ShapeError
from srexport.shapes import ShapeRules


def axis_starts(length: int, patch: int, overlap: int) -> list[int]:
    """Start offsets of patches of size `patch` covering [0, length) with at least
    `overlap` shared pixels; the last patch ends exactly at `length` (>= patch)."""
    if length <= patch:
        return [0]
    stride = patch - overlap
    starts = list(range(0, length - patch, stride))
    starts.append(length - patch)
    return starts


def axis_cuts(starts: list[int], patch: int, length: int) -> list[int]:
    """Crop stitching: tile i owns [cuts[i], cuts[i + 1]) of the axis. Each cut lies in the
    middle of the overlap of its two tiles, so with an overlap of at least 2 * halo every
    owned pixel is at least a halo away from the edges of its tile that are not image edges."""
    cuts = [0]
    for previous, start in zip(starts, starts[1:]):
        cuts.append(start + (previous + patch - start) // 2)
    cuts.append(length)
    return cuts


def split_pad(extra: int, align: str) -> int:
    """Padding before the image for `extra` pixels of padding: 0 ("end") or ceil(extra / 2) ("split")."""
    if align == "split":
        return (extra + 1) // 2
    if align == "end":
        return 0
    raise ShapeError(f"unknown pad_align '{align}' (end or split)")


@dataclass(frozen=True)
class TilePlan:
    """Tiling of an image of (height, width) input pixels.

    The image is reflect-padded by (`extra_h`, `extra_w`) only where it is smaller than one
    legal patch: `before_h` / `before_w` of that padding go before the image (top/left),
    the rest after it (the model's `pad_align`). Tiles are (patch_h, patch_w) at the listed
    (top, left) of the padded image. Image borders are not padded otherwise: a tile edge on
    the image border sees exactly what the untiled network sees there.

    `owned` (crop stitching) gives, per tile, the (top, bottom, left, right) rectangle of
    the padded image whose output is taken from that tile alone; the rectangles partition
    the image. Empty for window blending.
    """

    height: int
    width: int
    patch_h: int
    patch_w: int
    extra_h: int
    extra_w: int
    tiles: tuple[tuple[int, int], ...]
    before_h: int = 0
    before_w: int = 0
    owned: tuple[tuple[int, int, int, int], ...] = ()

    @property
    def padded_size(self) -> tuple[int, int]:
        return (self.height + self.extra_h, self.width + self.extra_w)

    @property
    def computed_pixels(self) -> int:
        """Input pixels the network computes (every tile, padding and overlaps included)."""
        return len(self.tiles) * self.patch_h * self.patch_w


def legal_patch(requested: int, rules: ShapeRules) -> int:
    if requested < rules.min_size:
        raise ShapeError(f"patch {requested} is smaller than the model's minimum {rules.min_size}")
    return rules.legal_at_least(requested)


def _fit(height: int, width: int, patch: tuple[int, int], rules: ShapeRules) -> tuple[int, int]:
    ph, pw = (legal_patch(p, rules) for p in patch)
    # One patch covering the whole image is cheaper than several overlapping ones.
    return min(ph, rules.legal_at_least(height)), min(pw, rules.legal_at_least(width))


def check_blend_patch(patch: tuple[int, int], overlap: int, rules: ShapeRules, *, bundle_overlap: bool = False) -> None:
    """Refuse a patch that blended tiles overlapping by `overlap` cannot step over
    (`bundle_overlap`: the overlap is the bundle's, not the caller's, and the line says so)."""
    ph, pw = (legal_patch(p, rules) for p in patch)
    if bundle_overlap and overlap >= min(ph, pw):
        raise ShapeError(f"patch {ph}x{pw} is too small for blended tiles overlapping by the bundle's {overlap} "
                         f"pixels: give a patch of at least {overlap + 1}, or an overlap below {min(ph, pw)}")
    if overlap < 0 or overlap >= min(ph, pw):
        raise ShapeError(f"overlap {overlap} must be >= 0 and smaller than the patch ({ph}x{pw})")


def plan_tiles(height: int, width: int, patch: tuple[int, int], overlap: int, rules: ShapeRules) -> TilePlan:
    """Plan legal tiles for window blending; a patch larger than the image shrinks to fit it."""
    if height < 1 or width < 1:
        raise ShapeError(f"empty image ({height}x{width})")
    check_blend_patch(patch, overlap, rules)
    ph, pw = _fit(height, width, patch, rules)
    extra_h, extra_w = max(0, ph - height), max(0, pw - width)
    rows = axis_starts(height + extra_h, ph, overlap)
    cols = axis_starts(width + extra_w, pw, overlap)
    tiles = tuple((top, left) for top in rows for left in cols)
    return TilePlan(height, width, ph, pw, extra_h, extra_w, tiles,
                    split_pad(extra_h, rules.pad_align), split_pad(extra_w, rules.pad_align))


def crop_overlap(rules: ShapeRules) -> int:
    """The overlap crop stitching needs: twice the halo."""
    if rules.halo is None:
        raise ShapeError("crop stitching needs a finite receptive field (the model's halo is unknown)")
    return 2 * rules.halo


def crop_patch_ok(patch: tuple[int, int], rules: ShapeRules) -> bool:
    """Whether legal patches of this size leave room for crop stitching (patch > 2 * halo)."""
    return rules.halo is not None and min(legal_patch(p, rules) for p in patch) > 2 * rules.halo


def plan_crop(height: int, width: int, patch: tuple[int, int], rules: ShapeRules) -> TilePlan:
    """Plan legal tiles for exact crop stitching: an overlap of 2 * halo and, per tile, the
    rectangle whose output it supplies (see `axis_cuts`). The result equals the untiled
    network's output wherever the receptive field is at most the halo."""
    if height < 1 or width < 1:
        raise ShapeError(f"empty image ({height}x{width})")
    overlap = crop_overlap(rules)
    ph, pw = _fit(height, width, patch, rules)
    for p, length in ((ph, height), (pw, width)):
        if p < length and p <= overlap:
            raise ShapeError(f"patch {p} is too small for crop stitching: it must exceed twice the "
                             f"halo ({overlap}); use a larger patch or --stitch blend")
    extra_h, extra_w = max(0, ph - height), max(0, pw - width)
    rows = axis_starts(height + extra_h, ph, overlap)
    cols = axis_starts(width + extra_w, pw, overlap)
    row_cuts = axis_cuts(rows, ph, height + extra_h)
    col_cuts = axis_cuts(cols, pw, width + extra_w)
    tiles, owned = [], []
    for i, top in enumerate(rows):
        for j, left in enumerate(cols):
            tiles.append((top, left))
            owned.append((row_cuts[i], row_cuts[i + 1], col_cuts[j], col_cuts[j + 1]))
    return TilePlan(height, width, ph, pw, extra_h, extra_w, tuple(tiles),
                    split_pad(extra_h, rules.pad_align), split_pad(extra_w, rules.pad_align), tuple(owned))
