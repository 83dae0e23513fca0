"""The sizes a graph takes and the noise maps it is fed: plain records the manifest, the
tiler, the memory budget and the TensorRT profiles share with the models (which compute them
from their own hyper-parameters, `srexport.models.base.SRModel.shape_rules`). Nothing here
imports torch, so reading a bundle and running it never does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

InputKind = Literal["lr", "upscaled"]


@dataclass(frozen=True)
class NoiseInput:
    """A noise map fed to the graph, already multiplied by the amplitude W.

    For an input patch of height h its shape is
    (N, channels, factor * (h + 2 * border), factor * (w + 2 * border)).
    `border` is the padding the network applies to the input before the level the
    noise enters, so the runtime can draw one field for the whole (padded) image and
    crop it with the same window as the image.
    """

    name: str
    channels: int
    factor: int
    border: int
    # "normal": W times a seed-addressed N(0, 1) field; "amplitude": every value is W
    # itself (for graphs that scale noise features by W, e.g. MGBPv2's W * AnalysisN(Z)).
    kind: Literal["normal", "amplitude"] = "normal"

    def shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        return (
            batch,
            self.channels,
            self.factor * (height + 2 * self.border),
            self.factor * (width + 2 * self.border),
        )


@dataclass(frozen=True)
class ShapeRules:
    """Which input sizes a graph takes and how its output relates to them.

    Legal sizes (each of H and W) are `offset + multiple_of * k >= min_size` for
    integer k >= 0. The graph maps an (h, w) input to an (output_scale * h,
    output_scale * w) output. `halo` is the receptive-field radius in input pixels
    (None when the output depends on the whole patch, as with instance norm), and
    `pad_rule` describes how an arbitrary input is brought to a legal size.
    `pad_align` says where that padding goes: "end" (all of it after the image, at the
    bottom/right) or "split" (ceil(d/2) before and floor(d/2) after in each dimension,
    as the MGBPv2 authors' `init_border` does; with valid convolutions the choice changes
    every output pixel).
    """

    multiple_of: int = 1
    offset: int = 0
    min_size: int = 1
    output_scale: int = 1
    halo: int | None = None
    pad_rule: str = "reflect-pad to the next legal size, crop the output"
    pad_align: Literal["end", "split"] = "end"

    def is_legal(self, size: int) -> bool:
        return size >= self.min_size and (size - self.offset) % self.multiple_of == 0

    def legal_at_least(self, size: int) -> int:
        """Smallest legal size >= `size`."""
        size = max(size, self.min_size)
        rem = (size - self.offset) % self.multiple_of
        return size if rem == 0 else size + self.multiple_of - rem

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ShapeRules":
        return cls(**data)


@dataclass(frozen=True)
class StitchHalo:
    """The halo crop stitching uses, measured at build (`srexport.export.stitch_halo`;
    `Manifest.stitch_halo`): `pixels`, no more than the geometric `ShapeRules.halo`, where
    the input farther away moved the output by at most `tail_bound` (first order) on each of
    `trials` random `window` x `window` inputs (`tails`: the figure of each at pixels - margin)."""

    pixels: int  # the halo crop stitching uses, in input pixels
    geometric: int  # ShapeRules.halo
    tail_bound: float
    margin: int
    window: int
    trials: int
    tails: list[float]  # tail(pixels - margin) per trial

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "StitchHalo":
        return cls(**data)
