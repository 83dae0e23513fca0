"""Optimization profiles: the min/opt/max input shapes a TensorRT engine accepts.

Patch edges are in the graph's input pixels and follow the model's `ShapeRules` (legal
edges are `offset + multiple_of * k >= min_size`):

- min: the smallest legal edge. The tiler shrinks the patch to the image when the image
  is smaller than one patch (`plan_tiles`), so any legal edge up to the patch can occur;
- opt: the bundle's recommended patch (what full tiles have);
- max: the patch, or a larger legal `max_patch` (for `run --patch` bigger than the
  bundle's), always legal.

Batch: min 1, max `max_batch` (default from the patch area, so that big patches do not
reserve gigabytes), opt half of it (the runtime splits a batch into two halves on two
streams to overlap copies with compute). Noise inputs get the shapes `NoiseInput.shape`
gives for the same batch and edges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from srexport.errors import ShapeError
from srexport.models.base import NoiseInput, ShapeRules

IMAGE_INPUT = "image"
REFERENCE_PIXELS = 8 * 192 * 192  # batch 8 of 192x192 patches per engine call at most
MAX_BATCH_LIMIT = 16

Shape = tuple[int, int, int, int]


@dataclass(frozen=True)
class PatchProfile:
    """Batch and patch-edge ranges (inclusive) of one engine; H and W share the range."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_edge: int
    opt_edge: int
    max_edge: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ShapeError(f"bad batch range {self.min_batch}/{self.opt_batch}/{self.max_batch}")
        if not 1 <= self.min_edge <= self.opt_edge <= self.max_edge:
            raise ShapeError(f"bad patch range {self.min_edge}/{self.opt_edge}/{self.max_edge}")

    @property
    def tag(self) -> str:
        """'b1-4-8_s16-192-192': how the profile appears in an engine's name."""
        return (f"b{self.min_batch}-{self.opt_batch}-{self.max_batch}"
                f"_s{self.min_edge}-{self.opt_edge}-{self.max_edge}")

    def covers(self, other: "PatchProfile") -> bool:
        """True when every shape `other` accepts, this profile accepts too."""
        return (self.min_batch <= other.min_batch and self.max_batch >= other.max_batch
                and self.min_edge <= other.min_edge and self.max_edge >= other.max_edge)

    def accepts(self, batch: int, height: int, width: int) -> bool:
        return (self.min_batch <= batch <= self.max_batch
                and self.min_edge <= height <= self.max_edge and self.min_edge <= width <= self.max_edge)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (f"batch {self.min_batch}..{self.max_batch} (opt {self.opt_batch}), "
                f"patch {self.min_edge}..{self.max_edge} px (opt {self.opt_edge})")


def default_max_batch(patch: int) -> int:
    """Patches per engine call: about 8 x 192^2 pixels, between 1 and 16."""
    return max(1, min(MAX_BATCH_LIMIT, REFERENCE_PIXELS // (patch * patch)))


def smallest_legal(rules: ShapeRules) -> int:
    return rules.legal_at_least(rules.min_size)


def derive_profile(rules: ShapeRules, patch: int, max_patch: int | None = None,
                   max_batch: int | None = None) -> PatchProfile:
    """The profile for tiles of `patch` (and up to `max_patch`) under `rules`."""
    if patch < 1:
        raise ShapeError(f"patch must be positive, got {patch}")
    opt = rules.legal_at_least(patch)
    top = opt if max_patch is None else max(opt, rules.legal_at_least(max_patch))
    batch = default_max_batch(top) if max_batch is None else int(max_batch)
    if batch < 1:
        raise ShapeError(f"max batch must be >= 1, got {batch}")
    return PatchProfile(1, math.ceil(batch / 2), batch, smallest_legal(rules), opt, top)


def profile_for_manifest(manifest, max_patch: int | None = None, max_batch: int | None = None) -> PatchProfile:
    return derive_profile(manifest.shape_rules, manifest.patch, max_patch, max_batch)


def input_shapes(profile: PatchProfile, noise_inputs: list[NoiseInput] | tuple[NoiseInput, ...],
                 image_input: str = IMAGE_INPUT, channels: int = 3) -> dict[str, tuple[Shape, Shape, Shape]]:
    """{input name: (min, opt, max) NCHW shapes} for `IOptimizationProfile.set_shape`."""
    points = (
        (profile.min_batch, profile.min_edge),
        (profile.opt_batch, profile.opt_edge),
        (profile.max_batch, profile.max_edge),
    )
    shapes = {image_input: tuple((n, channels, e, e) for n, e in points)}
    for noise in noise_inputs:
        shapes[noise.name] = tuple(noise.shape(n, e, e) for n, e in points)
    return shapes


def manifest_input_shapes(manifest, profile: PatchProfile) -> dict[str, tuple[Shape, Shape, Shape]]:
    image = manifest.inputs[0] if manifest.inputs else IMAGE_INPUT
    return input_shapes(profile, manifest.noise_inputs, image)
