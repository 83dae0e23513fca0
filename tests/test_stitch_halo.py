"""The measured stitching halo (srexport/export/stitch_halo.py): the tail figure against the
layers' geometry, what a build from a checkpoint records, and crop tiles at the measured halo
against the whole image computed by the PyTorch network."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, shared_file
from srexport.bundle import Manifest
from srexport.errors import BundleError
from srexport.export.stitch_halo import MARGIN, TAIL_BOUND, tails
from srexport.models.checkpoint import load_checkpoint
from srexport.models.registry import build_model

GMGBP_WEIGHTS = ("weights", "gmgbp-pirm2018", "BOE-R1.model")


def test_the_tail_vanishes_exactly_beyond_the_geometric_halo():
    """PCARN-M's receptive field (from its layers) is 21 LR pixels: input pixels farther
    away cannot reach the centre output, those at 21 do."""
    torch.manual_seed(0)
    model = build_model("pcarn-m", "m", 2).eval()
    halo = model.shape_rules().halo
    assert halo == 21
    tail = tails(model, 2 * halo + 7, np.random.default_rng(0))
    assert len(tail) == halo + 4
    assert np.all(tail[halo:] == 0.0)
    assert tail[halo - 1] > 0.0
    assert np.all(np.diff(tail) <= 0)  # a tail only shrinks as the radius grows


@pytest.fixture(scope="module")
def gmgbp(bundle_factory):
    return bundle_factory("gmgbp", None, None, shared_file(*GMGBP_WEIGHTS))


def test_a_build_from_the_published_gmgbp_records_a_measured_halo(gmgbp, bundle_factory):
    record = gmgbp.manifest.stitch_halo
    assert record is not None
    assert record.geometric == gmgbp.manifest.shape_rules.halo == 85
    # BOE-R1: the input beyond about 30 LR pixels moves an output pixel by < 1e-7
    assert 20 <= record.pixels <= 45
    assert record.margin == MARGIN and record.tail_bound == TAIL_BOUND
    assert len(record.tails) == record.trials and all(0 <= t <= TAIL_BOUND for t in record.tails)
    assert gmgbp.manifest.stitching_rules.halo == record.pixels
    assert gmgbp.manifest.stitching_rules.output_scale == gmgbp.manifest.shape_rules.output_scale
    # the initialisation measures nothing: stitching keeps the geometric halo
    plain = bundle_factory("gmgbp", None, None)
    assert plain.manifest.stitch_halo is None
    assert plain.manifest.stitching_rules == plain.manifest.shape_rules


def test_crop_tiles_at_the_measured_halo_equal_the_whole_image(gmgbp):
    import srexport

    lr = np.asarray(Image.open(REPO / "examples" / "sample.png").convert("RGB"))
    planes = np.ascontiguousarray(lr.transpose(2, 0, 1), np.float32) / np.float32(255.0)
    net = load_checkpoint(build_model("gmgbp", None, 4), shared_file(*GMGBP_WEIGHTS)).eval()
    with torch.no_grad():
        x = torch.from_numpy(planes)[None]
        noise = [torch.zeros(n.shape(1, *x.shape[2:])) for n in net.noise_inputs]
        whole = net(x, *noise)[0].numpy()
    halo = gmgbp.manifest.stitch_halo.pixels
    up = srexport.load(gmgbp.root, "onnxruntime", "fp32", patch=2 * halo + 12, stitch="crop", threads=2)
    plan = up.plan(*lr.shape[:2])
    assert len(plan.tiles) >= 4 and plan.owned
    assert plan.patch_h < lr.shape[0] and plan.patch_w < lr.shape[1]
    # a tile that the geometric halo (85 px) would need to be at least 171 px wide
    tiled = up.upscale_planes(planes)
    assert tiled.shape == whole.shape
    assert float(np.max(np.abs(tiled - whole))) <= 1e-5
    lsb = np.abs(np.rint(np.clip(tiled, 0, 1) * 255) - np.rint(np.clip(whole, 0, 1) * 255))
    assert lsb.max() <= 1


def test_the_manifest_refuses_a_stitch_halo_beyond_the_geometric_one(gmgbp):
    data = json.loads((gmgbp.root / "manifest.json").read_text())
    assert Manifest.from_json(json.dumps(data)).stitch_halo == gmgbp.manifest.stitch_halo
    for pixels, message in ((86, "'stitch_halo.pixels' must be between 0 and 85, got 86"),
                            (-1, "'stitch_halo.pixels' must be between 0 and 85, got -1"),
                            ("33", "'stitch_halo.pixels' must be an integer")):
        bad = json.loads(json.dumps(data))
        bad["stitch_halo"]["pixels"] = pixels
        with pytest.raises(BundleError, match=message):
            Manifest.from_json(json.dumps(bad))
    unbounded = json.loads(json.dumps(data))
    unbounded["shape_rules"]["halo"] = None
    with pytest.raises(BundleError, match="needs a finite shape_rules.halo"):
        Manifest.from_json(json.dumps(unbounded))


@pytest.mark.parametrize("model,variant,weights", [
    ("pcarn-m", "m", ("weights", "pcarn", "PCARN-M-L1.pth")),  # decays only within the margin of its 21 px
    ("mgbp", "ntire2018-track1", ("weights", "mgbp-ntire2018", "ntire2018-track1.pkl")),  # FLOPs not countable
])
def test_checkpoints_whose_halo_is_not_measured_build_with_the_geometric_one(bundle_factory, model, variant, weights):
    bundle = bundle_factory(model, variant, 4 if model == "pcarn-m" else None, shared_file(*weights))
    assert bundle.manifest.checkpoint is not None
    assert bundle.manifest.stitch_halo is None
    assert bundle.manifest.stitching_rules.halo == bundle.manifest.shape_rules.halo
