"""The MGBP multi-scale discriminator and its VN+SC layer (journal Fig. 7-8, eq. 7-8).

VN+SC (`VNSC`, the reference every other VN+SC implementation is checked against):
RGB in [0, 1] -> luminance Y = 255 (0.299 R + 0.587 G + 0.114 B) on a [0, 255] scale;
mu = G(Y), s2 = G(Y^2) - mu^2 with G the 7x7 Gaussian (sigma 1.17, taps normalised to sum
1) on the replicate-padded image (evaluated on differences to the centre pixel, free
of float32 cancellation, see `VNSC`); N = (Y - mu) / (sqrt(max(s2, 0)) + 1); 49 channels
V[7(p+3) + (q+3)](i, j) = N(i, j) N(i+p, j+q), p, q in -3..3, zero where (i+p, j+q) leaves
the image. No parameters.

Discriminator (models.md; 64 features as models.md adopts):
- The HR image X and its fixed bicubic downscales S_2 X, S_4 X, S_8 X (antialiased Keys
  a = -0.5 kernels of 4f taps, stride f, replicate padding 3f/2: exactly H/f x W/f).
- Stage 0 reads VNSC(X) (49 channels); stage s > 0 reads concat[stage s-1 output (64),
  VNSC(S_{2^s} X) (49)]. Each stage is four 3x3 convolutions (padding 1, bias), the last
  with stride 2, each followed by LeakyReLU(0.2) except the very last one, which emits the
  one-channel score map C (before the sigmoid) at H/16 x W/16.

Reading choices (the papers give no more): LeakyReLU(0.2) activations; the stride-2 conv
of the last stage is the one emitting the score channel; fixed direct bicubic downscales
from X (not a cascade of 2x ones); concat order [features, VN+SC].

Parameters (weights + biases): stage 0 49*64*9+64 + 3*(64*64*9+64) = 139,072; stages 1
and 2 113*64*9+64 + 3*(64*64*9+64) = 175,936 each; stage 3 65,152 + 2*36,928 + 64*9+1 =
139,585; 630,529 in total. The bicubic downscales and VN+SC are fixed (buffers, not
parameters, not in the state_dict).

Sizes: H, W multiples of 16 (three exact downscales to H/8, then the last stride-2 conv),
at least 16. The score map is (H/16, W/16): ShapeRules cannot express a fractional output
scale, so `output_scale` stays 1 (the model's "scale") and `score_stride` = 16 records the
real ratio. halo = 92: score pixel o reads HR rows 16o-92 .. 16o+99, derived in
`receptive_field()` (92 before its own 16x16 block, 84 after; the tests check it against
autograd).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from srexport.models.base import ShapeRules, SRModel
from srexport.models.bpp import bicubic_downscale_taps
from srexport.models.registry import ModelEntry

LUMA = (0.299, 0.587, 0.114)
GAUSS_SIZE = 7
GAUSS_SIGMA = 1.17
SHIFT = 3  # p, q in -3..3
FEATURES = 64
FACTORS = (2, 4, 8)  # bicubic downscales entering stages 1, 2, 3
STAGE_LAYERS = 4
SLOPE = 0.2


def gaussian_kernel(size: int = GAUSS_SIZE, sigma: float = GAUSS_SIGMA) -> torch.Tensor:
    """(1, 1, size, size) Gaussian with taps normalised to sum 1."""
    r = size // 2
    g = torch.tensor([math.exp(-(x * x) / (2 * sigma * sigma)) for x in range(-r, r + 1)],
                     dtype=torch.float64)
    g2 = torch.outer(g, g)
    return (g2 / g2.sum()).float().view(1, 1, size, size)


def shifted(padded: torch.Tensor, dy: int, dx: int, pad: int) -> torch.Tensor:
    """The (H, W) window of an image padded by `pad` on every side, moved by (dy, dx):
    shifted(padded, dy, dx, pad)[..., i, j] == image[..., i + dy, j + dx] (or the padding).
    The slice ends are negative constants, so a traced graph keeps H and W dynamic."""
    rows = slice(pad + dy, (dy - pad) or None)
    cols = slice(pad + dx, (dx - pad) or None)
    return padded[:, :, rows, cols]


class VNSC(nn.Module):
    """Variance normalisation and shift correlator: (N, 3, H, W) RGB in [0, 1] -> (N, 49, H, W).

    mu = G(Y) and s2 = G(Y^2) - mu^2 are evaluated on the differences to the centre pixel,
    d_k = Y(i + k) - Y(i) over the 49 replicate-padded Gaussian taps g_k:
        Y - mu = -sum_k g_k d_k,    s2 = sum_k g_k d_k^2 - (sum_k g_k d_k)^2,
    equal to the definitions in exact arithmetic because the taps sum to 1. The literal
    one-pass form cancels catastrophically in float32 (Y^2 reaches 65025): about 1 % error
    in V on bright, low-contrast patches such as sky, and nothing usable in float16. The
    differences are small and exact, so this form stays within 1e-4 of the float64
    definition. The clamp max(s2, 0) is kept as specified.
    """

    radius = GAUSS_SIZE // 2

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("gauss", gaussian_kernel(), persistent=False)

    @staticmethod
    def luminance(rgb: torch.Tensor) -> torch.Tensor:
        """Y on a [0, 255] scale, (N, 1, H, W)."""
        r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
        return 255.0 * (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b)

    def normalise(self, rgb: torch.Tensor) -> torch.Tensor:
        """N = (Y - mu) / (sqrt(max(s2, 0)) + 1), (N, 1, H, W)."""
        r = self.radius
        y = self.luminance(rgb)
        padded = F.pad(y, (r, r, r, r), mode="replicate")
        mean_d = torch.zeros_like(y)  # G(Y) - Y
        mean_d2 = torch.zeros_like(y)  # G((Y - Y(i))^2)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                weight = float(self.gauss[0, 0, dy + r, dx + r])
                d = shifted(padded, dy, dx, r) - y
                mean_d = mean_d + weight * d
                mean_d2 = mean_d2 + weight * d * d
        s2 = mean_d2 - mean_d * mean_d  # = G(Y^2) - G(Y)^2
        return -mean_d / (torch.sqrt(torch.clamp(s2, min=0.0)) + 1.0)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        n = self.normalise(rgb)
        padded = F.pad(n, (SHIFT, SHIFT, SHIFT, SHIFT))  # shifts leaving the image read 0
        channels = [
            n * shifted(padded, p, q, SHIFT)  # channel 7(p+3) + (q+3): N(i,j) N(i+p,j+q)
            for p in range(-SHIFT, SHIFT + 1)
            for q in range(-SHIFT, SHIFT + 1)
        ]
        return torch.cat(channels, 1)


class BicubicDownscale(nn.Module):
    """Fixed antialiased bicubic downscale by an integer factor (even), as a strided conv."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor
        taps = torch.tensor(bicubic_downscale_taps(factor), dtype=torch.float64)
        kernel = torch.outer(taps, taps).float().expand(3, 1, 4 * factor, 4 * factor).clone()
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pad = 3 * self.factor // 2
        padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
        return F.conv2d(padded, self.kernel, stride=self.factor, groups=3)


def _stage(in_channels: int, out_channels: int, last: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for i in range(STAGE_LAYERS):
        final = i == STAGE_LAYERS - 1
        out = out_channels if final else FEATURES
        layers.append(nn.Conv2d(channels, out, 3, stride=2 if final else 1, padding=1))
        if not (final and last):
            layers.append(nn.LeakyReLU(SLOPE))
        channels = out
    return nn.Sequential(*layers)


class Discriminator(SRModel):
    """forward(HR image) -> score map C (N, 1, H/16, W/16), before the sigmoid."""

    scale = 1
    input_kind = "lr"  # the image is fed as it is (no resize before the graph)
    score_stride = 2 * 2 ** len(FACTORS)

    def __init__(self) -> None:
        super().__init__()
        self.vnsc = VNSC()
        self.downscales = nn.ModuleList(BicubicDownscale(f) for f in FACTORS)
        stages = [_stage(7 * 7, FEATURES, last=False)]
        for i in range(len(FACTORS)):
            last = i == len(FACTORS) - 1
            stages.append(_stage(FEATURES + 7 * 7, 1 if last else FEATURES, last))
        self.stages = nn.ModuleList(stages)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.stages[0](self.vnsc(image))
        for down, stage in zip(self.downscales, self.stages[1:]):
            h = stage(torch.cat([h, self.vnsc(down(image))], 1))
        return h

    def receptive_field(self) -> tuple[int, int]:
        """(lo, hi): score pixel o reads HR rows score_stride*o + lo .. score_stride*o + hi.

        Each map is tracked as (a, lo, hi): its pixel o reads HR pixels a*o+lo .. a*o+hi.
        VN+SC widens by 6 of its own pixels (Gaussian radius 3, then shifts up to 3); a
        3x3 stride-1 conv by 1; the stride-2 conv reads 2o-1..2o+1 so (a, lo, hi) becomes
        (2a, lo-a, hi+a); S_f pixel i reads f*i - 3f/2 .. f*i + 5f/2 - 1; concat unites."""
        r = GAUSS_SIZE // 2 + SHIFT

        def vnsc(m):
            a, lo, hi = m
            return a, lo - r * a, hi + r * a

        def stage(m):
            a, lo, hi = m
            lo, hi = lo - (STAGE_LAYERS - 1) * a, hi + (STAGE_LAYERS - 1) * a
            return 2 * a, lo - a, hi + a

        m = stage(vnsc((1, 0, 0)))
        for f in FACTORS:
            a, lo, hi = vnsc((f, -3 * f // 2, 5 * f // 2 - 1))
            assert a == m[0]
            m = stage((a, min(lo, m[1]), max(hi, m[2])))
        assert m[0] == self.score_stride
        return m[1], m[2]

    def shape_rules(self) -> ShapeRules:
        lo, hi = self.receptive_field()
        stride = self.score_stride
        return ShapeRules(
            multiple_of=stride,
            offset=0,
            min_size=stride,
            output_scale=1,
            halo=max(-lo, hi - (stride - 1)),  # beyond the score pixel's own 16x16 block
            pad_rule=(
                f"reflect-pad to the next multiple of {stride}; the score map is "
                f"(H/{stride}, W/{stride}) of the padded image"
            ),
        )


def build(variant: str, scale: int) -> Discriminator:
    if scale != 1:
        raise ValueError("the discriminator works at scale 1")
    return Discriminator()


ENTRY = ModelEntry(
    name="discriminator",
    description=(
        "MGBPv2 multi-scale discriminator with VN+SC inputs (HR image and its bicubic "
        "downscales by 2, 4, 8); returns the score map before the sigmoid"
    ),
    variants={"default": (1,)},
    default_variant="default",
    needs_weights=False,
    factory=build,
    task="critic",
    weights_hint="no published weights",
    extra={"score_stride": Discriminator.score_stride, "score_channels": 1},
)
