"""How a model and its bundle map onto each other: the overlap a manifest records for a
model's patch, and the PyTorch model rebuilt from a bundle (the torch backend and
`sr-export verify` run it)."""

from __future__ import annotations

import torch

from srexport.bundle import WEIGHTS, Bundle
from srexport.errors import BundleError
from srexport.models import SRModel, registry
from srexport.models.checkpoint import check_state_fits


def recommended_overlap(model: SRModel, patch: int) -> int:
    """Overlap in input pixels: twice the receptive-field radius, at most half a patch."""
    halo = model.shape_rules().halo
    overlap = patch // 4 if halo is None else min(2 * halo, patch // 2)
    return overlap + overlap % 2


def model_from_bundle(bundle: Bundle) -> SRModel:
    """Rebuild the PyTorch model a bundle was exported from, with its weights."""
    m = bundle.manifest
    model = registry.get(m.model).factory(m.variant, m.scale)
    weights = {k: torch.from_numpy(v) for k, v in bundle.load_weights().items()}
    check_state_fits(model, weights, f"{bundle.root}/{WEIGHTS}", BundleError)
    model.load_state_dict(weights, strict=True)
    return model.eval()
