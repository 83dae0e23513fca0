"""The bundle: a directory holding everything a runtime needs, described by manifest.json.

Layout: manifest.json, model.<precision>.onnx, weights.npz (the PyTorch weights as
plain arrays, for `verify` and the torch backend; no pickle), engines/ (TensorRT).
Every file's SHA-256 is in the manifest and checked on load.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srexport.errors import BundleError
from srexport.fsutil import atomic_path, sha256_file
from srexport.models.base import NoiseInput, ShapeRules

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass
class PrecisionInfo:
    """One graph of the bundle and what was measured about it."""

    file: str
    max_abs_error_vs_torch: float | None = None
    psnr_vs_fp32_db: float | None = None
    psnr_y_db: float | None = None
    notes: dict = field(default_factory=dict)


@dataclass
class Manifest:
    model: str
    variant: str
    scale: int
    task: str
    input_kind: str
    params: int
    inputs: list[str]
    noise_inputs: list[NoiseInput]
    outputs: list[str]
    shape_rules: ShapeRules
    patch: int
    overlap: int
    precisions: dict[str, PrecisionInfo]
    files: dict[str, str] = field(default_factory=dict)
    checkpoint: dict | None = None
    tools: dict = field(default_factory=dict)
    verification: list[dict] = field(default_factory=list)
    plugin_graph: dict | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        version = data.get("format_version")
        if not isinstance(version, int):
            raise BundleError("manifest.json has no format_version")
        if version > FORMAT_VERSION:
            raise BundleError(
                f"bundle format {version} is newer than this sr-export understands "
                f"({FORMAT_VERSION}); upgrade sr-export"
            )
        data["shape_rules"] = ShapeRules.from_dict(data["shape_rules"])
        data["noise_inputs"] = [NoiseInput(**n) for n in data["noise_inputs"]]
        data["precisions"] = {k: PrecisionInfo(**v) for k, v in data["precisions"].items()}
        data["value_range"] = tuple(data["value_range"])
        return cls(**data)


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

    def graph_path(self, precision: str) -> Path:
        if precision not in self.manifest.precisions:
            have = ", ".join(self.manifest.precisions)
            raise BundleError(f"bundle {self.root} has no {precision} graph (it has: {have})")
        return self.root / self.manifest.precisions[precision].file

    def load_weights(self) -> dict[str, np.ndarray]:
        with np.load(self.root / WEIGHTS, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}


def save_weights(state: dict, path: Path) -> None:
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Hash every file under `root` (except the manifest) into the manifest and write it."""
    manifest.files = {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    with atomic_path(root / MANIFEST) as tmp:
        tmp.write_text(manifest.to_json())


def load_bundle(path: str | Path, verify_hashes: bool = True) -> Bundle:
    """Open a bundle directory, refusing a missing, truncated or tampered one."""
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root} is not a directory")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{root} is not a bundle: no {MANIFEST}")
    try:
        manifest = Manifest.from_json(manifest_path.read_text())
    except BundleError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path} is corrupt: {exc}") from None
    if verify_hashes:
        for name, digest in manifest.files.items():
            file = root / name
            if not file.is_file():
                raise BundleError(f"bundle {root} is incomplete: {name} is missing")
            if sha256_file(file) != digest:
                raise BundleError(f"bundle {root} is damaged: {name} does not match its SHA-256")
    for info in manifest.precisions.values():
        if info.file not in manifest.files:
            raise BundleError(f"bundle {root} lists {info.file} but does not hash it")
    return Bundle(root, manifest)
