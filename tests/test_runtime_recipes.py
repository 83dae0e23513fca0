"""The MGBPv2 authors' 16x block recipe (`run.py` of github.com/pnavarre/mgbpv2) through the
runtime, against a NumPy re-implementation of their formulas written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from srexport.errors import ShapeError, SrExportError
from srexport.export.build import export_bundle
from srexport.models.base import ShapeRules, SRModel
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.blend import window_1d
from srexport.runtime.recipes import RECIPES, BlockRecipe, plan_blocks, resolve
from srexport.runtime.upscaler import Upscaler


class UpscaledStack(SRModel):
    """A 16x network on the bicubic-upscaled image: three zero-padded 3x3 convs, so that a
    block's output near its edges differs from the whole image's (the blend matters)."""

    scale = 16
    input_kind = "upscaled"

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.Tanh(), nn.Conv2d(6, 6, 3, padding=1),
                                  nn.Tanh(), nn.Conv2d(6, 3, 3, padding=1))

    def shape_rules(self) -> ShapeRules:
        return ShapeRules(output_scale=1, halo=3)

    def forward(self, image):
        return image + self.body(image)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    torch.manual_seed(0)
    model = UpscaledStack().eval()
    root = tmp_path_factory.mktemp("recipe") / "bundle"
    bundle = export_bundle(model, root, {"model": "toy16", "variant": "aim2019-16x", "scale": 16, "task": "sr"})
    return model, bundle, OrtSession(bundle, threads=1)


def authors_recipe(model: nn.Module, lr_u8: np.ndarray, block: int, skip: int) -> np.ndarray:
    """run.py + MergingBlocks, in NumPy with float64 accumulation: HxWx3 uint8 -> 3x16Hx16W."""
    image = Image.fromarray(lr_u8)
    up = np.asarray(image.resize((image.width * 16, image.height * 16), Image.BICUBIC)).astype(np.float32) / 255
    h, w = up.shape[:2]
    top = (block - h) // 2 if h < block else 0
    left = (block - w) // 2 if w < block else 0
    bottom = block - h - top if h < block else 0
    right = block - w - left if w < block else 0
    x = np.pad(up, ((top, bottom), (left, right), (0, 0)), mode="reflect").transpose(2, 0, 1)

    def net(a):
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(a))[None])[0].double().numpy()

    H, W = x.shape[1:]
    if H > block or W > block:
        rows = np.linspace(0, H - block, max((H - block) // skip + 1, 2)).round().astype(int)
        cols = np.linspace(0, W - block, max((W - block) // skip, 2)).round().astype(int)
        tri = np.concatenate([np.arange(1, block // 2 + 1 + block % 2), np.arange(block // 2, 0, -1)])
        weight = np.outer(tri, tri).astype(np.float64)
        weight /= weight.mean()
        out, count = np.zeros((3, H, W)), np.zeros((3, H, W))
        for cy in rows:
            for cx in cols:
                out[:, cy : cy + block, cx : cx + block] += net(x[:, cy : cy + block, cx : cx + block]) * weight
                count[:, cy : cy + block, cx : cx + block] += weight
        result = out / count
    else:
        result = net(x)
    return result[:, top : top + h, left : left + w]


def lr(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth 8-bit LR image (a noisy one makes bicubic overshoot and clip everywhere)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC))


@pytest.mark.parametrize("recipe,size", [
    ("aim2019-perceptual", (52, 61)),  # 832 x 976: 2 x 3 blocks, a corner at round(104.5) = 104
    ("aim2019-fidelity", (30, 50)),  # 480 x 800: rows padded to 667 (93 before), 2 blocks
    ("aim2019-fidelity", (20, 24)),  # smaller than one block: padded, one call
])
def test_runtime_reproduces_the_authors_block_recipe(toy, recipe, size):
    model, bundle, session = toy
    image = lr(*size, seed=sum(size))
    r = RECIPES[recipe]
    expected = authors_recipe(model, image, r.block, r.skip)
    up = Upscaler(bundle, session, recipe=r)
    got = up.upscale_planes(image.transpose(2, 0, 1).astype(np.float32) / 255)
    assert got.shape == expected.shape == (3, 16 * size[0], 16 * size[1])
    np.testing.assert_allclose(got, expected, atol=2e-6)  # measured: at most 3.6e-7
    assert "recipe" in up.tiling_note()


def test_the_recipe_differs_from_the_default_blending(toy):
    """The property above can fail: Hamming weights on evenly spaced tiles give other numbers."""
    model, bundle, session = toy
    image = lr(52, 61, seed=3)
    expected = authors_recipe(model, image, 767, 64)
    other = Upscaler(bundle, session, patch=(767, 767), overlap=64, window="hamming", stitch="blend")
    got = other.upscale_planes(image.transpose(2, 0, 1).astype(np.float32) / 255)
    assert np.abs(got - expected).max() > 1e-4


def test_block_corners_follow_the_authors_row_and_column_counts():
    plan = plan_blocks(832, 976, RECIPES["aim2019-perceptual"], ShapeRules())
    rows = sorted({t for t, _ in plan.tiles})
    cols = sorted({l for _, l in plan.tiles})
    assert rows == [0, 65]  # n = (832 - 767) // 64 + 1 = 2
    assert cols == [0, 104, 209]  # n = (976 - 767) // 64 = 3, 104.5 rounds to even
    assert plan.before_h == plan.before_w == 0


def test_the_triangular_window_has_mean_one_and_never_reaches_zero():
    w = window_1d("triangular-authors", 767).astype(np.float64)
    assert w.shape == (767,) and w.argmax() == 383 and np.allclose(w, w[::-1])
    assert w.mean() == pytest.approx(1.0, abs=1e-6) and w.min() == pytest.approx(1 / (384**2 / 767), rel=1e-6)
    np.testing.assert_allclose(window_1d("triangular-authors", 6), np.array([1, 2, 3, 3, 2, 1]) / 2, rtol=1e-7)


def test_a_block_the_network_cannot_take_is_refused():
    with pytest.raises(ShapeError, match="block 667 is not a legal input size"):
        plan_blocks(900, 900, RECIPES["aim2019-fidelity"], ShapeRules(multiple_of=16, offset=15))


def test_aim2019_picks_the_recipe_by_variant_and_refuses_lr_networks(toy):
    _, bundle, _ = toy
    manifest = bundle.manifest
    assert resolve("aim2019", manifest) == RECIPES["aim2019-perceptual"]
    assert (RECIPES["aim2019-perceptual"].block, RECIPES["aim2019-perceptual"].skip) == (767, 64)
    assert (RECIPES["aim2019-fidelity"].block, RECIPES["aim2019-fidelity"].skip) == (667, 128)
    with pytest.raises(SrExportError, match="unknown recipe"):
        resolve("aim2020", manifest)
    lr_manifest = type(manifest)(**{**manifest.__dict__, "input_kind": "lr"})
    with pytest.raises(SrExportError, match="takes the LR image"):
        resolve("aim2019", lr_manifest)
    assert isinstance(RECIPES["aim2019-fidelity"], BlockRecipe)
