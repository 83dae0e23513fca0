"""PCARN and PCARN-M: the cascading residual network of Ahn, Kang and Sohn
("Efficient Deep Neural Network for Photo-realistic Image Super-Resolution", paper
`pcarn.txt`; authors' code github.com/nmhkahn/PCARN-pytorch, `pcarn/model/ecarn.py`
with `ops.py`).

The network (LR RGB in [0, 1] -> RGB at `scale` times the size, not clamped):

    x  = entry(sub_mean(image))                  3x3 conv 3 -> 64
    o  = global cascade of three cascading blocks b1..b3 with 1x1 convs c1..c3
    up = upsample.up<scale>(o + x)               grouped 3x3 conv + ReLU + PixelShuffle
    y  = add_mean(exit(up))                      3x3 conv 64 -> 3

A cascade (the same pattern inside a cascading block, with residual units, and at the
top level, with cascading blocks): c0 = o0 = x; for i = 1..3: c_i = concat(c_{i-1},
unit_i(o_{i-1})), o_i = 1x1 conv (64 (i + 1) -> 64)(c_i), no activation after it; the
output is o_3. The mean shifts are frozen 1x1 convolutions (identity weight, bias
-/+ (0.4488, 0.4371, 0.4040)), kept as convolutions as in the authors' code.

- PCARN-M (`PCARNM`): each cascading block applies one efficient residual block
  (EResidual: relu(conv3x3 g4) -> relu(conv3x3 g4) -> 1x1 conv, + input, relu) three
  times (recursion, parameters tied); the upsampler convs are grouped (g4) as well.
- PCARN (`PCARN`, `mobile=False`): three distinct plain residual blocks
  (relu(conv3x3) -> conv3x3 + input -> relu) per cascading block, ungrouped upsampler.

One module holds the x2, x3 and x4 upsamplers, so a published multi-scale checkpoint
loads whole; the instance is built for one `scale` and its forward runs only that
upsampler, so each exported graph serves one scale.

Checkpoint format: the published PCARN-M.pth (GAN) and PCARN-M-L1.pth (L1) are flat
state dicts with the authors' key names. Because the authors' block aliases
`self.b2 = self.b3 = self.b1`, the shared EResidual of cascading block N is stored
three times, under `bN.b1.*`, `bN.b2.*` and `bN.b3.*` (94 tensors, 551,131 values). Here
the shared block is the single module `bN.b1` (so every key this module expects is an
original key name); `adapt_checkpoint` checks that the `bN.b2`/`bN.b3` copies are
present and identical to `bN.b1` and folds them away, refusing with a `CheckpointError`
otherwise.

Parameter counting: `count_parameters` counts each tied tensor once and counts the
frozen mean-shift convolutions (2 x (9 weights + 3 biases) = 24 values) as parameters,
as the authors' module does (they are `nn.Parameter`s with requires_grad=False). That
reading gives exactly the published figures: PCARN-M 414,811 with all three
upsamplers, and `used_parameters` (all minus the upsamplers the chosen scale does not
run) 257,051 (x2), 303,451 (x3), 294,171 (x4). Without the mean shifts each figure would
be 24 lower. Full PCARN: 1,591,963 with all upsamplers.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from srexport.errors import CheckpointError, ModelError
from srexport.models.base import ShapeRules, SRModel
from srexport.models.registry import ModelEntry

RGB_MEAN = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4)


class MeanShift(nn.Module):
    """Frozen 1x1 conv adding sign * RGB_MEAN (checkpoint key `<name>.shifter.*`)."""

    def __init__(self, mean_rgb: tuple[float, float, float], sub: bool) -> None:
        super().__init__()
        sign = -1.0 if sub else 1.0
        self.shifter = nn.Conv2d(3, 3, 1, 1, 0)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(torch.tensor([sign * m for m in mean_rgb]))
        for p in self.shifter.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class ResidualBlock(nn.Module):
    """Plain residual unit of PCARN: relu(conv2(relu(conv1(x))) + x)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        return F.relu(self.conv2(out) + x)

    def radius(self) -> int:
        return _chain_radius(self.conv1, self.conv2)


class EResidualBlock(nn.Module):
    """Efficient residual unit of PCARN-M: relu(pw(relu(g2(relu(g1(x))))) + x)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, groups=groups)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, groups=groups)
        self.pw = nn.Conv2d(channels, channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.conv1(x))
        out = F.relu(self.conv2(out))
        return F.relu(self.pw(out) + x)

    def radius(self) -> int:
        return _chain_radius(self.conv1, self.conv2, self.pw)


class CascadingBlock(nn.Module):
    """Local cascade over three residual units (b1, b2, b3) with 1x1 fusions c1..c3.

    With `shared=True` (PCARN-M) there is one unit, `b1`, applied three times.
    """

    def __init__(self, channels: int, shared: bool, groups: int) -> None:
        super().__init__()
        self.shared = shared
        if shared:
            self.b1 = EResidualBlock(channels, groups)
        else:
            self.b1 = ResidualBlock(channels)
            self.b2 = ResidualBlock(channels)
            self.b3 = ResidualBlock(channels)
        self.c1 = nn.Conv2d(channels * 2, channels, 1, 1, 0)
        self.c2 = nn.Conv2d(channels * 3, channels, 1, 1, 0)
        self.c3 = nn.Conv2d(channels * 4, channels, 1, 1, 0)

    def units(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (self.b1, self.b1, self.b1) if self.shared else (self.b1, self.b2, self.b3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _cascade(x, self.units(), (self.c1, self.c2, self.c3))

    def radius(self) -> int:
        # The deepest path runs through all three units in turn (o1 feeds unit 2, o2
        # feeds unit 3); the 1x1 fusions add nothing.
        return sum(unit.radius() for unit in self.units()) + _chain_radius(
            self.c1, self.c2, self.c3
        )


class ScaleUpsampler(nn.Module):
    """One scale's upsampler: `body` = [conv, ReLU, PixelShuffle] * stages (authors' keys)."""

    def __init__(self, channels: int, scale: int, groups: int) -> None:
        super().__init__()
        self.body = nn.ModuleList()
        if scale in (2, 4, 8):
            factors = [2] * int(math.log2(scale))
        elif scale == 3:
            factors = [3]
        else:
            raise ModelError(f"PCARN has no upsampler for x{scale}")
        for f in factors:
            self.body.append(nn.Conv2d(channels, f * f * channels, 3, 1, 1, groups=groups))
            self.body.append(nn.ReLU())
            self.body.append(nn.PixelShuffle(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.body:
            x = layer(x)
        return x


class MultiScaleUpsampler(nn.Module):
    """Holds up2, up3, up4 (checkpoint keys `upsample.upS.body.N.*`)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.up2 = ScaleUpsampler(channels, 2, groups)
        self.up3 = ScaleUpsampler(channels, 3, groups)
        self.up4 = ScaleUpsampler(channels, 4, groups)

    def branch(self, scale: int) -> ScaleUpsampler:
        return getattr(self, f"up{scale}")


class PCARN(SRModel):
    """PCARN (`mobile=False`) or PCARN-M (`mobile=True`, groups=4), built for one scale."""

    input_kind = "lr"
    noise_inputs = ()

    def __init__(
        self, scale: int = 4, *, mobile: bool = False, groups: int = 1, channels: int = 64
    ) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ModelError(f"PCARN serves scales {SCALES}, not x{scale}")
        self.scale = scale
        self.mobile = mobile
        self.groups = groups
        self.sub_mean = MeanShift(RGB_MEAN, sub=True)
        self.add_mean = MeanShift(RGB_MEAN, sub=False)
        self.entry = nn.Conv2d(3, channels, 3, 1, 1)
        self.b1 = CascadingBlock(channels, mobile, groups)
        self.b2 = CascadingBlock(channels, mobile, groups)
        self.b3 = CascadingBlock(channels, mobile, groups)
        self.c1 = nn.Conv2d(channels * 2, channels, 1, 1, 0)
        self.c2 = nn.Conv2d(channels * 3, channels, 1, 1, 0)
        self.c3 = nn.Conv2d(channels * 4, channels, 1, 1, 0)
        self.upsample = MultiScaleUpsampler(channels, groups)
        self.exit = nn.Conv2d(channels, 3, 3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.entry(self.sub_mean(image))
        o3 = _cascade(x, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))
        out = self.upsample.branch(self.scale)(o3 + x)
        return self.add_mean(self.exit(out))

    # -- sizes ------------------------------------------------------------------
    def receptive_radius(self) -> int:
        """Receptive-field radius in LR pixels, walked from the module's own layers.

        Deepest path, in LR pixels: sub_mean (1x1, 0) + entry 3x3 (1) + each of the
        three cascading blocks (three residual units in series, two 3x3 convs each:
        6; 1x1 convs 0) = 1 + 3 * 6 = 19 at LR resolution; then the upsampler and exit,
        walked backwards from the output: exit 3x3 (1 output pixel), each PixelShuffle
        by f maps a radius r at the fine grid to ceil(r / f) at the coarse one (worst
        case over the sub-pixel phase), each upsampler 3x3 conv adds 1 at its grid.
        x2: ceil(1/2)=1, +1 -> 2; x3: ceil(1/3)=1, +1 -> 2; x4: ceil(1/2)=1, +1 -> 2,
        ceil(2/2)=1, +1 -> 2. Total 19 + 2 = 21 for every scale.
        """
        r = _chain_radius(self.exit, self.add_mean.shifter)
        for layer in reversed(self.upsample.branch(self.scale).body):
            if isinstance(layer, nn.PixelShuffle):
                r = -(-r // layer.upscale_factor)
            elif isinstance(layer, nn.Conv2d):
                r += _chain_radius(layer)
        trunk = _chain_radius(self.sub_mean.shifter, self.entry)
        trunk += sum(b.radius() for b in (self.b1, self.b2, self.b3))
        trunk += _chain_radius(self.c1, self.c2, self.c3)
        return trunk + r

    def shape_rules(self) -> ShapeRules:
        # All convs are stride 1 with "same" padding and the upsampler is a pixel
        # shuffle: any size >= 1 works, the output is exactly scale x the input.
        return ShapeRules(
            multiple_of=1,
            offset=0,
            min_size=1,
            output_scale=self.scale,
            halo=self.receptive_radius(),
        )

    def graph_parameters(self) -> int:
        return used_parameters(self)

    def recommended_patch(self) -> int:
        """Smallest multiple of 64 (>= 128) keeping >= 60% of a patch outside the halo.

        No normalisation layers, so the patch size does not change the result away from
        the halo; the only costs are the overlap (2 * halo per side is recomputed) and
        memory. With halo 21, 128 would recompute over half of each patch
        ((128 - 42) / 128)^2 = 45% useful); 192 keeps 61% useful while the largest
        activation at x4 (256 channels at 2x the patch, 384 x 384) stays about
        150 MB in fp32 per patch.
        """
        halo = self.shape_rules().halo or 0
        patch = 128
        while ((patch - 2 * halo) / patch) ** 2 < 0.6:
            patch += 64
        return self.shape_rules().legal_at_least(patch)

    # -- checkpoints ------------------------------------------------------------
    def adapt_checkpoint(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Fold the stored copies `bN.b2.*`, `bN.b3.*` of PCARN-M's shared block into `bN.b1`."""
        if not self.mobile:
            return state
        out = dict(state)
        for key in self.state_dict():
            m = re.fullmatch(r"(b[123])\.b1\.(.+)", key)
            if m is None or key not in state:
                continue  # missing keys are reported by load_checkpoint
            first = state[key]
            for copy in ("b2", "b3"):
                ckey = f"{m.group(1)}.{copy}.{m.group(2)}"
                if ckey not in state:
                    raise CheckpointError(
                        f"checkpoint does not fit {type(self).__name__}: missing key '{ckey}' "
                        f"(stored copy of the shared block '{key}')"
                    )
                other = state[ckey]
                if tuple(other.shape) != tuple(first.shape):
                    raise CheckpointError(
                        f"checkpoint does not fit {type(self).__name__}: '{ckey}' has shape "
                        f"{tuple(other.shape)} but its shared copy '{key}' has {tuple(first.shape)}"
                    )
                if not torch.equal(other, first):
                    diff = (other.float() - first.float()).abs().max().item()
                    raise CheckpointError(
                        f"checkpoint does not fit {type(self).__name__}: '{ckey}' differs from "
                        f"'{key}' (max abs {diff:.3g}); the copies of a shared block must be "
                        "identical"
                    )
                del out[ckey]
        return out


class PCARNM(PCARN):
    """PCARN-M: efficient residual blocks (groups=4) shared three times per cascading block."""

    def __init__(self, scale: int = 4, *, groups: int = 4, channels: int = 64) -> None:
        super().__init__(scale, mobile=True, groups=groups, channels=channels)


def used_parameters(model: PCARN) -> int:
    """Distinct parameters the chosen scale's forward uses: all minus the other upsamplers."""
    unused = {
        id(p)
        for s in SCALES
        if s != model.scale
        for p in model.upsample.branch(s).parameters()
    }
    return sum(p.numel() for p in model.parameters() if id(p) not in unused)


def _cascade(x: torch.Tensor, units, fusions) -> torch.Tensor:
    c = o = x
    for unit, fuse in zip(units, fusions):
        c = torch.cat([c, unit(o)], dim=1)
        o = fuse(c)
    return o


def _chain_radius(*convs: nn.Conv2d) -> int:
    """Radius added by convolutions applied one after another (stride 1)."""
    r = 0
    for conv in convs:
        assert conv.stride == (1, 1), "radius walk assumes stride-1 convolutions"
        r += max((k - 1) // 2 * d for k, d in zip(conv.kernel_size, conv.dilation))
    return r


def _build(variant: str, scale: int) -> SRModel:
    if variant == "m":
        return PCARNM(scale)
    if variant == "full":
        return PCARN(scale)
    raise ModelError(f"unknown PCARN variant '{variant}' (variants: m, full)")


ENTRY = [
    ModelEntry(
        name="pcarn-m",
        description=(
            "PCARN-M (Ahn et al. 2019): cascading network with grouped (g4) efficient residual "
            "blocks shared three times per cascading block; one checkpoint serves x2/x3/x4"
        ),
        variants={"m": SCALES},
        default_variant="m",
        needs_weights=True,
        factory=_build,
        weights_hint="PCARN-M.pth / PCARN-M-L1.pth (github.com/nmhkahn/PCARN-pytorch)",
        extra={
            "paper": "pcarn.txt",
            "groups": 4,
            "shared_residual": True,
            "checkpoints": {"PCARN-M.pth": "GAN-trained", "PCARN-M-L1.pth": "L1-trained"},
            "input_range": [0.0, 1.0],
        },
    ),
    ModelEntry(
        name="pcarn",
        description=(
            "PCARN (Ahn et al. 2019): cascading residual network, three distinct residual "
            "blocks per cascading block; x2/x3/x4 upsamplers in one module (no weights shipped)"
        ),
        variants={"full": SCALES},
        default_variant="full",
        needs_weights=True,
        factory=_build,
        weights_hint=(
            "a PCARN checkpoint trained with github.com/nmhkahn/PCARN-pytorch (none shipped)"
        ),
        extra={
            "paper": "pcarn.txt",
            "groups": 1,
            "shared_residual": False,
            "input_range": [0.0, 1.0],
        },
    ),
]

__all__ = ["ENTRY", "PCARN", "PCARNM", "used_parameters"]
