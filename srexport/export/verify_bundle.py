"""`sr-export verify`: every graph of a bundle against the PyTorch model it came from."""

from __future__ import annotations

from pathlib import Path

from srexport.bundle import load_bundle
from srexport.export.build import model_from_bundle
from srexport.export.verify import TOLERANCE, check_parity


def verify_bundle(path: str | Path) -> list[tuple[str, float, float]]:
    """(precision, max abs error vs PyTorch, tolerance) for each graph of the bundle."""
    bundle = load_bundle(path)
    model = model_from_bundle(bundle)
    results = []
    for precision in bundle.manifest.precisions:
        if precision != "fp32":
            continue
        checks = check_parity(model, bundle.graph_path(precision))
        results.append((precision, max(c.max_abs_error for c in checks), TOLERANCE))
    return results
