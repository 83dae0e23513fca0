"""Small models with known behaviour, for testing the exporter and the runtime."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srexport.models.base import NoiseInput, ShapeRules, SRModel


class PixelModel(SRModel):
    """x2 network whose output pixel depends only on its own input pixel (and, with
    noise, on the noise at the same output pixel): tiling must not change it at all."""

    scale = 2
    input_kind = "lr"

    def __init__(self, noisy: bool = False, multiple_of: int = 1, offset: int = 0, min_size: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 1)
        self.noise_inputs = (NoiseInput("noise0", 1, 2, 0),) if noisy else ()
        self._rules = ShapeRules(multiple_of=multiple_of, offset=offset, min_size=min_size, output_scale=2, halo=0)

    def shape_rules(self) -> ShapeRules:
        return self._rules

    def forward(self, image, *noise):
        out = F.pixel_shuffle(torch.sigmoid(self.conv(image)), 2)
        return out + noise[0] if noise else out


class BorderModel(SRModel):
    """x2 network with a 3x3 receptive field and its own reflection padding by 2, whose
    noise enters at the padded size: exercises the noise border bookkeeping."""

    scale = 2
    input_kind = "lr"
    noise_inputs = (NoiseInput("noise0", 1, 1, 2),)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 12, 3)

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(min_size=3, output_scale=2, halo=1)

    def forward(self, image, noise):
        padded = F.pad(image, (2, 2, 2, 2), mode="reflect")
        out = self.conv(torch.cat([padded, noise], 1))[..., 1:-1, 1:-1]
        return F.pixel_shuffle(out, 2)


class ConvStack(SRModel):
    """x2 network of `depth` 3x3 zero-padded convs: receptive-field radius exactly `depth`
    input pixels, with a border effect at the image edge (zero padding at every layer)."""

    scale = 2
    input_kind = "lr"

    def __init__(self, depth: int = 3, multiple_of: int = 1, pad_align: str = "end"):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(depth)])
        self.out = nn.Conv2d(8, 12, 1)
        self._rules = ShapeRules(multiple_of=multiple_of, min_size=multiple_of, output_scale=2, halo=depth,
                                 pad_align=pad_align)

    def shape_rules(self) -> ShapeRules:
        return self._rules

    def forward(self, image):
        x = image
        for conv in self.convs:
            x = torch.tanh(conv(x))
        return F.pixel_shuffle(self.out(x), 2)
