"""The contract every exported network honours.

An `SRModel` is an `nn.Module` whose forward takes the image (NCHW float32, RGB in
[0, 1]) followed by one tensor per entry of `noise_inputs`, and returns the
super-resolved image (not clamped). Everything the exporter and the runtime need to
know about sizes is computed from the module's own hyper-parameters by
`shape_rules()` and `noise_inputs`, never typed into a table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

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


class SRModel(nn.Module):
    """Base class of the model zoo (see the module docstring for the contract)."""

    scale: int = 1
    input_kind: InputKind = "lr"
    noise_inputs: tuple[NoiseInput, ...] = ()
    # Checkpoint keys of integer index tables (permutations the authors saved as buffers)
    # that the module rebuilds itself; `adapt_checkpoint` checks and removes them.
    index_buffers: tuple[str, ...] = ()

    def shape_rules(self) -> ShapeRules:  # pragma: no cover - every model overrides
        raise NotImplementedError

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a published checkpoint's keys onto this module's state_dict keys."""
        return state

    def graph_parameters(self) -> int:
        """Parameters the exported graph uses (a multi-scale model exports one scale)."""
        return count_parameters(self)

    def recommended_patch(self) -> int:
        """Default patch edge in input pixels for tiled inference."""
        return self.shape_rules().legal_at_least(128)

    def example_inputs(self, batch: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
        """Deterministic inputs for tracing and verification."""
        gen = torch.Generator().manual_seed(0)
        image = torch.rand(batch, 3, height, width, generator=gen)
        noises = tuple(
            torch.full(n.shape(batch, height, width), 0.1)
            if n.kind == "amplitude"
            else 0.1 * torch.randn(*n.shape(batch, height, width), generator=gen)
            for n in self.noise_inputs
        )
        return (image, *noises)


def count_parameters(module: nn.Module) -> int:
    """Distinct parameters (a tensor shared by several layers counts once)."""
    return sum(p.numel() for p in module.parameters())
