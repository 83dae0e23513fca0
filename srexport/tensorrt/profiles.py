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

Patch auto (`auto_profile`): the runtime sizes patches from a memory budget, and an image
that fits runs whole, so the engine's largest edge comes from the same budget: the
largest legal square patch whose modelled peak (`srexport.runtime.budget.MemoryModel`) at
the run's batch fits, at most `AUTO_MAX_EDGE`, at least the smallest crop-stitching patch
(2 x halo + 1). The runtime then keeps every patch edge within the engine's range
(`Upscaler` tiles an image wider or taller than the largest edge), so every shape the
budget chooses lies inside the one profile and no engine is rebuilt at run time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from srexport.errors import ShapeError
from srexport.shapes import NoiseInput, ShapeRules

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


AUTO_MAX_EDGE = 2048  # patch auto: the largest engine edge (a 1080p input runs whole)


def auto_profile(rules: ShapeRules, patch: int, model, budget_bytes: float, batch: int = 1,
                 cap: int = AUTO_MAX_EDGE) -> PatchProfile:
    """The profile for patch auto under a memory budget (see the module's docstring).

    `model` has `patch_bytes(h, w, batch)` (a `MemoryModel`); `patch` is the bundle's
    recommended patch (the profile's opt edge unless it exceeds the largest edge)."""
    if batch < 1:
        raise ShapeError(f"batch must be >= 1, got {batch}")
    low = smallest_legal(rules)
    floor = rules.legal_at_least(max(low, 2 * rules.halo + 1 if rules.halo is not None else low))
    top = floor
    edge = _legal_at_most(cap, rules)
    while edge is not None and edge > floor:
        if model.patch_bytes(edge, edge, batch) <= budget_bytes:
            top = edge
            break
        edge = _legal_at_most(edge - 1, rules)
    opt = min(rules.legal_at_least(patch), top)
    return PatchProfile(1, batch, batch, low, max(low, opt), top)


def _legal_at_most(size: int, rules: ShapeRules) -> int | None:
    """The largest legal edge <= size, or None when there is none."""
    if size < smallest_legal(rules):
        return None
    k = (size - rules.offset) // rules.multiple_of
    edge = rules.offset + rules.multiple_of * k
    return edge if edge >= smallest_legal(rules) else None


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
