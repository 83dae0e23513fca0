"""MGBPv2: the unpadded multigrid back-projection W-cycle (AIM 2019, journal Algorithm 1).

Network (models.md "MGBPv2"; the authors' `model.py` from github.com/pnavarre/mgbpv2):
levels k = 0 (lowest) .. L-1 (highest, the input resolution) with channels C_0..C_{L-1},
kernel K (odd), steps mu. Every convolution is unpadded ("valid") and has a bias.

- Analysis_k, k < L-1: conv 3 -> C_k, kernel (K-1)(s-1)+1, stride s = 2^(L-1-k);
  Analysis_{L-1}: 1x1 conv 3 -> C_{L-1}. AnalysisN_k: the same geometry, 3 -> 1, applied to
  the noise image (the graph input `noise`, already multiplied by W).
- BP(h, 0) = h; BP(h, k): for i = 1..mu:
  h = h + Up_{k,i}(concat[x_{k-1}, BP(Down_{k,i}(h), k-1), n_{k-1}]),
  Down = KxK conv stride 2 (C_k -> C_{k-1}), Up = ReLU then KxK transposed conv stride 2
  ((2 C_{k-1} + 1) -> C_k). Each call site ("tag") owns its parameters, so the pair
  (k-1, k) has mu^(L-k) Down/Up instances.
- Y = Synthesis(BP(x_{L-1}, L-1)), Synthesis = 1x1 conv C_{L-1} -> 3; no global skip.

Reading choices:
- Module names mirror the authors' code (`Analysis_k`, `AnalysisN_k`, `Synthesis`,
  `Downscale_<label>`, `Upscale_<label>` with `.1` the transposed conv, labels built by the
  same dry run), so the authors' AIM-2019 checkpoint keys load without renaming.
- Noise, as the authors' whole-image `forward` defines it: n_k = W * AnalysisN_k(Z). The
  runtime feeds the seed-addressed field W Z (`noise`) and W itself (`noise_amplitude`, a
  constant map of which one pixel is read), and the graph computes
  conv_k(W Z) + W b_k = W (conv_k(Z) + b_k): at W = 0 every noise feature is exactly 0, so
  the output is the deterministic one (no AnalysisN bias in the Upscale inputs).
- Checkpoints: the authors register Synthesis twice (`Synthesis` and `synthesis`), so their
  files hold both key sets; `adapt_checkpoint` folds identical aliases and refuses differing ones.
- Sizes: with f(t) = (t-1)*2 + K a Down/Up round trip maps level sizes t <-> f(t), and
  Analysis_k maps f^(L-1-k)(t) to t, so a legal input size is
  p = f^(L-1)(t) = 2^(L-1) t + (K-2)(2^(L-1) - 1), t >= 1: `ShapeRules(multiple_of=2^(L-1),
  offset=(K-2)(2^(L-1)-1), min_size=f^(L-1)(1))` (t = 0 would give the lowest level size 0).
  `valid_padding(n)` is the authors' `init_border` rule: the smallest f^(L-1)(t) >= n with
  their search starting at t = 2 (so it differs from `legal_at_least` only for
  n <= f^(L-1)(1)), reflect padding d = p - n split as ceil(d/2) before, floor(d/2) after.
- halo: the exact receptive-field radius, derived from the structure in
  `receptive_radius` (interval propagation through the unrolled W-cycle): aim2019-16x and
  8x 270, 2x/3x 64, 4x 518, 16x 1054 input pixels. The graph output has the input's size,
  so `output_scale` is 1.

Parameter counts (weights + biases): aim2019-16x (L=5, 256-192-128-48-9, mu=2, K=3)
28,170,450; journal Table I: 2x and 3x (L=2, 192-128, mu=32) 21,287,075; 4x (L=4,
192-128-64-32, mu=4) 46,487,099; 8x (L=5, 192-128-64-32-16, mu=2) 13,321,231; 16x (L=6,
256-192-128-92-48-9, mu=2) 59,951,542. MACs per output pixel of aim2019-16x at 256x256
(padded to 271x271, border 8/7): 230,306.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

import torch.nn.functional as F

from srexport.errors import CheckpointError
from srexport.models.base import NoiseInput, ShapeRules, SRModel
from srexport.models.registry import ModelEntry


@dataclass(frozen=True)
class MGBPv2Config:
    levels: int
    channels: tuple[int, ...]  # lowest -> highest resolution
    mu: int
    kernel: int = 3

    def __post_init__(self) -> None:
        if len(self.channels) != self.levels:
            raise ValueError("one channel count per level")
        if self.kernel % 2 != 1:
            raise ValueError("MGBPv2 needs an odd kernel")


VARIANTS: dict[str, tuple[MGBPv2Config, int]] = {
    "aim2019-16x": (MGBPv2Config(5, (256, 192, 128, 48, 9), mu=2), 16),
    "2x": (MGBPv2Config(2, (192, 128), mu=32), 2),
    "3x": (MGBPv2Config(2, (192, 128), mu=32), 3),
    "4x": (MGBPv2Config(4, (192, 128, 64, 32), mu=4), 4),
    "8x": (MGBPv2Config(5, (192, 128, 64, 32, 16), mu=2), 8),
    "16x": (MGBPv2Config(6, (256, 192, 128, 92, 48, 9), mu=2), 16),
}

NOISE_CHANNELS = 1  # noise features per level (AnalysisN output)


class MGBPv2(SRModel):
    """MGBPv2 generator; forward(image, noise) with both of the (padded) input's size."""

    input_kind = "upscaled"
    noise_inputs = (
        NoiseInput("noise", 3, 1, 0),
        NoiseInput("noise_amplitude", 1, 1, 0, kind="amplitude"),
    )

    def __init__(self, config: MGBPv2Config, scale: int) -> None:
        super().__init__()
        self.config = config
        self.scale = scale
        levels, channels, k = config.levels, config.channels, config.kernel
        top = levels - 1
        for level in range(levels):
            s = 2 ** (top - level)
            size = (k - 1) * (s - 1) + 1  # 1 at the top level
            self.add_module(f"Analysis_{level}", nn.Conv2d(3, channels[level], size, stride=s))
        for level in range(levels):
            s = 2 ** (top - level)
            size = (k - 1) * (s - 1) + 1
            self.add_module(f"AnalysisN_{level}", nn.Conv2d(3, NOISE_CHANNELS, size, stride=s))
        self.add_module("Synthesis", nn.Conv2d(channels[top], 3, 1))
        # The dry run of Algorithm 1: one Downscale/Upscale pair per call site, labelled as
        # in the authors' code so their state_dict keys apply unchanged.
        for level, label in self._call_sites():
            self.add_module(
                f"Downscale_{label}", nn.Conv2d(channels[level], channels[level - 1], k, stride=2)
            )
            self.add_module(
                f"Upscale_{label}",
                nn.Sequential(
                    nn.ReLU(),
                    nn.ConvTranspose2d(
                        2 * channels[level - 1] + NOISE_CHANNELS, channels[level], k, stride=2
                    ),
                ),
            )

    # ---- structure -------------------------------------------------------------------
    def _call_sites(self) -> list[tuple[int, str]]:
        """(level, label) of every Down/Up pair in execution order.

        The authors' label is `level-step_0-step_1-...` over a step array that the
        recursion updates in place (entries below the current level keep stale values),
        which still names every call site uniquely."""
        step = [0] * (self.config.levels - 1)
        sites: list[tuple[int, str]] = []

        def visit(level: int) -> None:
            if level == 0:
                return
            for i in range(self.config.mu):
                step[level - 1] = i
                sites.append((level, f"{level}-" + "-".join(map(str, step))))
                visit(level - 1)

        visit(self.config.levels - 1)
        return sites

    def _bp(self, h: torch.Tensor, level: int, x: list, n: list, sites) -> torch.Tensor:
        if level == 0:
            return h
        for _ in range(self.config.mu):
            site_level, label = next(sites)
            assert site_level == level
            low = getattr(self, f"Downscale_{label}")(h)
            correction = self._bp(low, level - 1, x, n, sites)
            up = getattr(self, f"Upscale_{label}")
            h = h + up(torch.cat([x[level - 1], correction, n[level - 1]], 1))
        return h

    def forward(self, image: torch.Tensor, noise: torch.Tensor, amplitude: torch.Tensor) -> torch.Tensor:
        """image and noise (W Z) of one legal size; amplitude: a map holding W."""
        w = amplitude[:, :1, :1, :1]
        n = []
        for k in range(self.config.levels):
            conv = getattr(self, f"AnalysisN_{k}")
            n.append(F.conv2d(noise, conv.weight, None, conv.stride) + w * conv.bias.view(1, -1, 1, 1))
        return self.run(image, n)

    def run(self, image: torch.Tensor, noise_features: list[torch.Tensor] | None) -> torch.Tensor:
        """The W-cycle given the noise features n_k (None: all zero, i.e. W = 0)."""
        levels = self.config.levels
        x = [getattr(self, f"Analysis_{k}")(image) for k in range(levels)]
        n = noise_features
        if n is None:
            n = [torch.zeros_like(xk[:, :NOISE_CHANNELS]) for xk in x]
        h = self._bp(x[levels - 1], levels - 1, x, n, iter(self._call_sites()))
        return self.Synthesis(h)

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return fold_synthesis_alias(state)

    # ---- sizes -----------------------------------------------------------------------
    def level_size(self, t: int) -> int:
        """Input size whose lowest level has size t: f^(L-1)(t), f(t) = (t-1)*2 + K."""
        for _ in range(self.config.levels - 1):
            t = (t - 1) * 2 + self.config.kernel
        return t

    def valid_padding(self, n: int) -> tuple[int, int, int]:
        """(padded size, pad before, pad after) for an input of size n, the authors' rule
        (`init_border`): the smallest f^(L-1)(t) >= n searching from t = 2, reflect padding
        split with the larger half before. The output is cropped by the same border."""
        p, t = 1, 1
        while p < n:
            t += 1
            p = self.level_size(t)
        d = p - n
        return p, d - d // 2, d // 2

    def receptive_radius(self) -> int:
        """Receptive-field radius in input pixels, derived from the structure (exact).

        Square kernels and no padding make the dependency pattern the same along rows and
        columns, so one axis suffices: every map of the unrolled W-cycle is tracked as, per pixel, the interval
        [lo, hi] of input pixels it reads. Analysis_k (kernel a_k, stride s_k) reads
        s_k i .. s_k i + a_k - 1; Down (K taps, stride 2) takes the union over 2i..2i+K-1;
        Up (transposed, K taps, stride 2) the union over the q with 0 <= p - 2q <= K-1;
        concat and the residual sum unite; ReLU keeps it. The radius is the largest
        distance from an output pixel to the ends of its interval over one period of
        2^(L-1) pixels in the middle of a size large enough that no window reaches the
        border (sized from the bound `_radius_bound`). A transposed conv reads 2 or 1
        lower pixels depending on the output's parity, so the worst case is not the sum
        of per-level worst cases once mu >= 2: e.g. K=3, L=3, mu=2 has radius 18, bound 20.
        The tests check the value against autograd on small configurations."""
        return _receptive_radius(self.config)

    def shape_rules(self) -> ShapeRules:
        levels, kk = self.config.levels, self.config.kernel
        multiple = 2 ** (levels - 1)
        return ShapeRules(
            multiple_of=multiple,
            offset=(kk - 2) * (multiple - 1),
            min_size=self.level_size(1),
            output_scale=1,
            halo=self.receptive_radius(),
            pad_rule=(
                f"valid convolutions: legal sizes are f^{levels - 1}(t) with "
                f"f(t) = (t-1)*2 + {kk}, t >= 1; reflect-pad the input (image and noise) to "
                "the next legal size, ceil(d/2) before and floor(d/2) after as the authors "
                "do, and crop the output by the same border"
            ),
            pad_align="split",
        )

    def recommended_patch(self) -> int:
        """The authors' perceptual-track block size (767 px) brought to a legal size."""
        return self.shape_rules().legal_at_least(767)


def fold_synthesis_alias(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """Fold the authors' `<prefix>synthesis.*` duplicates into `<prefix>Synthesis.*`."""
    out = dict(state)
    alias = f"{prefix}synthesis."
    for key in [k for k in state if k.startswith(alias)]:
        name = f"{prefix}Synthesis." + key[len(alias):]
        tensor = out.pop(key)
        if name not in out:
            out[name] = tensor
        elif out[name].shape != tensor.shape or not torch.equal(out[name], tensor):
            raise CheckpointError(
                f"checkpoint holds different tensors under '{key}' and '{name}' "
                "(the authors' files store one Synthesis layer under both names)"
            )
    return out


def _radius_bound(config: MGBPv2Config) -> int:
    """An upper bound of the receptive-field radius (input pixels), per-level worst cases.

    Level k has stride s_k = 2^(L-1-k); Analysis_k has radius a_k = (K-1)(s_k-1)/2; Down
    and Up each add (K-1) s_k / 2; one step at level k on a state of radius r gives
    max(r, (K-1) s_k/2 + max(a_{k-1}, R_{k-1}(r + (K-1) s_k/2))), R_0(r) = r."""
    levels, kk, mu = config.levels, config.kernel, config.mu
    top = levels - 1

    def analysis(level: int) -> int:
        return (kk - 1) * (2 ** (top - level) - 1) // 2

    def bp(r: int, level: int) -> int:
        if level == 0:
            return r
        half = (kk - 1) * 2 ** (top - level) // 2
        for _ in range(mu):
            r = max(r, half + max(analysis(level - 1), bp(r + half, level - 1)))
        return r

    return bp(analysis(top), top)


@functools.lru_cache(maxsize=None)
def _receptive_radius(config: MGBPv2Config) -> int:
    levels, kk, mu = config.levels, config.kernel, config.mu
    top = levels - 1
    period = 2**top
    t = (2 * _radius_bound(config) + 4 * period) // period + 2
    size = t
    for _ in range(top):
        size = (size - 1) * 2 + kk

    def analysis(level: int) -> tuple[np.ndarray, np.ndarray]:
        s = 2 ** (top - level)
        a = (kk - 1) * (s - 1) + 1
        n = (size - a) // s + 1
        lo = np.arange(n) * s
        return lo, lo + a - 1

    def down(m: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = m
        n = (len(lo) - kk) // 2 + 1
        idx = 2 * np.arange(n)[:, None] + np.arange(kk)[None, :]
        return lo[idx].min(1), hi[idx].max(1)

    def up(m: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = m
        n = (len(lo) - 1) * 2 + kk
        out_lo = np.full(n, np.iinfo(np.int64).max)
        out_hi = np.full(n, np.iinfo(np.int64).min)
        for tap in range(kk):  # output 2q + tap reads input q
            window = slice(tap, tap + 2 * len(lo), 2)
            out_lo[window] = np.minimum(out_lo[window], lo)
            out_hi[window] = np.maximum(out_hi[window], hi)
        return out_lo, out_hi

    def unite(*maps):
        return np.minimum.reduce([m[0] for m in maps]), np.maximum.reduce([m[1] for m in maps])

    x = [analysis(level) for level in range(levels)]  # the noise maps have the same geometry

    def bp(h, level: int):
        if level == 0:
            return h
        for _ in range(mu):
            h = unite(h, up(unite(x[level - 1], bp(down(h), level - 1))))
        return h

    lo, hi = bp(x[top], top)
    mid = size // 2
    p = np.arange(mid, mid + period)
    return int(max((p - lo[p]).max(), (hi[p] - p).max()))


class MGBPv2Merge(SRModel):
    """The authors' `mergeModel` (AIM 2019 Fidelity): the sum of MGBPv2 branches that differ
    in their kernel only, each reflect-padding the input to its own legal size (the
    `init_border` rule, split before/after) and cropping its output back, run at W = 0.

    Shape rules: the padding is computed inside the graph from the input's size, so every
    size from `min_size` up is legal (multiple_of 1): the smallest size from which every
    branch's reflect padding stays thinner than the image (ONNX and torch refuse wider
    reflections). The graph therefore has no noise input and matches the authors at any
    whole-image or block size. halo: the largest branch radius (a branch output pixel
    reads its padded input within that radius; the padding is a reflection of the input)."""

    input_kind = "upscaled"
    noise_inputs = ()

    def __init__(self, config: MGBPv2Config, kernels: tuple[int, ...], scale: int) -> None:
        super().__init__()
        self.config = config
        self.kernels = kernels
        self.scale = scale
        for index, k in enumerate(kernels):
            branch = MGBPv2(MGBPv2Config(config.levels, config.channels, config.mu, k), scale)
            self.add_module(f"model{index}", branch)

    def branches(self) -> list[MGBPv2]:
        return [getattr(self, f"model{i}") for i in range(len(self.kernels))]

    @staticmethod
    def _split(n, branch: MGBPv2):
        """(before, after) padding of size n to the branch's legal size, in tensor
        arithmetic so that a traced graph keeps it dynamic: p = off + m t with
        t = max(2, ceil((n - off) / m)), the authors' search from t = 2."""
        rules = branch.shape_rules()
        m, off = rules.multiple_of, rules.offset
        n = torch.as_tensor(n)
        t = torch.clamp(torch.div(n - off + m - 1, m, rounding_mode="floor"), min=2)
        d = off + m * t - n
        after = torch.div(d, 2, rounding_mode="floor")
        return d - after, after

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[2], image.shape[3]
        out = None
        for branch in self.branches():
            top, bottom = self._split(height, branch)
            left, right = self._split(width, branch)
            padded = F.pad(image, [left, right, top, bottom], mode="reflect")
            y = branch.run(padded, None)
            y = y[:, :, top : y.shape[2] - bottom, left : y.shape[3] - right]
            out = y if out is None else out + y
        return out

    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for index in range(len(self.kernels)):
            state = fold_synthesis_alias(state, f"model{index}.")
        return state

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(
            multiple_of=1,
            offset=0,
            min_size=self._min_size(),
            output_scale=1,
            halo=max(b.receptive_radius() for b in self.branches()),
            pad_rule=(
                "any size from min_size: each branch reflect-pads the input inside the graph "
                "to its own legal size (ceil(d/2) before, floor(d/2) after) and crops its "
                "output back, as the authors' mergeModel does"
            ),
            pad_align="split",
        )

    def _min_size(self) -> int:
        """Smallest n from which every size reflect-pads with pads < size in every branch
        (beyond the branches' largest minimum size all pads are below 2^(L-1))."""
        limit = max(b.level_size(2) for b in self.branches()) + 1
        smallest = limit
        for n in range(limit, 1, -1):
            if any(max(b.valid_padding(n)[1:]) >= n for b in self.branches()):
                break
            smallest = n
        return smallest

    def recommended_patch(self) -> int:
        """The authors' Fidelity block (667 px)."""
        return 667


MERGED: dict[str, tuple[MGBPv2Config, tuple[int, ...], int]] = {
    "aim2019-fidelity": (MGBPv2Config(5, (256, 192, 128, 48, 9), mu=2), (3, 5, 7), 16),
}


def build(variant: str, scale: int) -> SRModel:
    if variant in MERGED:
        config, kernels, factor = MERGED[variant]
        if scale != factor:
            raise ValueError(f"MGBPv2 {variant} is an x{factor} network, not x{scale}")
        return MGBPv2Merge(config, kernels, scale)
    config, factor = VARIANTS[variant]
    if scale != factor:
        raise ValueError(f"MGBPv2 {variant} is an x{factor} network, not x{scale}")
    return MGBPv2(config, scale)


ENTRY = ModelEntry(
    name="mgbpv2",
    description=(
        "MGBPv2 (AIM 2019 extreme SR / journal Table I): unpadded multigrid W-cycle on the "
        "bicubic-upscaled image with a 3-channel noise image"
    ),
    variants={
        **{name: (factor,) for name, (_, factor) in VARIANTS.items()},
        **{name: (factor,) for name, (_, _, factor) in MERGED.items()},
    },
    default_variant="aim2019-16x",
    needs_weights=True,
    factory=build,
    weights_hint=(
        "aim2019-16x: BOE_Perceptual_CH3_LE5_MU2_BIAS_NOISE1_FE256-192-128-48-9_Filter#K3_mgbp"
        ".model, aim2019-fidelity: BOE_Fidelity_CH3_LE5_MU2_BIAS_NOISE1_FE256-192-128-48-9_"
        "Filter#K357_merge.model, from github.com/pnavarre/mgbpv2 (download_models.sh); keys "
        "load as saved (the duplicated synthesis.* keys are folded). "
        "No weights are published for the journal Table I variants."
    ),
)
