"""MGBP of NTIRE 2018 (the journal's MGBPv1): multi-grid back-projection on the LR image.

The networks of the NTIRE-2018 SR challenge (Navarrete Michelini, Liu, Zhu; code
github.com/pnavarre/ntire, `sr_model.py`, `sr_model_track1.py`, `layers.py`). Four small
modules of 3x3 convolutions with 32 features and leaky ReLUs (slope 0.2) after a learned
per-channel bias, and a 2x upscaler initialised from a Lanczos-6 filter, upscale the LR
image itself (RGB in [0, 1]) by 2x levels. Two designs, one per checkpoint kind:

Track 1, 8x bicubic ("progressive", configuration `..._v1_ms`): valid (unpadded)
convolutions, no back-projection, no Downscaling:
1. reflection-pad the LR image by `pad` = 17 pixels;
2. out = crop_13(Classic(x)); b = Analysis(x);
3. three times: b = Upscaling(b); out = out + Synthesis(b); between levels
   out = crop_1(Classic(out));
4. crop 4 pixels from every side (8H x 8W out, not clamped).
Classic is a fixed Lanczos-6 2x interpolator (a buffer, not a parameter); the crops are
what the valid convolutions leave over (derived in `_ProgressiveMGBP.__init__`).

Tracks 2-4, 4x mild / difficult / wild ("recursive", `..._v3_ms`): "same" (zero) padded
convolutions and the multi-grid back-projection recursion with mu steps (2, 8, 2):
1. r0 = Analysis(x); out = x + Synthesis(r0); h = r0;
2. for level l = 1, 2: out = Classic(out); h = BP(Upscaling(h), l); out = out + Synthesis(h);
3. BP(h, 0) = h - r0; BP(h, k): mu times h = h + Upscaling(BP(Downscaling(h), k - 1)).
Note the asymmetry of step 3: only the level-1 recursion feeds Upscaling a difference
(against r0); at level 2 it feeds the updated level-1 state itself. No padding and no crop
(the authors' `pad=True` computes a zero border for these networks): 4H x 4W out for any H.
Classic is trained (a parameter): conv 3 -> 12 channels, 12x12 taps, zero padding 5 before
and 6 after, then a 2x pixel shuffle. Track 3 (`MX1`) resamples with fixed channel
shuffles (`Muxout` / `MuxoutTranspose`) where tracks 2 and 4 (`MX0`) use a stride-2
transposed conv (Upscaling) and a stride-2 conv (Downscaling).

Module and parameter names are the authors' own, so the checkpoints load strictly. They also
hold the authors' integer permutation tables (`...mx.perm_v`, `...mx.perm_h`,
`...tmx.iperm`): those are fixed by the layer type, rebuilt here, checked against the file
and dropped (`adapt_checkpoint`).

Parameters (the authors' `parameters()`): track 1 131,235; tracks 2 and 4 247,427; track 3
228,931.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from srexport.errors import CheckpointError
from srexport.models.base import ShapeRules, SRModel
from srexport.models.gmgbp import Bias
from srexport.models.registry import ModelEntry
from srexport.models.support import Support

# Hyper-parameters shared by the four published configuration strings
# (CH3_LZ6_FE32_LEAK0.2_BN0_Analysis#L3#X1#K3#D1_Upscaling#L10#M5#X1#K3#D1_...)
CHANNELS = 3
FEATURES = 32
LEAK = 0.2
LANCZOS = 6  # Lanczos order of the 2x interpolator's initialisation
TAPS = 2 * LANCZOS  # polyphase taps per sub-pixel: 4 * LANCZOS taps at 2x, split in two
ANALYSIS_CONVS = 3
UPSCALING_CONVS = (5, 5)  # before / after the 2x step (L10, M5)
DOWNSCALING_CONVS = (5, 5)  # before / after the 2x step (L10, M5)
SYNTHESIS_CONVS = 3

# The channel shuffles' four arrangements: every (vertical, horizontal) pair of
# permutations of the two sub-pixel rows/columns, in lexicographic order.
_PERMS = ((0, 1), (1, 0))
_ARRANGEMENTS = tuple((v, h) for v in _PERMS for h in _PERMS)


@dataclass(frozen=True)
class MGBPConfig:
    design: Literal["progressive", "recursive"]
    scale: int
    mu: int = 0  # back-projection steps per level pair (recursive design only)
    muxout: bool = False  # resample with channel shuffles instead of strided convolutions

    @property
    def levels(self) -> int:
        return int(math.log2(self.scale))


VARIANTS: dict[str, MGBPConfig] = {
    "ntire2018-track1": MGBPConfig("progressive", 8),
    "ntire2018-track2": MGBPConfig("recursive", 4, mu=2),
    "ntire2018-track3": MGBPConfig("recursive", 4, mu=8, muxout=True),
    "ntire2018-track4": MGBPConfig("recursive", 4, mu=2),
}


# ------------------------------------------------------------------ layers
class LeakyAct(nn.Module):
    """A learned per-channel bias, then a leaky ReLU (the authors' `Activ` / `nReLU`)."""

    def __init__(self, features: int = FEATURES) -> None:
        super().__init__()
        self.norm = Bias(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(x), LEAK)


def _cell_map(arrangement: tuple[tuple[int, int], tuple[int, int]]) -> list[int]:
    """For sub-pixel s = 2a + b, the channel (within a group of 4) it takes."""
    v, h = arrangement
    return [2 * v[a] + h[b] for a in range(2) for b in range(2)]


class Muxout(nn.Module):
    """2x up by channel shuffle in all four arrangements: C channels at H x W to C channels
    at 2H x 2W. Output channel p * C/4 + g at sub-pixel (a, b) is input channel
    4 g + 2 v_p[a] + h_p[b] of the same pixel, (v_p, h_p) the p-th arrangement: a
    channel gather then a pixel shuffle."""

    def __init__(self, features: int = FEATURES) -> None:
        super().__init__()
        index = [4 * g + m for cells in map(_cell_map, _ARRANGEMENTS) for g in range(features // 4) for m in cells]
        self.register_buffer("index", torch.tensor(index), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(x.index_select(1, self.index), 2)


class MuxoutTranspose(nn.Module):
    """The adjoint of `Muxout`: C channels at 2H x 2W to C channels at H x W, channel
    4 g + k summing, over the four arrangements p, the sub-pixel that `Muxout` fills
    from it: a pixel unshuffle, a channel gather, and the sum of four channel blocks."""

    def __init__(self, features: int = FEATURES) -> None:
        super().__init__()
        self.features = features
        index = []
        for p, cells in enumerate(map(_cell_map, _ARRANGEMENTS)):
            inverse = np.argsort(cells)  # sub-pixel holding channel k of the group
            index += [p * features + 4 * g + int(inverse[k]) for g in range(features // 4) for k in range(4)]
        self.register_buffer("index", torch.tensor(index), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.pixel_unshuffle(x, 2).index_select(1, self.index)
        c = self.features
        return z[:, :c] + z[:, c : 2 * c] + z[:, 2 * c : 3 * c] + z[:, 3 * c :]


def lanczos_polyphase(phase: float, channels: int = CHANNELS) -> torch.Tensor:
    """The 2x Lanczos-6 interpolator as a (4 C, C, TAPS, TAPS) conv weight for a pixel
    shuffle: separable 24-tap kernel at offsets (i + phase) / 2, i = -11 .. 12, scaled to
    sum to 2 per dimension; output channel 4 c + 2 a + b (sub-pixel (a, b)) takes the
    polyphase component starting at tap (1 - a, 1 - b) of channel c."""
    index = np.arange(-2 * LANCZOS + 1, 2 * LANCZOS + 1)
    x = np.abs(index + phase) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        k = LANCZOS * np.sin(np.pi * x) * np.sin(np.pi * x / LANCZOS) / (np.pi**2 * x * x)
    k[x > LANCZOS] = 0.0
    k[x == 0] = 1.0
    k = 2.0 * k / k.sum()
    full = np.outer(k, k)
    weight = np.zeros((4 * channels, channels, TAPS, TAPS))
    for c in range(channels):
        for a in range(2):
            for b in range(2):
                weight[4 * c + 2 * a + b, c] = full[1 - a :: 2, 1 - b :: 2]
    return torch.tensor(weight, dtype=torch.float32)


class LanczosUpscale(nn.Module):
    """2x interpolation of the image: a conv to 4 C channels, then a pixel shuffle.

    `trained`: the recursive design learns the weight (a parameter) and zero-pads the
    input by TAPS/2 - 1 before and TAPS/2 after (the authors pad TAPS/2 and drop the first
    output row and column): exactly 2H x 2W. Otherwise the weight is the fixed
    interpolator (a buffer) and the convolution is valid: 2 (H - TAPS + 1)."""

    def __init__(self, trained: bool) -> None:
        super().__init__()
        self.trained = trained
        weight = lanczos_polyphase(0.5 if trained else -0.5)
        if trained:
            self.weight = nn.Parameter(weight)
        else:
            self.register_buffer("weight", weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.trained:
            x = F.pad(x, (TAPS // 2 - 1, TAPS // 2, TAPS // 2 - 1, TAPS // 2))
        return F.pixel_shuffle(F.conv2d(x, self.weight), 2)


def _conv(c_in: int, c_out: int, padded: bool, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1 if padded else 0, bias=bias)


# ------------------------------------------------------------------ designs
class _ProgressiveMGBP(SRModel):
    """Track 1 (see the module docstring): valid convolutions, no back-projection."""

    input_kind = "lr"

    def __init__(self, config: MGBPConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = config.scale
        self.Classic = LanczosUpscale(trained=False)
        self.Analysis = nn.Sequential(self._chain(CHANNELS, ANALYSIS_CONVS, act_last=True))
        before, after = UPSCALING_CONVS
        up = self._chain(FEATURES, before, act_last=False)
        up["mx"] = Muxout()
        up[f"act{before}"] = LeakyAct()
        up.update(self._chain(FEATURES, after, act_last=True, first=before + 1))
        self.Upscaling = nn.Sequential(up)
        syn = self._chain(FEATURES, SYNTHESIS_CONVS - 1, act_last=True)
        syn[f"conv{SYNTHESIS_CONVS}"] = _conv(FEATURES, CHANNELS, padded=False, bias=True)
        self.Synthesis = nn.Sequential(syn)
        # Sizes through the valid convolutions: with Analysis shrinking by A, Upscaling
        # mapping m -> 2 (m - u1) - u2, Synthesis shrinking by S and Classic mapping
        # n -> 2 (n - TAPS + 1), the level outputs of an n-pixel input are
        # S(U^l(A(n))) and the Classic path is cropped to them: first by
        # `first_crop` per side, then by `next_crop` at every further level. The full
        # output is scale * n - D; the input is reflect-padded by ceil(D / (2 scale))
        # and the output cropped by the rest.
        n = 256
        level = self._net_size(n, 1)
        self.first_crop = (2 * (n - TAPS + 1) - level) // 2
        self.next_crop = (2 * (level - TAPS + 1) - self._net_size(n, 2)) // 2
        short = config.scale * n - self._net_size(n, config.levels)
        self.pad = -(-short // (2 * config.scale))
        self.final_crop = (2 * self.pad * config.scale - short) // 2

    @staticmethod
    def _chain(c_in: int, convs: int, act_last: bool, first: int = 1) -> OrderedDict:
        layers: OrderedDict = OrderedDict()
        for i in range(first, first + convs):
            layers[f"conv{i}"] = _conv(c_in if i == first else FEATURES, FEATURES, padded=False)
            if act_last or i < first + convs - 1:
                layers[f"act{i}"] = LeakyAct()
            c_in = FEATURES
        return layers

    def _net_size(self, n: int, levels: int) -> int:
        """Size of Synthesis(Upscaling^levels(Analysis(n-pixel input)))."""
        before, after = UPSCALING_CONVS
        n -= 2 * ANALYSIS_CONVS
        for _ in range(levels):
            n = 2 * (n - 2 * before) - 2 * after
        return n - 2 * SYNTHESIS_CONVS

    index_buffers = ("Classic.mx.perm_v", "Classic.mx.perm_h", "Upscaling.mx.perm_v", "Upscaling.mx.perm_h")

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        p = self.pad
        return self._cascade(F.pad(image, (p, p, p, p), mode="reflect"))

    def _cascade(self, x):
        """Steps 2-4 of the module docstring, for tensors and for `Support`s."""
        out = _crop(_run(self.Classic, x), self.first_crop)
        b = _run(self.Analysis, x)
        for level in range(self.config.levels):
            b = _run(self.Upscaling, b)
            out = _plus(out, _run(self.Synthesis, b))
            if level < self.config.levels - 1:
                out = _crop(_run(self.Classic, out), self.next_crop)
        return _crop(out, self.final_crop)

    def shape_rules(self) -> ShapeRules:
        support = self._cascade(Support.identity().shift(-self.pad))
        return ShapeRules(
            multiple_of=1,
            offset=0,
            min_size=self.pad + 1,  # reflection padding needs pad < size
            output_scale=support.scale,
            halo=support.radius(),
            pad_rule="any size from min_size (the network reflect-pads by itself)",
        )

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _drop_index_tables(state, self.index_buffers)

    def recommended_patch(self) -> int:
        return _halo_patch(self.shape_rules())


class _RecursiveMGBP(SRModel):
    """Tracks 2-4 (see the module docstring): padded convolutions, BP recursion."""

    input_kind = "lr"

    def __init__(self, config: MGBPConfig) -> None:
        super().__init__()
        self.config = config
        self.scale = config.scale
        self.Classic = LanczosUpscale(trained=True)
        an: OrderedDict = OrderedDict()
        for i in range(1, ANALYSIS_CONVS + 1):
            if i > 1:
                an[f"act{i - 1}"] = LeakyAct()
            an[f"conv{i}"] = _conv(CHANNELS if i == 1 else FEATURES, FEATURES, padded=True)
        self.Analysis = nn.Sequential(an)

        before, after = UPSCALING_CONVS
        up: OrderedDict = OrderedDict()
        for i in range(1, before + 1):
            up[f"act{i - 1}"] = LeakyAct()
            up[f"conv{i}"] = _conv(FEATURES, FEATURES, padded=True)
        if config.muxout:
            up["mx"] = Muxout()
        else:
            up["act_up"] = LeakyAct()
            up["conv_up"] = nn.ConvTranspose2d(FEATURES, FEATURES, 3, stride=2, padding=1, output_padding=1, bias=False)
        up[f"act{before}"] = LeakyAct()
        for i in range(before + 1, before + after + 1):
            up[f"conv{i}"] = _conv(FEATURES, FEATURES, padded=True)
            up[f"act{i}"] = LeakyAct()
        self.Upscaling = nn.Sequential(up)

        before, after = DOWNSCALING_CONVS
        down: OrderedDict = OrderedDict(act0=LeakyAct())
        for i in range(1, before + 1):
            down[f"conv{i}"] = nn.ConvTranspose2d(FEATURES, FEATURES, 3, padding=1, bias=False)
            down[f"act{i}"] = LeakyAct()
        if config.muxout:
            down["tmx"] = MuxoutTranspose()
        else:
            down["conv_down"] = nn.Conv2d(FEATURES, FEATURES, 3, stride=2, padding=1, bias=False)
            down["act_down"] = LeakyAct()
        for i in range(before + 1, before + after + 1):
            down[f"conv{i}"] = nn.ConvTranspose2d(FEATURES, FEATURES, 3, padding=1, bias=False)
            if i < before + after:
                down[f"act{i}"] = LeakyAct()
        self.Downscaling = nn.Sequential(down)

        syn: OrderedDict = OrderedDict(act0=LeakyAct())
        for i in range(1, SYNTHESIS_CONVS):
            syn[f"conv{i}"] = _conv(FEATURES, FEATURES, padded=True)
            syn[f"act{i}"] = LeakyAct()
        syn[f"conv{SYNTHESIS_CONVS}"] = _conv(FEATURES, CHANNELS, padded=True, bias=True)
        self.Synthesis = nn.Sequential(syn)
        self.index_buffers = ("Classic.mx.perm_v", "Classic.mx.perm_h") + (
            ("Upscaling.mx.perm_v", "Upscaling.mx.perm_h", "Downscaling.tmx.iperm") if config.muxout else ()
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self._cascade(image)

    def _cascade(self, x):
        """Steps 1-2 of the module docstring, for tensors and for `Support`s."""
        r0 = _run(self.Analysis, x)
        out = _plus(x, _run(self.Synthesis, r0))
        h = r0
        for level in range(1, self.config.levels + 1):
            out = _run(self.Classic, out)
            h = self._back_project(_run(self.Upscaling, h), level, r0)
            out = _plus(out, _run(self.Synthesis, h))
        return out

    def _back_project(self, h, level: int, r0):
        if level == 0:
            return _minus(h, r0)
        for _ in range(self.config.mu):
            h = _plus(h, _run(self.Upscaling, self._back_project(_run(self.Downscaling, h), level - 1, r0)))
        return h

    def shape_rules(self) -> ShapeRules:
        support = self._cascade(Support.identity())
        return ShapeRules(
            multiple_of=1,
            offset=0,
            min_size=1,
            output_scale=support.scale,
            halo=support.radius(),
            pad_rule="any size (zero-padded convolutions, no border of its own)",
        )

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return _drop_index_tables(state, self.index_buffers)

    def recommended_patch(self) -> int:
        return _halo_patch(self.shape_rules())


def _halo_patch(rules: ShapeRules) -> int:
    """Two halos (what crop stitching discards) and a 64 px core, at most 320 LR px: level-2
    maps of a 320 px patch are 1280 x 1280 x 32 floats (210 MB) each. Track 3's halo (1,159
    px, from mu = 8) is out of reach: its tiles are blended with the default overlap."""
    return rules.legal_at_least(min(2 * rules.halo + 64, 320))


# --------------------------------------------------------- index tables
def _expected_index_table(key: str) -> torch.Tensor:
    if key.endswith(".iperm"):
        # row p: for channel k of a group, the sub-pixel that arrangement p fills from it
        return torch.tensor([list(np.argsort(_cell_map(a))) for a in _ARRANGEMENTS])
    return torch.tensor(_PERMS)  # perm_v / perm_h: the permutations of two sub-pixels


def _drop_index_tables(state: dict[str, torch.Tensor], keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = dict(state)
    for key in keys:
        if key not in out:
            continue
        table = out.pop(key)
        expected = _expected_index_table(key)
        if table.shape != expected.shape or not torch.equal(table.long(), expected):
            raise CheckpointError(
                f"checkpoint '{key}' holds {table.tolist()}, not the permutation table "
                f"{expected.tolist()} this layer is built with"
            )
    return out


# ------------------------------------------------------ tensors and supports
def _crop(x, c: int):
    if isinstance(x, Support):
        return x.shift(c)
    return x[:, :, c : x.shape[2] - c, c : x.shape[3] - c] if c else x


def _plus(a, b):
    return a + b  # Support.__add__ unites the reads


def _minus(a, b):
    return a + b if isinstance(a, Support) else a - b


def _run(module: nn.Module, x):
    return _support_of(module, x) if isinstance(x, Support) else module(x)


def _support_of(module: nn.Module, s: Support) -> Support:
    if isinstance(module, nn.Conv2d):
        (k, _), (st, _), (p, _) = module.kernel_size, module.stride, module.padding
        return s.conv(k, st, p)
    if isinstance(module, nn.ConvTranspose2d):
        (k, _), (st, _), (p, _) = module.kernel_size, module.stride, module.padding
        return s.conv_transpose(k, st, p)
    if isinstance(module, Muxout):  # output 2i + a reads input i
        return s.conv_transpose(2, 2, 0)
    if isinstance(module, MuxoutTranspose):  # output i reads inputs 2i, 2i + 1
        return s.conv(2, 2, 0)
    if isinstance(module, LanczosUpscale):
        s = s.conv(TAPS, 1, TAPS // 2 - 1 if module.trained else 0)
        return s.conv_transpose(2, 2, 0)
    if isinstance(module, nn.Sequential):
        for child in module:
            s = _support_of(child, s)
        return s
    if isinstance(module, LeakyAct):
        return s
    raise TypeError(f"no support rule for {type(module).__name__}")


def build(variant: str = "ntire2018-track2", scale: int | None = None) -> SRModel:
    config = VARIANTS[variant]
    if scale is not None and scale != config.scale:
        raise ValueError(f"mgbp {variant} is an x{config.scale} network, not x{scale}")
    return _ProgressiveMGBP(config) if config.design == "progressive" else _RecursiveMGBP(config)


ENTRY = ModelEntry(
    name="mgbp",
    description=(
        "MGBP (NTIRE 2018, the journal's MGBPv1): track 1 8x bicubic, tracks 2-4 4x "
        "mild / difficult / wild degradations; 131 k - 247 k params"
    ),
    variants={name: (config.scale,) for name, config in VARIANTS.items()},
    default_variant="ntire2018-track2",
    needs_weights=True,
    factory=build,
    weights_hint=(
        "ntire2018-track1..4: the authors' track_<N>_mu_..._ms.pkl files from "
        "github.com/pnavarre/ntire (models/; no licence stated there, so not shipped)"
    ),
)
