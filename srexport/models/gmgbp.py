"""G-MGBP: the Generative Multi-Grid Back-Projection network (PIRM-SR 2018), 4x.

The network (Navarrete Michelini, Zhu, Liu; paper `gmgbp-pirm2018.txt`, code
github.com/pnavarre/pirm-sr-2018) upscales the LR image itself by two 2x levels. Four
small densely connected modules (Analysis, Synthesis, Upscaling, Downscaling) and one
learned depthwise 2x upscaler are shared by every level; a multi-grid back-projection
recursion (mu = 2 iterations per level pair) refines the residual features `r_l` of
each level, and one-channel noise maps enter every Upscaling call, which is what lets
the perception-distortion trade-off be set by the noise amplitude W at inference.

Forward, exactly as the authors' `G_MGBP.forward(x, noise_amp=W, pad=True)` with
`set_factor([4, 4])`, `set_mu(2)` and the `..._v3_ms` configuration:

1. reflection-pad the LR image by `factor = 4` pixels;
2. r_0 = Analysis(x_pad); out = x_pad + Synthesis(r_0);
3. for l = 0, 1: out = ClassicUpscale(out); d = Downscaling(Analysis(out));
   r = Upscaling(cat[r_l, d, n_l]); r_{l+1} = BP(r, l + 1); out = out + Synthesis(r_{l+1});
   BP(h, k) repeats mu times h = h + Upscaling(cat[r_{k-1}, BP(Downscaling(h), k-1), n_{k-1}]);
4. crop `factor * factor = 16` pixels from every side (4H x 4W out, not clamped).

Noise. The reference draws n_l = W * N(0, 1) (one channel, r_l's size) inside the
forward pass; here the maps are graph inputs, already multiplied by W, so that tiles
see one consistent field (zeros = the deterministic W = 0 output). The reference also
draws n_2 after the last level, but no layer ever reads it (the Upscaling calls read
n_0 and n_1 only), so only `noise0` (size of r_0: the padded LR grid) and `noise1`
(size of r_1: twice that) are declared and exported; `forward` accepts a third map
for call compatibility with the "noise0, noise1, noise2" signature and ignores it.

Checkpoints. `BOE-R1.model`, `BOE-R2.model`, `BOE-R3.model` are plain state dicts
(68 tensors, 281,084 parameters; R2 and R3 were saved from CUDA tensors). The module
and parameter names here are the authors' own (`Analysis.block.dense.denselayer1.
act_1.norm.bias`, `Upscaling.conv_up.weight`, `Synthesis.conv4.bias`, ...), so they
load unchanged and strictly; no `adapt_checkpoint` is needed. Published amplitudes:
R1 W = 0.0632, R2 W = 0.275, R3 W = 1.0.

Reading choices (each checked against the authors' code):
- "Act" is a learned per-channel bias followed by ReLU (BN0, LEAK0.0); convolutions
  have no bias except the last one of Synthesis.
- No residual connection around a FilterBlock; DenseLayers concatenate [input, new].
- Concatenation order is always [state from the level below, correction, noise].
- ClassicUpscale replicate-pads (the authors pass `padding=pad=True`) and multiplies
  its weight by stride_h * stride_w = 4 before the grouped transposed convolution;
  the learned 9x9 taps are taken from the checkpoint (all 81 are non-zero).
- Only the Upscaling/Downscaling layers present in this configuration exist
  (`Upscaling#L4#M3`: no `post_up`; `Downscaling#L4#M0`: no `pre_down`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from srexport.errors import ModelError
from srexport.models.base import NoiseInput, ShapeRules, SRModel
from srexport.models.registry import ModelEntry
from srexport.models.support import Support as _Support

# Hyper-parameters of the published configuration string
# CH3_BIC_FE48_LEAK0.0_TR0_BN0_MX0_Analysis#L4#K3#D1_Upscaling#L4#M3#K3#D1_
# Downscaling#L4#M0#K3#D1_Synthesis#L4#K3#D1_v3_ms
CHANNELS = 3
FEATURES = 48
GROWTH = 16
BOTTLENECK = 4  # DenseLayer bottleneck width = BOTTLENECK * GROWTH = 64
LEVEL_FACTOR = 2  # each level upscales by 2
LEVELS = 2  # 4x = two 2x levels
MU = 2  # back-projection iterations per level pair
UPSCALER_TAPS = 9  # ClassicUpscale kernel edge


class Bias(nn.Module):
    """A learned per-channel bias (the checkpoint's `...norm.bias`)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(1, -1, 1, 1)


class Act(nn.Module):
    """Bias then ReLU (the authors' `Activ` with BN0, LEAK0.0)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.norm = Bias(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(x))


class DenseLayer(nn.Sequential):
    """Act -> 1x1 conv -> Act -> 3x3 conv; returns cat[input, new GROWTH channels]."""

    def __init__(self, c_in: int) -> None:
        width = BOTTLENECK * GROWTH
        super().__init__(
            OrderedDict(
                act_1=Act(c_in),
                conv_1=nn.Conv2d(c_in, width, 1, bias=False),
                act_2=Act(width),
                conv_2=nn.Conv2d(width, GROWTH, 3, padding=1, bias=False),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, super().forward(x)], 1)


class FilterBlock(nn.Sequential):
    """`depth` DenseLayers then a transition Act -> 1x1 conv back to `features`."""

    def __init__(self, depth: int, features: int) -> None:
        dense = nn.Sequential(
            OrderedDict(
                (f"denselayer{i + 1}", DenseLayer(features + i * GROWTH)) for i in range(depth)
            )
        )
        grown = features + depth * GROWTH
        transition = nn.Sequential(
            OrderedDict(act=Act(grown), conv=nn.Conv2d(grown, features, 1, bias=False))
        )
        super().__init__(OrderedDict(dense=dense, transition=transition))


class ClassicUpscale(nn.Module):
    """Learned depthwise 2x upscaler (initialised from Keys cubic, then trained).

    Replicate-pad 1, grouped transposed conv (stride 2, no padding) with the weight
    times 4, then crop (2 * stride + taps) // 2 = 6 at the top/left and 6 - stride + 1 = 5
    at the bottom/right: exactly 2H x 2W.
    """

    def __init__(self, channels: int = CHANNELS, taps: int = UPSCALER_TAPS, stride: int = LEVEL_FACTOR):
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.zeros(channels, 1, taps, taps))
        self.crop_begin = (2 * stride + taps) // 2
        self.crop_end = self.crop_begin - stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (1, 1, 1, 1), mode="replicate")
        y = F.conv_transpose2d(
            x, (self.stride * self.stride) * self.weight, stride=self.stride, groups=self.weight.shape[0]
        )
        b, e = self.crop_begin, self.crop_end
        return y[:, :, b:-e, b:-e]


class GMGBP(SRModel):
    """G-MGBP 4x with the authors' parameter names (see the module docstring).

    forward(image, noise0, noise1[, noise2]) -> 4x image, not clamped. `image` is NCHW
    float32 RGB in [0, 1]; noise_l is W * Z_l at the size of r_l (see `noise_inputs`).
    """

    scale = LEVEL_FACTOR**LEVELS
    input_kind = "lr"
    # The border is the reflection padding (`pad`), applied before level 0; noise_l
    # lives on the level-l grid, LEVEL_FACTOR**l times the padded LR grid.
    pad = LEVEL_FACTOR**LEVELS
    noise_inputs = tuple(NoiseInput(f"noise{l}", 1, LEVEL_FACTOR**l, LEVEL_FACTOR**LEVELS) for l in range(LEVELS))

    def __init__(self) -> None:
        super().__init__()
        self.levels = LEVELS
        self.mu = MU
        self.ClassicUpscale = ClassicUpscale()
        self.Analysis = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(CHANNELS, FEATURES, 3, padding=1, bias=False),
                block=FilterBlock(3, FEATURES),
            )
        )
        cat = 2 * FEATURES + 1  # [r_l, correction, noise_l]
        self.Upscaling = nn.Sequential(
            OrderedDict(
                pre_up=FilterBlock(3, cat),
                act_up=Act(cat),
                conv_up=nn.ConvTranspose2d(
                    cat, FEATURES, 3, stride=LEVEL_FACTOR, padding=1, output_padding=1, bias=False
                ),
            )
        )
        self.Downscaling = nn.Sequential(
            OrderedDict(
                conv_down=nn.Conv2d(FEATURES, FEATURES, 3, stride=LEVEL_FACTOR, padding=1, bias=False),
                post_down=FilterBlock(4, FEATURES),
            )
        )
        self.Synthesis = nn.Sequential(
            OrderedDict(
                block=FilterBlock(3, FEATURES),
                act4=Act(FEATURES),
                conv4=nn.Conv2d(FEATURES, CHANNELS, 3, padding=1, bias=True),
            )
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        image: torch.Tensor,
        noise0: torch.Tensor,
        noise1: torch.Tensor,
        noise2: torch.Tensor | None = None,  # drawn by the reference, read by no layer
    ) -> torch.Tensor:
        p = self.pad
        out = self._cascade(F.pad(image, (p, p, p, p), mode="reflect"), [noise0, noise1])
        c = p * self.scale  # the padding, measured on the output grid
        return out[:, :, c:-c, c:-c]

    def _cascade(self, x: "torch.Tensor | _Support", noise: list) -> "torch.Tensor | _Support":
        """Steps 2-3 of the module docstring on the padded input.

        Written once for two kinds of value: tensors (the forward pass) and `_Support`
        (which input pixels each output pixel reads; `shape_rules` uses it for the halo).
        """
        run = _run
        res = [run(self.Analysis, x)]
        out = x + run(self.Synthesis, res[0])
        for level in range(self.levels):
            out = run(self.ClassicUpscale, out)
            correction = run(self.Downscaling, run(self.Analysis, out))
            r = run(self.Upscaling, _cat([res[level], correction, noise[level]]))
            res.append(self._back_project(r, level + 1, res, noise))
            out = out + run(self.Synthesis, res[level + 1])
        return out

    def _back_project(self, h, level: int, res: list, noise: list):
        """BP(h, k): mu times h = h + Up(cat[r_{k-1}, BP(Down(h), k-1), n_{k-1}])."""
        if level == 0:
            return h
        for _ in range(self.mu):
            update = self._back_project(_run(self.Downscaling, h), level - 1, res, noise)
            h = h + _run(self.Upscaling, _cat([res[level - 1], update, noise[level - 1]]))
        return h

    # -------------------------------------------------------------- shape rules
    def shape_rules(self) -> ShapeRules:
        # min_size: ReflectionPad needs pad < size, so pad + 1 = 5.
        # multiple_of/offset: every level works on LEVEL_FACTOR**l * (h + 2 * pad); the
        # stride-2 Downscaling conv (k3, p1: n -> ceil(n / 2)) only ever sees sizes that a
        # 2x upscaler produced (even), so it halves them exactly and the concatenations
        # always fit: any h >= 5 is legal (checked on odd sizes in the tests).
        # output_scale and halo: propagated through the very graph of `_cascade` by
        # `_Support` (each conv's kernel/stride/padding, the upscaler's taps and crop).
        # Result: output pixel 4m + phase reads LR pixels m-84 .. m+85 (phase 3), so
        # halo = 85. Autograd on a 200 x 8 input with ReLU removed and |weights| (so that
        # no path cancels) reads exactly those rows for every phase; with the real
        # BOE-R1 weights ReLU gates make it 84 at two phases. The long reach comes from
        # the level-2 recursion: BP(., 2) runs Downscaling twice (FilterBlock(4) each at
        # the coarse grids) and Upscaling (FilterBlock(3)) mu^2 times, all in sequence.
        support = self._cascade(_Support.identity(), [None] * self.levels)
        return ShapeRules(
            multiple_of=1,
            offset=0,
            min_size=self.pad + 1,
            output_scale=support.scale,
            halo=support.radius(),
            pad_rule="reflect-pad to the next legal size, crop the output",
        )

    def recommended_patch(self) -> int:
        # The strict halo (85 LR px) bounds the receptive field, but the influence of
        # far pixels decays fast. Cutting a 96 px patch out of CSet5 baby (BOE-R1, W=0)
        # changed the output, against the whole image, by at most 4.5e-3 at 8 LR px from
        # the cut, 1.7e-4 at 12 px, 1.2e-5 at 16 px and 2e-7 at 24 px. A patch covering
        # the full halo (2 * 85 + core) would need level-2 maps of (4 * (h + 8))^2 x 145
        # channels, over 350 MB each. 96 = a 64 px core plus 16 px margins (an overlap
        # of 32), with level-2 maps near 100 MB.
        core, margin = 64, 16
        return self.shape_rules().legal_at_least(core + 2 * margin)


# ---------------------------------------------------------------- the supports
def _support_of(module: nn.Module, s: _Support) -> _Support:
    if isinstance(module, nn.Conv2d):
        (k, _), (st, _), (p, _) = module.kernel_size, module.stride, module.padding
        assert module.dilation == (1, 1)
        return s.conv(k, st, p)
    if isinstance(module, nn.ConvTranspose2d):
        (k, _), (st, _), (p, _) = module.kernel_size, module.stride, module.padding
        return s.conv_transpose(k, st, p)
    if isinstance(module, ClassicUpscale):
        # replicate-pad 1 then a transposed conv cropped by crop_begin equals, inside
        # the image, a transposed conv with padding crop_begin - stride * 1.
        return s.conv_transpose(module.weight.shape[-1], module.stride, module.crop_begin - module.stride)
    if isinstance(module, DenseLayer):  # cat[input, chain(input)]
        return s + _support_of(nn.Sequential(*module), s)
    if isinstance(module, nn.Sequential):
        for child in module:
            s = _support_of(child, s)
        return s
    if isinstance(module, (Act, Bias)):  # per pixel
        return s
    raise TypeError(f"no support rule for {type(module).__name__}")


def _run(module: nn.Module, x):
    return _support_of(module, x) if isinstance(x, _Support) else module(x)


def _cat(parts: list):
    if isinstance(parts[0], _Support):
        supports = [p for p in parts if p is not None]  # noise maps read no image pixel
        total = supports[0]
        for s in supports[1:]:
            total = total + s
        return total
    return torch.cat(parts, 1)


def build(variant: str = "pirm2018", scale: int = 4) -> GMGBP:
    if variant != "pirm2018" or scale != 4:
        raise ModelError(f"gmgbp has only variant 'pirm2018' at x4 (asked: '{variant}' x{scale})")
    return GMGBP()


ENTRY = ModelEntry(
    name="gmgbp",
    description="G-MGBP 4x (PIRM-SR 2018): multi-grid back-projection with noise inputs, 281 k params",
    variants={"pirm2018": (4,)},
    default_variant="pirm2018",
    needs_weights=True,
    factory=build,
    weights_hint="BOE-R1.model / BOE-R2.model / BOE-R3.model (PIRM-SR 2018, github.com/pnavarre/pirm-sr-2018)",
    extra={"published_noise": {"R1": 0.0632, "R2": 0.275, "R3": 1.0}},
)
