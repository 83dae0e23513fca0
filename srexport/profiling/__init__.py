"""Profiling a bundle against the papers: `sr-export profile` (see profile.py).

- `flops.py`: MAC/FLOP counts read from the exported ONNX graph at concrete shapes.
- `titanx.py`: the papers' Titan X table as data, workload presets, the comparison.
- `peak.py`: a matmul peak measured in the same run (CPU), published GPU peaks.
- `profile.py`: `profile_bundle(...) -> dict`, the measurement itself (typed:
  `measure(path, ProfileRequest(...)) -> Profile`, parts in `records.py`).
- `schema.py`: the JSON document's schema (`PROFILE_SCHEMA`) and `validate`.
- `plot.py`: `write_plot(profile, path)`, a PNG via matplotlib (optional dependency).
"""

from srexport.profiling.flops import FlopCount, count_bundle, count_flops
from srexport.profiling.profile import measure, profile_bundle, run_profile, summary, write_json
from srexport.profiling.records import Profile, ProfileRequest
from srexport.profiling.schema import PROFILE_SCHEMA, validate


def write_plot(profile: dict, path):
    """Draw a profile to a PNG (needs matplotlib); see `srexport.profiling.plot`."""
    from srexport.profiling.plot import write_plot as _write

    return _write(profile, path)


__all__ = [
    "FlopCount",
    "PROFILE_SCHEMA",
    "Profile",
    "ProfileRequest",
    "count_bundle",
    "count_flops",
    "measure",
    "profile_bundle",
    "run_profile",
    "summary",
    "validate",
    "write_json",
    "write_plot",
]
