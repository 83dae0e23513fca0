"""VN+SC against an independent NumPy reference, and the multi-scale discriminator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from srexport.models.base import SRModel, ShapeRules, count_parameters
from srexport.models.bpp import keys_cubic
from srexport.models.discriminator import ENTRY, VNSC, BicubicDownscale, build

from onnx_helpers import assert_dynamic_onnx_matches_torch


def vnsc_numpy(rgb: np.ndarray) -> np.ndarray:
    """models.md's VN+SC in float64 with explicit loops: (3, H, W) in [0, 1] -> (49, H, W)."""
    y = 255.0 * (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    height, width = y.shape
    g1 = np.array([math.exp(-x * x / (2 * 1.17**2)) for x in range(-3, 4)])
    g = np.outer(g1, g1)
    g /= g.sum()

    def gaussian(a: np.ndarray) -> np.ndarray:
        padded = np.pad(a, 3, mode="edge")  # replicate padding
        out = np.zeros_like(a)
        for u in range(7):
            for v in range(7):
                out += g[u, v] * padded[u : u + height, v : v + width]
        return out

    mu = gaussian(y)
    s2 = gaussian(y * y) - mu * mu  # the one-pass definition, exact enough in float64
    n = (y - mu) / (np.sqrt(np.maximum(s2, 0.0)) + 1.0)
    out = np.zeros((49, height, width))
    for p in range(-3, 4):
        for q in range(-3, 4):
            for i in range(height):
                for j in range(width):
                    if 0 <= i + p < height and 0 <= j + q < width:  # zero outside
                        out[7 * (p + 3) + (q + 3), i, j] = n[i, j] * n[i + p, j + q]
    return out


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = 19, 26
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    return {
        "uniform": rng.random((3, h, w)),
        "dark uniform": 0.05 * rng.random((3, h, w)),
        "smooth + noise": 0.5 + 0.3 * np.sin(rows / 3) * np.cos(cols / 4)
        + 0.02 * rng.standard_normal((3, h, w)),
        # bright, low contrast (sky): the float32 one-pass variance would be 1 % off here
        "bright low contrast": 0.8 + 0.1 * cols / w + 0.002 * rng.standard_normal((3, h, w)),
        "flat with a step": np.where(cols < 13, 0.9, 0.2) * np.ones((3, h, w)),
    }


@pytest.mark.parametrize(("name", "image"), list(_images().items()))
def test_vnsc_matches_the_numpy_reference(name, image):
    image = np.clip(image, 0, 1).astype(np.float32)
    expected = vnsc_numpy(image.astype(np.float64))
    with torch.no_grad():
        got = VNSC()(torch.from_numpy(image)[None])[0].numpy().astype(np.float64)
    assert got.shape == (49, *image.shape[1:])
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale, name  # borders included
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


def test_vnsc_channel_layout():
    image = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    vnsc = VNSC()
    with torch.no_grad():
        v = vnsc(image)
        n = vnsc.normalise(image)
    assert torch.allclose(v[:, 24:25], n * n)  # p = q = 0
    # channel 7(p+3)+(q+3) with p = 1, q = -2: N(i, j) N(i+1, j-2), zero where it leaves
    c = 7 * 4 + 1
    assert torch.allclose(v[:, c, :-1, 2:], n[:, 0, :-1, 2:] * n[:, 0, 1:, :-2])
    assert (v[:, c, -1, :] == 0).all() and (v[:, c, :, :2] == 0).all()
    assert count_parameters(vnsc) == 0 and not vnsc.state_dict()


def test_fixed_downscales_are_bicubic():
    image = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(4))
    for factor in (2, 4, 8):
        with torch.no_grad():
            ours = BicubicDownscale(factor)(image)
        reference = F.interpolate(image, scale_factor=1 / factor, mode="bicubic", antialias=True)
        assert ours.shape == reference.shape == (1, 3, 64 // factor, 48 // factor)
        assert (ours - reference)[..., 2:-2, 2:-2].abs().max() < 1e-5
    assert keys_cubic(0.25) == pytest.approx(0.8671875)


@pytest.fixture(scope="module")
def disc():
    torch.manual_seed(0)
    return build("default", 1).eval()


def test_entry_and_parameters(disc):
    assert ENTRY.name == "discriminator" and ENTRY.task == "critic"
    assert ENTRY.variants == {"default": (1,)} and ENTRY.extra["score_stride"] == 16
    assert disc.scale == 1 and disc.noise_inputs == ()
    assert count_parameters(disc) == 630_529
    assert [s[0].in_channels for s in disc.stages] == [49, 113, 113, 113]
    assert disc.stages[-1][-1].out_channels == 1 and disc.stages[-1][-1].stride == (2, 2)


def test_shape_rules(disc):
    rules = disc.shape_rules()
    assert (rules.multiple_of, rules.offset, rules.min_size, rules.output_scale) == (16, 0, 16, 1)
    assert rules.halo == 92 and disc.receptive_field() == (-92, 99)


@pytest.mark.parametrize("size", [(16, 16), (32, 48), (64, 32)])
def test_score_map_shape(disc, size):
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        score = disc(image)
    assert score.shape == (2, 1, size[0] // 16, size[1] // 16)
    assert torch.isfinite(score).all()


def test_receptive_field_seen_by_autograd(disc):
    """Score pixel o reads HR rows 16o-92 .. 16o+99 (LeakyReLU passes every gradient)."""
    image = torch.rand(1, 3, 256, 32, generator=torch.Generator().manual_seed(5))
    image.requires_grad_()
    score = disc(image)
    score[0, 0, 8, 1].backward()
    rows = (image.grad[0].abs().sum((0, 2)) != 0).nonzero()[:, 0]
    assert (rows.min().item() - 128, rows.max().item() - 128) == disc.receptive_field()


def test_onnx_export_of_vnsc_is_dynamic_and_matches_torch():
    class Graph(SRModel):
        def __init__(self) -> None:
            super().__init__()
            self.vnsc = VNSC()

        def forward(self, image):
            return self.vnsc(image)

        def shape_rules(self) -> ShapeRules:
            return ShapeRules()

    assert_dynamic_onnx_matches_torch(Graph().eval(), [(1, 8, 8), (1, 13, 29), (2, 24, 24)], channels=49,
                                      relative=True)
