"""Engine keys: what a TensorRT plan is valid for, spelled in its file name.

A plan runs only on the GPU architecture and the TensorRT version that built it, for the
graph it was built from and the shapes of its optimization profile. All of that is in the
name, so a user can see why an engine was (not) used or rebuilt:

    engines/fp16_sm86_trt11.4.0_b1-4-8_s1-192-192_g3fa9c2d1.plan
            |     |    |         |                |
            |     |    |         |                first 8 hex digits of the graph's SHA-256
            |     |    |         optimization profile: batch min-opt-max, patch edge min-opt-max
            |     |    TensorRT major.minor.patch
            |     GPU compute capability
            precision of the ONNX graph (fp32, fp16, int8)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from srexport.errors import ShapeError
from srexport.lazy import version_tuple
from srexport.tensorrt.profiles import PatchProfile

ENGINE_DIR = "engines"
PLAN_SUFFIX = ".plan"
TIMING_CACHE = "timing.cache"
GRAPH_DIGITS = 8

_NAME = re.compile(
    r"^(?P<precision>fp32|fp16|int8)_sm(?P<sm>\d+)_trt(?P<trt>\d+\.\d+\.\d+)"
    r"_b(?P<b0>\d+)-(?P<b1>\d+)-(?P<b2>\d+)_s(?P<s0>\d+)-(?P<s1>\d+)-(?P<s2>\d+)"
    r"_g(?P<graph>[0-9a-f]{%d})$" % GRAPH_DIGITS
)


def short_trt_version(version: str) -> str:
    """'11.4.0.106' -> '11.4.0' (plans are tied to the release, not the build number)."""
    parts = list(version_tuple(version)[:3])
    parts += [0] * (3 - len(parts))
    return ".".join(map(str, parts))


def sm_tag(capability: tuple[int, int]) -> str:
    """(8, 6) -> '86'."""
    major, minor = capability
    return f"{major}{minor}"


@dataclass(frozen=True)
class EngineKey:
    precision: str
    sm: str  # compute capability digits, '86'
    trt_version: str  # '11.4.0'
    profile: PatchProfile
    graph: str  # first GRAPH_DIGITS hex digits of the ONNX graph's SHA-256

    @classmethod
    def for_device(cls, precision: str, capability: tuple[int, int], trt_version: str, profile: PatchProfile,
                   graph_sha256: str) -> "EngineKey":
        return cls(precision, sm_tag(capability), short_trt_version(trt_version), profile,
                   graph_sha256[:GRAPH_DIGITS].lower())

    @property
    def name(self) -> str:
        return f"{self.precision}_sm{self.sm}_trt{self.trt_version}_{self.profile.tag}_g{self.graph}"

    @property
    def filename(self) -> str:
        return self.name + PLAN_SUFFIX

    def same_target(self, other: "EngineKey") -> bool:
        """Same precision, GPU architecture, TensorRT and graph (the profile may differ)."""
        return (self.precision, self.sm, self.trt_version, self.graph) == (
            other.precision, other.sm, other.trt_version, other.graph)

    def mismatch(self, other: "EngineKey") -> str:
        """Why `other` (a plan found on disk) cannot serve this key; '' when it can."""
        reasons = []
        if other.sm != self.sm:
            reasons.append(f"built for sm{other.sm}, this GPU is sm{self.sm}")
        if other.trt_version != self.trt_version:
            reasons.append(f"built by TensorRT {other.trt_version}, this is TensorRT {self.trt_version}")
        if other.graph != self.graph:
            reasons.append("built from another version of the graph")
        if other.precision != self.precision:
            reasons.append(f"{other.precision}, not {self.precision}")
        if not reasons and not other.profile.covers(self.profile):
            reasons.append(f"its profile ({other.profile}) does not cover {self.profile}")
        return "; ".join(reasons)


def parse_engine_name(name: str) -> EngineKey | None:
    """The key of a plan file name (with or without .plan); None for anything else."""
    stem = name[: -len(PLAN_SUFFIX)] if name.endswith(PLAN_SUFFIX) else name
    match = _NAME.match(stem)
    if not match:
        return None
    g = {k: v for k, v in match.groupdict().items()}
    try:
        profile = PatchProfile(int(g["b0"]), int(g["b1"]), int(g["b2"]), int(g["s0"]), int(g["s1"]), int(g["s2"]))
    except ShapeError:
        return None
    return EngineKey(g["precision"], g["sm"], g["trt"], profile, g["graph"])


def list_engines(directory: Path) -> list[tuple[EngineKey, Path]]:
    """Every well-named plan in `directory` (sorted by name)."""
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob(f"*{PLAN_SUFFIX}")):
        key = parse_engine_name(path.name)
        if key is not None and path.is_file():
            found.append((key, path))
    return found


def find_engine(directories: list[Path], wanted: EngineKey) -> tuple[Path | None, list[str]]:
    """A plan serving `wanted` (exact name first, then any same-target plan whose profile
    covers it, smallest first), and why each other plan of this precision was passed over."""
    passed: list[str] = []
    candidates: list[tuple[int, Path]] = []
    for directory in directories:
        exact = directory / wanted.filename
        if exact.is_file():
            return exact, []
        for key, path in list_engines(directory):
            if key.precision != wanted.precision:
                continue
            why = wanted.mismatch(key)
            if why:
                passed.append(f"{path.name}: {why}")
            else:
                p = key.profile
                candidates.append((p.max_batch * p.max_edge * p.max_edge, path))
    if candidates:
        return min(candidates)[1], []
    return None, passed
