"""BPP: parameter count of our reading, bicubic scalers, shape rules, MACs, ONNX parity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from srexport.models.base import count_parameters
from srexport.models.bpp import (
    BPP,
    ENTRY,
    bicubic_downscale_taps,
    build,
    expected_parameters,
    keys_cubic,
)

from onnx_helpers import assert_dynamic_onnx_matches_torch


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("x4", 4).eval()


@pytest.fixture(scope="module")
def tiny():
    """Same code at a fraction of the cost: 4 levels, 2 flux-blocks, few channels."""
    torch.manual_seed(0)
    return BPP(2, channels=(16, 8, 8, 4), blocks=2).eval()


def test_parameter_count_of_our_reading(model):
    count = count_parameters(model)
    assert count == 19_077_420 == expected_parameters()  # models.md's figure
    assert abs(count - 19e6) / 19e6 < 0.02  # the paper: "19 million parameters"
    convs = (nn.Conv2d, nn.ConvTranspose2d)
    flux = sum(m.weight.numel() for m in model.blocks.modules() if isinstance(m, convs))
    assert flux == 27 * (48 * 64 + 64 * 128 + 128 * 256) * 16 == 19_021_824
    assert [tuple(p.shape) for p in model.scalers] == [(3, 1, 9, 9)] * 3


def test_entry_variants_are_one_scale_each():
    assert ENTRY.name == "bpp" and ENTRY.task == "sr"
    assert ENTRY.variants == {"x2": (2,), "x3": (3,), "x4": (4,), "x8": (8,)}
    with pytest.raises(ValueError):
        build("x2", 4)


def test_keys_cubic_and_taps():
    assert keys_cubic(0) == 1 and keys_cubic(1) == 0 and keys_cubic(2) == 0
    assert keys_cubic(0.5) == pytest.approx(0.5625) and keys_cubic(1.5) == pytest.approx(-0.0625)
    taps = bicubic_downscale_taps(2)
    assert len(taps) == 8 and sum(taps) == pytest.approx(1) and taps == taps[::-1]


def test_untrained_scalers_are_a_bicubic_downscale(tiny):
    """Interior pixels equal torch's antialiased bicubic (Keys a = -0.5, as PIL/MATLAB);
    the borders differ only by the padding convention (replicate here)."""
    image = torch.rand(1, 3, 48, 40, generator=torch.Generator().manual_seed(1))
    current = image
    for level in (2, 1, 0):
        with torch.no_grad():
            ours = tiny.downscale(current, level)
        reference = F.interpolate(current, scale_factor=0.5, mode="bicubic", antialias=True)
        assert ours.shape == reference.shape
        assert (ours - reference)[..., 2:-2, 2:-2].abs().max() < 1e-5
        current = ours
    assert current.shape[-2:] == (6, 5)


def test_shape_rules(model):
    rules = model.shape_rules()
    assert (rules.multiple_of, rules.offset, rules.min_size) == (8, 0, 16)
    assert rules.output_scale == 1 and rules.halo is None
    assert [n for n in range(1, 60) if rules.is_legal(n)] == [16, 24, 32, 40, 48, 56]
    assert model.recommended_patch() == 192
    with torch.device("meta"):  # the training patch 48f x 48f, 192 for 8x (paper appendix)
        assert [build(f"x{f}", f).recommended_patch() for f in (2, 3, 8)] == [96, 144, 192]


def test_smallest_legal_non_square_size_runs_the_full_model(model):
    image = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        out = model(image)
    assert out.shape == image.shape and torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(16, 16), (24, 40), (48, 32)])
def test_legal_sizes_run(tiny, size):
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        assert tiny(image).shape == image.shape


@pytest.mark.parametrize("size", [(20, 16), (8, 8)])
def test_illegal_sizes_are_refused(tiny, size):
    assert not all(tiny.shape_rules().is_legal(s) for s in size)
    with pytest.raises((RuntimeError, ValueError)):
        with torch.no_grad():
            tiny(torch.rand(1, 3, *size))


def test_output_is_input_plus_synthesis(tiny):
    image = torch.rand(1, 3, 16, 24)
    with torch.no_grad():
        residual = tiny(image) - image
        tiny.synthesis.weight.zero_()
        tiny.synthesis.bias.zero_()
        assert torch.equal(tiny(image), image)
    assert residual.abs().max() > 0
    tiny.synthesis.reset_parameters()


def test_output_depends_on_the_whole_patch(tiny):
    """Why halo is None: instance norm couples every output pixel to the whole patch."""
    image = torch.rand(1, 3, 32, 32)
    changed = image.clone()
    changed[..., -1, -1] += 0.5
    with torch.no_grad():
        delta = (tiny(changed) - tiny(image)).abs()
    assert delta[..., 0, 0].max() > 0


def test_macs_per_output_pixel():
    """Conv and transposed-conv layers counted with hooks (the scalers are functional
    convs and not counted): flux units 774,144 (models.md's formula) + analysis 2,052 +
    synthesis 1,296, at any legal size."""
    with torch.device("meta"):
        meta = build("x4", 4)
    macs = []

    def hook(module, inputs, output):
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):
            macs.append(inputs[0].numel() * module.out_channels * k)
        else:
            macs.append(output.numel() * module.in_channels // module.groups * k)

    for module in meta.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            module.register_forward_hook(hook)
    for height, width in [(16, 24), (64, 48)]:
        macs.clear()
        meta(torch.empty(1, 3, height, width, device="meta"))
        assert sum(macs) == 777_492 * height * width
    assert 27 / 4 * (48 * 64 + 64 * 128 / 4 + 128 * 256 / 16) * 16 == 774_144


def test_onnx_export_is_dynamic_and_matches_torch(tiny):
    assert_dynamic_onnx_matches_torch(tiny, [(1, 16, 16), (1, 24, 40), (2, 32, 32)], channels=3)
