"""Helpers shared by the benchmark scripts (each prints one JSON document)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

CHECKPOINTS = {
    "gmgbp": SHARED / "weights" / "gmgbp-pirm2018" / "BOE-R1.model",
    "pcarn-m": SHARED / "weights" / "pcarn" / "PCARN-M-L1.pth",
}


def weights_for(model: str) -> Path | None:
    path = CHECKPOINTS.get(model)
    return path if path is not None and path.exists() else None


def timeit(fn: Callable[[], object], repeat: int = 3, warmup: int = 1) -> dict:
    """Median, p10 and p90 seconds of `repeat` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "median_s": statistics.median(times),
        "p10_s": times[max(0, int(0.1 * (len(times) - 1)))],
        "p90_s": times[min(len(times) - 1, round(0.9 * (len(times) - 1)))],
        "runs": len(times),
    }


def build(model: str, out: Path, **kwargs):
    from srexport.export.build import BuildRequest, build_bundle

    return build_bundle(BuildRequest(model=model, weights=weights_for(model), out=out, **kwargs), warn=lambda m: None)
