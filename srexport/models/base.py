"""The contract every exported network honours.

An `SRModel` is an `nn.Module` whose forward takes the image (NCHW float32, RGB in
[0, 1]) followed by one tensor per entry of `noise_inputs`, and returns the
super-resolved image (not clamped). Everything the exporter and the runtime need to
know about sizes is computed from the module's own hyper-parameters by
`shape_rules()` and `noise_inputs`, never typed into a table.
"""

from __future__ import annotations

import torch
from torch import nn

from srexport.shapes import InputKind, NoiseInput, ShapeRules

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
