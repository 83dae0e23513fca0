"""Small bundles for the TensorRT tests, exported once per test session and copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

from srexport.bundle import Bundle, load_bundle

_made: dict[tuple, Path] = {}


def toy_bundle(tmp_path_factory, dest: Path, noisy: bool = True, patch: int = 32) -> Bundle:
    """A fresh copy at `dest` of the x2 PixelModel bundle (fp32 graph; noise input when `noisy`)."""
    from srexport.export.build import export_bundle
    from toymodels import PixelModel

    key = (noisy, patch)
    if key not in _made:
        out = tmp_path_factory.mktemp("trt-bundles") / f"pixel-{int(noisy)}-{patch}"
        export_bundle(PixelModel(noisy=noisy), out, {"model": "pixel", "variant": "toy", "scale": 2, "task": "sr"},
                      patch=patch)
        _made[key] = out
    shutil.copytree(_made[key], dest)
    return load_bundle(dest)
