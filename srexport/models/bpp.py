"""BPP: the Back-Projection Pipeline (paper `bpp.txt`, Algorithm 1 / Figure 3).

Network (models.md "BPP", our reading of Algorithm 1; the figure is not in the text):
4 levels, channels 256/128/64/48 from the lowest (H/8) to the highest (H) resolution,
16 flux-blocks, all feature convolutions 3x3 with bias.

- Scalers: three learned 9x9 depthwise convolutions (3 channels, no bias), each a 2x
  downscale of the level above (replicate padding 4, stride 2): the level images are
  X_4 = X, X_{k-1} = S_k(X_k). They are initialised from the Keys (a = -0.5) bicubic
  kernel stretched by 2 (the antialiased 2x bicubic of MATLAB/PIL: 8 taps, the 9th zero),
  so an untrained BPP's analysis is a real cascade of 2x bicubic downscales.
- Analysis_k: 3x3 conv 3 -> C_k (padding 1) on X_k gives the state h_k.
- Flux-block: for k = 2, 3, 4 in order (low to high, scale causality):
  h_k <- h_k + P_k(concat[R_k(h_k), h_{k-1}]), R_k = 3x3 conv stride 2 padding 1
  C_k -> C_{k-1} (no activation), P_k = InstanceNorm(2 C_{k-1}, affine) -> ReLU -> 3x3
  transposed conv stride 2, padding 1, output_padding 1, 2 C_{k-1} -> C_k. h_1 never changes.
- Output = X + Synthesis(h_4), Synthesis = 3x3 conv 48 -> 3 (padding 1).

Parameters: flux units 27 (48*64 + 64*128 + 128*256) * 16 = 19,021,824 weights, their
biases and instance-norm affines 39,680, analysis 13,888, synthesis 1,299, scalers 729:
19,077,420 in total (the paper states 19 million; models.md's figure). MACs per output
pixel at any legal size: 777,492 in conv and transposed-conv layers (flux units 774,144 as
models.md's formula, analysis 2,052, synthesis 1,296), plus about 80 in the scalers.

Sizes: three stride-2 levels need H, W multiples of 8, and the instance norm at the
lowest level needs more than one pixel there, so the smallest legal size is 16. The
output has the input's size. halo is None: instance norm makes every output pixel depend
on the whole patch, so inference runs on overlapping patches of the training patch size
(48f x 48f for f = 2, 3, 4 and 192 for f = 8 and the multi-factor model: appendix).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from srexport.models.base import ShapeRules, SRModel
from srexport.models.registry import ModelEntry

CHANNELS = (256, 128, 64, 48)  # lowest -> highest resolution
BLOCKS = 16
SCALER_TAPS = 9
VARIANTS = {"x2": 2, "x3": 3, "x4": 4, "x8": 8}
TRAINING_PATCH = {2: 96, 3: 144, 4: 192, 8: 192}  # 48f, and 192 for 8x (paper appendix)


def keys_cubic(x: float, a: float = -0.5) -> float:
    """The Keys cubic convolution kernel."""
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def bicubic_downscale_taps(factor: int) -> list[float]:
    """The 4*factor taps of an antialiased bicubic downscale by an integer factor.

    Output pixel i is centred at input position factor*i + (factor-1)/2; tap j reads input
    factor*i - 3*factor/2 + j (for even factors), weight keys(d/factor) normalised to sum 1.
    """
    n = 4 * factor
    centre = (n - 1) / 2
    taps = [keys_cubic((j - centre) / factor) for j in range(n)]
    total = sum(taps)
    return [t / total for t in taps]


def bicubic_scaler_kernel(taps: int = SCALER_TAPS) -> torch.Tensor:
    """(3, 1, taps, taps) depthwise 2x bicubic downscale kernel for stride 2, padding taps//2."""
    one = bicubic_downscale_taps(2)  # 8 taps over input 2i-3 .. 2i+4
    row = [0.0] * (taps - len(one)) + one  # with padding 4 the 9 taps read 2i-4 .. 2i+4
    k = torch.tensor(row, dtype=torch.float64)
    return torch.outer(k, k).expand(3, 1, taps, taps).clone().float()


class FluxUnit(nn.Module):
    """h_k + P_k(concat[R_k(h_k), h_{k-1}]) for one level of one flux-block."""

    def __init__(self, channels: int, lower: int) -> None:
        super().__init__()
        self.down = nn.Conv2d(channels, lower, 3, stride=2, padding=1)
        self.up = nn.Sequential(
            nn.InstanceNorm2d(2 * lower, affine=True),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * lower, channels, 3, stride=2, padding=1, output_padding=1),
        )

    def forward(self, h: torch.Tensor, lower_state: torch.Tensor) -> torch.Tensor:
        return h + self.up(torch.cat([self.down(h), lower_state], 1))


class FluxBlock(nn.Module):
    """One flux unit per level above the lowest, applied low to high."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.units = nn.ModuleList(
            FluxUnit(channels[k], channels[k - 1]) for k in range(1, len(channels))
        )

    def forward(self, states: list[torch.Tensor]) -> list[torch.Tensor]:
        states = list(states)
        for k, unit in enumerate(self.units, start=1):
            states[k] = unit(states[k], states[k - 1])
        return states


class BPP(SRModel):
    """BPP on the bicubic-upscaled image; output = input + Synthesis(highest state)."""

    input_kind = "upscaled"

    def __init__(
        self, scale: int, channels: tuple[int, ...] = CHANNELS, blocks: int = BLOCKS
    ) -> None:
        super().__init__()
        self.scale = scale
        self.channels = tuple(channels)
        levels = len(self.channels)
        # scalers[k] takes level k+1's image to level k (k = 0 .. levels-2)
        self.scalers = nn.ParameterList(
            nn.Parameter(bicubic_scaler_kernel()) for _ in range(levels - 1)
        )
        self.analysis = nn.ModuleList(nn.Conv2d(3, c, 3, padding=1) for c in self.channels)
        self.blocks = nn.ModuleList(FluxBlock(self.channels) for _ in range(blocks))
        self.synthesis = nn.Conv2d(self.channels[-1], 3, 3, padding=1)

    @property
    def levels(self) -> int:
        return len(self.channels)

    def downscale(self, image: torch.Tensor, level: int) -> torch.Tensor:
        """The learned 2x scaler from level `level + 1` to `level`."""
        pad = SCALER_TAPS // 2
        padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
        return F.conv2d(padded, self.scalers[level], stride=2, groups=3)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        images = [image]
        for level in range(self.levels - 2, -1, -1):
            images.insert(0, self.downscale(images[0], level))
        states = [analysis(x) for analysis, x in zip(self.analysis, images)]
        for block in self.blocks:
            states = block(states)
        return image + self.synthesis(states[-1])

    def shape_rules(self) -> ShapeRules:
        multiple = 2 ** (self.levels - 1)
        return ShapeRules(
            multiple_of=multiple,
            offset=0,
            min_size=2 * multiple,  # instance norm needs > 1 pixel at the lowest level
            output_scale=1,
            halo=None,
            pad_rule=(
                f"reflect-pad to the next multiple of {multiple} (at least {2 * multiple}), "
                "crop the output; instance norm makes the output depend on the whole patch: "
                "run overlapping patches of the training patch size"
            ),
        )

    def recommended_patch(self) -> int:
        """The training patch size of this factor (instance norm statistics)."""
        patch = TRAINING_PATCH.get(self.scale, 192)
        return self.shape_rules().legal_at_least(patch)


def build(variant: str, scale: int) -> BPP:
    factor = VARIANTS[variant]
    if scale != factor:
        raise ValueError(f"BPP {variant} is an x{factor} network, not x{scale}")
    return BPP(scale)


def expected_parameters(channels: tuple[int, ...] = CHANNELS, blocks: int = BLOCKS) -> int:
    """The parameter count of the reading above, from the formula (a cross-check)."""
    flux = 0
    for k in range(1, len(channels)):
        c, low = channels[k], channels[k - 1]
        flux += 9 * c * low + low  # R_k
        flux += 2 * (2 * low)  # instance norm affine
        flux += 9 * 2 * low * c + c  # P_k
    analysis = sum(28 * c for c in channels)
    synthesis = 9 * channels[-1] * 3 + 3
    scalers = (len(channels) - 1) * 3 * SCALER_TAPS**2
    return flux * blocks + analysis + synthesis + scalers


ENTRY = ModelEntry(
    name="bpp",
    description=(
        "BPP back-projection pipeline (16 flux-blocks, 4 levels, instance norm) on the "
        "bicubic-upscaled image; one checkpoint per factor"
    ),
    variants={name: (factor,) for name, factor in VARIANTS.items()},
    default_variant="x4",
    needs_weights=False,
    factory=build,
    weights_hint="no published weights: the export carries the bicubic-initialised scalers "
    "and random feature convolutions",
    extra={"parameters": 19_077_420, "paper_parameters": "19 million"},
)
