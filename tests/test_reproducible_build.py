"""Builds are reproducible: the same checkpoint, options and seed give byte-identical files
(ONNX graphs, weights, manifest), so nothing a build decides depends on timing noise."""

from __future__ import annotations

import hashlib
from pathlib import Path

from srexport.calib.options import PrecisionOptions
from srexport.export.build import BuildRequest, build_bundle, export_bundle
from test_calib_units import TinySR, write_images

IDENTITY = {"model": "tiny", "variant": "t", "scale": 2, "task": "sr"}


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_precision_builds_with_one_seed_are_byte_identical(tmp_path):
    calib = write_images(tmp_path / "calib", 3, seed=0)
    evaluation = write_images(tmp_path / "eval", 2, (56, 64), seed=10)
    digests = []
    for run in range(2):
        options = PrecisionOptions(fp16=True, int8=True, calib_dir=calib, calib_patches=4,
                                   calib_method="percentile", seed=5, eval_dir=evaluation)
        bundle = export_bundle(TinySR(), tmp_path / f"b{run}", IDENTITY, precision=options)
        digests.append(_digests(bundle.root))
    assert set(digests[0]) == {"manifest.json", "weights.npz", "model.fp32.onnx", "model.fp16.onnx",
                               "model.int8.onnx", "model.int8.tensorrt.onnx"}
    assert digests[0] == digests[1]


def test_two_builds_of_a_shipped_checkpoint_are_byte_identical(tmp_path):
    digests = [_digests(build_bundle(BuildRequest(model="pcarn-m", scale=2, out=tmp_path / f"b{run}"),
                                     warn=lambda message: None).root) for run in range(2)]
    assert digests[0] == digests[1] and "model.fp32.onnx" in digests[0]
