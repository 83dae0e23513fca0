"""`sr-export verify`: every graph of a bundle against the PyTorch model it came from."""

from __future__ import annotations

from pathlib import Path

from srexport.bundle import load_bundle
from srexport.calib.verify_precisions import VerifyResult, verify_precision
from srexport.export.model_bundle import model_from_bundle
from srexport.export.parity import TOLERANCE, check_parity
from srexport.graphcheck import check_graph


def verify_bundle(path: str | Path) -> list[VerifyResult]:
    """Check each graph of the bundle: fp32 against PyTorch to 1e-4, reduced precisions
    against the accuracy recorded in the manifest."""
    bundle = load_bundle(path)
    model = model_from_bundle(bundle)
    results = []
    for precision in bundle.manifest.precisions:
        check_graph(bundle, precision)
        if precision == "fp32":
            checks = check_parity(model, bundle.graph_path(precision))
            worst = max(c.max_abs_error for c in checks)
            results.append(VerifyResult(precision, "max abs error vs PyTorch", worst, f"<= {TOLERANCE:g}",
                                        worst <= TOLERANCE))
            if bundle.manifest.zero_noise_graph:
                checks = check_parity(model, bundle.graph_path(precision, zero_noise=True), zero_noise=True)
                worst = max(c.max_abs_error for c in checks)
                results.append(VerifyResult("fp32 W = 0 graph", "max abs error vs PyTorch at noise 0", worst,
                                            f"<= {TOLERANCE:g}", worst <= TOLERANCE))
        else:
            results.append(verify_precision(bundle, precision))
    return results
