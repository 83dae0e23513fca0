"""Real networks through the tiler: seams must stay below the network's own boundary effect."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import shared_file
from srexport.export.build import BuildRequest, build_bundle
from srexport.runtime.backends.onnxruntime import OrtSession
from srexport.runtime.upscaler import Upscaler


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize(
    "model,weights,scale,crop,patch",
    [
        ("pcarn-m", ("pcarn", "PCARN-M-L1.pth"), 4, (150, 170), 96),
        ("gmgbp", ("gmgbp-pirm2018", "BOE-R1.model"), 4, (150, 170), 128),
    ],
)
def test_tiled_matches_untiled_at_the_default_overlap(tmp_path, model, weights, scale, crop, patch):
    checkpoint = shared_file("weights", *weights)
    image = shared_file("images", "CSet14", "baboon.png")
    bundle = build_bundle(BuildRequest(model=model, scale=scale, weights=checkpoint, out=tmp_path / "b"), warn=lambda m: None)
    planes = np.asarray(Image.open(image).convert("RGB"), np.float32)[: crop[0], : crop[1]].transpose(2, 0, 1) / 255
    session = OrtSession(bundle)
    tiled_up = Upscaler(bundle, session, patch=(patch, patch))  # overlap: the bundle's default
    plan = tiled_up.plan(*crop)
    assert len(plan.tiles) >= 4, "the crop must be split into several patches"
    tiled = tiled_up.upscale_planes(np.ascontiguousarray(planes))
    whole = Upscaler(bundle, session, patch=(max(crop) + 8, max(crop) + 8), overlap=0).upscale_planes(planes)
    assert tiled.shape == whole.shape == (3, scale * crop[0], scale * crop[1])
    assert _psnr(tiled, whole) >= 45.0
