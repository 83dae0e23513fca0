"""The bundle: a directory holding everything a runtime needs, described by manifest.json.

Layout: manifest.json, model.<precision>.onnx, weights.npz (the PyTorch weights as
plain arrays, for `verify` and the torch backend; no pickle), engines/ (TensorRT).
Every file's SHA-256 is in the manifest and checked on load.
"""

from __future__ import annotations

import dataclasses
import json
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from srexport.errors import BundleError
from srexport.fsutil import atomic_path, sha256_file
from srexport.shapes import NoiseInput, ShapeRules, StitchHalo

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class ModelIdentity:
    """Which registered network, variant and scale a bundle holds ("sr" or "critic")."""

    model: str
    variant: str
    scale: int
    task: str = "sr"


@dataclass(frozen=True)
class CheckpointRecord:
    """The checkpoint a bundle's weights came from; `shipped`, `licence` and `source` only
    for a checkpoint shipped with sr-export (left out of the JSON otherwise)."""

    file: str
    sha256: str
    shipped: str | None = None
    licence: str | None = None
    source: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k in ("file", "sha256")}

    @classmethod
    def from_json(cls, data: dict) -> "CheckpointRecord":
        _keys(data, ("file", "sha256"), ("shipped", "licence", "source"), "checkpoint.")
        for key, value in data.items():
            if value is not None and not isinstance(value, str):
                raise BundleError(f"{_where('checkpoint.' + key)} must be a string, got {_kind(value)}")
        return cls(**data)


@dataclass(frozen=True)
class ParityCheck:
    """The FP32 graph against PyTorch on one input size (`padded`: the size needed padding)."""

    height: int
    width: int
    padded: bool
    max_abs_error: float

    @classmethod
    def from_json(cls, data: dict) -> "ParityCheck":
        if not isinstance(data, dict):
            raise BundleError(f"{_where('verification')} must hold objects, got {_kind(data)}")
        _keys(data, tuple(f.name for f in dataclasses.fields(cls)), (), "verification[].")
        return cls(**data)


@dataclass(frozen=True)
class VerifyNote:
    """The build-to-verify contract, notes["verify"] of a reduced precision: its PSNR vs
    FP32 on `inputs`, which `sr-export verify` recomputes and accepts down to
    `psnr_vs_fp32_db - tolerance_db`; `method`: how BF16 was computed."""

    inputs: str
    psnr_vs_fp32_db: float | None
    tolerance_db: float
    method: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k != "method"}

    @classmethod
    def from_json(cls, data: dict) -> "VerifyNote":
        """Lenient: a note written by hand or by an older build may lack fields."""
        return cls(inputs=str(data.get("inputs", "")), psnr_vs_fp32_db=data.get("psnr_vs_fp32_db"),
                   tolerance_db=float(data.get("tolerance_db", 1.0)), method=data.get("method"))


@dataclass
class PrecisionInfo:
    """One graph of the bundle and what was measured about it."""

    file: str
    max_abs_error_vs_torch: float | None = None
    psnr_vs_fp32_db: float | None = None
    psnr_y_db: float | None = None
    notes: dict = field(default_factory=dict)

    def verify_note(self) -> VerifyNote | None:
        """notes["verify"] as a `VerifyNote`, or None when the build recorded none."""
        note = (self.notes or {}).get("verify")
        return VerifyNote.from_json(note) if isinstance(note, dict) else None


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
    checkpoint: CheckpointRecord | None = None
    tools: dict = field(default_factory=dict)
    verification: list[ParityCheck] = field(default_factory=list)
    plugin_graph: dict | None = None
    graph_rewrites: dict | None = None  # srexport.export.cpu_rewrites.RewriteRecord
    zero_noise_graph: dict | None = None  # srexport.export.zero_noise.ZeroNoiseRecord
    stitch_halo: StitchHalo | None = None  # measured at build (srexport.export.stitch_halo)
    value_range: tuple[float, float] = (0.0, 1.0)
    channel_order: str = "RGB"
    layout: str = "NCHW"
    format_version: int = FORMAT_VERSION

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.model, self.variant, self.scale, self.task)

    @property
    def stitching_rules(self) -> ShapeRules:
        """The shape rules tiling stitches by: the measured stitching halo in place of the
        geometric one where the build recorded it (crop tiles overlap by twice it)."""
        if self.stitch_halo is None:
            return self.shape_rules
        return dataclasses.replace(self.shape_rules, halo=self.stitch_halo.pixels)

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["checkpoint"] = self.checkpoint.to_json() if self.checkpoint is not None else None
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        """Parse and schema-check a manifest; `BundleError` names the first bad field."""
        try:
            data = json.loads(text, parse_constant=_refuse_constant)
        except RecursionError:
            raise BundleError("manifest.json is corrupt: nested too deeply") from None
        except ValueError as exc:
            raise BundleError(f"manifest.json is corrupt: {exc}") from None
        validate_manifest(data)
        data["shape_rules"] = ShapeRules.from_dict(data["shape_rules"])
        data["noise_inputs"] = [NoiseInput(**n) for n in data["noise_inputs"]]
        data["precisions"] = {k: PrecisionInfo(**v) for k, v in data["precisions"].items()}
        if data.get("checkpoint") is not None:
            data["checkpoint"] = CheckpointRecord.from_json(data["checkpoint"])
        if data.get("stitch_halo") is not None:
            data["stitch_halo"] = StitchHalo.from_json(data["stitch_halo"])
        data["verification"] = [ParityCheck.from_json(c) for c in data.get("verification", [])]
        if "value_range" in data:
            data["value_range"] = tuple(data["value_range"])
        return cls(**data)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

    def graph_path(self, precision: str, zero_noise: bool = False) -> Path:
        """The graph of `precision`; with `zero_noise`, the FP32 one is the W = 0 graph (the
        FP32 graph without its noise inputs, `srexport.export.zero_noise`) where the build
        wrote one."""
        if precision not in self.manifest.precisions:
            have = ", ".join(self.manifest.precisions)
            raise BundleError(f"bundle {self.root} has no {precision} graph (it has: {have})")
        if zero_noise and precision == "fp32" and self.manifest.zero_noise_graph:
            return self.root / self.manifest.zero_noise_graph["file"]
        return self.root / self.manifest.precisions[precision].file

    def load_weights(self) -> dict[str, np.ndarray]:
        """The PyTorch weights as arrays; a damaged or foreign archive is one `BundleError`."""
        path = contained_file(self.root, WEIGHTS, WEIGHTS)
        try:
            data = np.load(path, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise BundleError(f"bundle {self.root}: {WEIGHTS} is a single array, not an archive of weights")
            with data:
                arrays = {k: data[k] for k in data.files}
        except BundleError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(f"bundle {self.root}: {WEIGHTS} is not a NumPy archive of weights ({first})") from None
        for name, array in arrays.items():
            if array.dtype.kind not in "fiub":
                raise BundleError(f"bundle {self.root}: {WEIGHTS} entry '{name}' has dtype {array.dtype}, not numbers")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise BundleError(f"bundle {self.root}: {WEIGHTS} entry '{name}' holds NaN or infinite values")
        return arrays


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
    """Open a bundle directory, refusing a missing, truncated, tampered or inconsistent one.

    Every file the manifest names must be a regular file inside the bundle directory
    (no `..`, no absolute path, no symlink leaving it); that is checked before any such
    file is opened.
    """
    if not isinstance(path, (str, Path)) or (isinstance(path, str) and not path):
        raise BundleError(f"bundle must be a path to a bundle directory, got {_kind(path)}")
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle not found: {root} is not a directory")
    if not (root / MANIFEST).exists():
        raise BundleError(f"{root} is not a bundle: no {MANIFEST}")
    manifest_path = contained_file(root, MANIFEST, MANIFEST)
    if manifest_path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{root}/{MANIFEST} is larger than {MAX_MANIFEST_BYTES >> 20} MiB; not a manifest")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise BundleError(f"{root}/{MANIFEST} is corrupt: not UTF-8 text") from None
    try:
        manifest = Manifest.from_json(text)
    except BundleError as exc:
        raise BundleError(f"bundle {root}: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path} is corrupt: {exc}") from None
    check_against_model(manifest)
    named = dict.fromkeys(manifest.files)
    if manifest.plugin_graph:
        named[manifest.plugin_graph["file"]] = None
    for name in named:
        contained_file(root, name, f"files.{name}")
    if verify_hashes:
        for name, digest in manifest.files.items():
            if sha256_file(contained_file(root, name, f"files.{name}")) != digest:
                raise BundleError(f"bundle {root} is damaged: {name} does not match its SHA-256")
    return Bundle(root, manifest)


MAX_MANIFEST_BYTES = 16 << 20
MAX_PATCH = 16384
_SHA256_HEX = frozenset("0123456789abcdef")


def _where(field_name: str) -> str:
    return f"manifest.json: '{field_name}'"


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__.replace("dict", "object").replace("list", "array")


def _req_int(data: dict, key: str, low: int, high: int | None = None, path: str = "") -> int:
    value = data[key]
    name = f"{path}{key}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise BundleError(f"{_where(name)} must be an integer, got {_kind(value)} {json.dumps(value)[:40]}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise BundleError(f"{_where(name)} must be {bound}, got {value}")
    return value


def _req_str(data: dict, key: str, choices: tuple[str, ...] | None = None, path: str = "") -> str:
    value = data[key]
    name = f"{path}{key}"
    if not isinstance(value, str) or not value:
        raise BundleError(f"{_where(name)} must be a non-empty string, got {_kind(value)}")
    if choices is not None and value not in choices:
        raise BundleError(f"{_where(name)} must be one of {', '.join(choices)}, got '{value[:40]}'")
    return value


def _req_type(data: dict, key: str, kinds: type | tuple[type, ...], what: str, path: str = ""):
    value = data[key]
    if not isinstance(value, kinds):
        raise BundleError(f"{_where(path + key)} must be {what}, got {_kind(value)}")
    return value


def _opt_number(data: dict, key: str, path: str) -> None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BundleError(f"{_where(path + key)} must be a number or null, got {_kind(value)}")


def _keys(data: dict, required: tuple[str, ...], optional: tuple[str, ...], path: str) -> None:
    for key in required:
        if key not in data:
            raise BundleError(f"manifest.json: required field '{path}{key}' is missing")
    for key in data:
        if key not in required and key not in optional:
            raise BundleError(f"manifest.json: unknown field '{path}{key}'")


def check_file_name(name: object, field_name: str) -> str:
    """A file name from the manifest: a relative POSIX path that stays inside the bundle."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"{_where(field_name)} must be a file name inside the bundle, got {_kind(name)}")
    pure = PurePosixPath(name)
    if (pure.is_absolute() or "\\" in name or "\x00" in name or not pure.parts or pure.parts == (".",)
            or ":" in pure.parts[0] or ".." in pure.parts or pure.as_posix() != name):
        raise BundleError(f"{_where(field_name)} '{name[:80]}' is not a path inside the bundle")
    return name


def contained_file(root: Path, name: str, field_name: str) -> Path:
    """The regular file `name` resolves to, refused unless it lies inside `root`."""
    check_file_name(name, field_name)
    base = root.resolve()
    try:
        resolved = (base / name).resolve(strict=True)
    except FileNotFoundError:
        raise BundleError(f"bundle {root} is incomplete: {name} is missing") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a component that is a file
        raise BundleError(f"bundle {root}: cannot resolve {name} ({type(exc).__name__})") from None
    if not resolved.is_relative_to(base):
        raise BundleError(f"bundle {root}: {name} leaves the bundle directory (a symlink to {resolved}); refused")
    if not stat.S_ISREG(resolved.stat().st_mode):
        raise BundleError(f"bundle {root}: {name} is not a regular file; refused")
    return resolved


def validate_manifest(data: object) -> None:
    """Check the manifest's schema: types, ranges, required keys; one line naming the field."""
    if not isinstance(data, dict):
        raise BundleError(f"manifest.json must hold a JSON object, got {_kind(data)}")
    if "format_version" not in data:
        raise BundleError("manifest.json has no format_version")
    version = data["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"{_where('format_version')} must be an integer, got {_kind(version)}")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"bundle format {version} is newer than this sr-export understands "
            f"({FORMAT_VERSION}); upgrade sr-export"
        )
    if version < 1:
        raise BundleError(f"{_where('format_version')} must be between 1 and {FORMAT_VERSION}, got {version}")
    fields = {f.name for f in dataclasses.fields(Manifest)}
    required = ("model", "variant", "scale", "task", "input_kind", "params", "inputs", "noise_inputs",
                "outputs", "shape_rules", "patch", "overlap", "precisions")
    _keys(data, required, tuple(fields - set(required)), "")
    for key in ("model", "variant"):
        _req_str(data, key)
    _req_str(data, "task", ("sr", "critic"))
    _req_str(data, "input_kind", ("lr", "upscaled"))
    _req_int(data, "scale", 1, 64)
    _req_int(data, "params", 0)
    patch = _req_int(data, "patch", 1, MAX_PATCH)
    overlap = _req_int(data, "overlap", 0, MAX_PATCH)
    if overlap >= patch:
        raise BundleError(f"{_where('overlap')} {overlap} must be smaller than the patch {patch}")
    for key in ("inputs", "outputs"):
        names = _req_type(data, key, list, "an array of names")
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise BundleError(f"{_where(key)} must be a non-empty array of distinct names")
    noise = _req_type(data, "noise_inputs", list, "an array")
    for i, spec in enumerate(noise):
        path = f"noise_inputs[{i}]."
        if not isinstance(spec, dict):
            raise BundleError(f"{_where(path[:-1])} must be an object, got {_kind(spec)}")
        _keys(spec, tuple(f.name for f in dataclasses.fields(NoiseInput)), (), path)
        _req_str(spec, "name", path=path)
        _req_int(spec, "channels", 1, 64, path)
        _req_int(spec, "factor", 1, 64, path)
        _req_int(spec, "border", 0, 4096, path)
    wanted = ["image", *(n["name"] for n in noise)]
    if data["inputs"] != wanted:
        raise BundleError(f"{_where('inputs')} {data['inputs']} do not match the image and noise_inputs {wanted}")
    rules = _req_type(data, "shape_rules", dict, "an object")
    path = "shape_rules."
    _keys(rules, (), tuple(f.name for f in dataclasses.fields(ShapeRules)), path)
    defaults = ShapeRules()
    for key, low in (("multiple_of", 1), ("offset", 0), ("min_size", 1), ("output_scale", 1)):
        if key in rules:
            _req_int(rules, key, low, MAX_PATCH, path)
    if rules.get("halo") is not None:
        _req_int(rules, "halo", 0, MAX_PATCH, path)
    if "pad_rule" in rules:
        _req_type(rules, "pad_rule", str, "a string", path)
    if "pad_align" in rules:
        _req_str(rules, "pad_align", ("end", "split"), path)
    if rules.get("min_size", defaults.min_size) > patch:
        raise BundleError(f"{_where('patch')} {patch} is smaller than shape_rules.min_size {rules['min_size']}")
    files = data.get("files", {})
    if not isinstance(files, dict):
        raise BundleError(f"{_where('files')} must be an object of file name -> SHA-256, got {_kind(files)}")
    for name, digest in files.items():
        check_file_name(name, f"files.{name}")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _SHA256_HEX:
            raise BundleError(f"{_where('files.' + name)} must be a SHA-256 (64 hex digits)")
    precisions = _req_type(data, "precisions", dict, "an object")
    if not precisions:
        raise BundleError(f"{_where('precisions')} lists no graph")
    for key, info in precisions.items():
        path = f"precisions.{key}."
        if key not in PRECISIONS:
            raise BundleError(f"{_where('precisions')} has unknown precision '{key[:40]}' "
                              f"(known: {', '.join(PRECISIONS)})")
        if not isinstance(info, dict):
            raise BundleError(f"{_where(path[:-1])} must be an object, got {_kind(info)}")
        _keys(info, ("file",), tuple(f.name for f in dataclasses.fields(PrecisionInfo)), path)
        check_file_name(info["file"], path + "file")
        if info["file"] not in files:
            raise BundleError(f"manifest.json lists {info['file']} but does not hash it")
        for number in ("max_abs_error_vs_torch", "psnr_vs_fp32_db", "psnr_y_db"):
            _opt_number(info, number, path)
        if "notes" in info:
            _req_type(info, "notes", dict, "an object", path)
    for key in ("tools",):
        if key in data:
            _req_type(data, key, dict, "an object")
    if "verification" in data:
        _req_type(data, "verification", list, "an array")
    for key in ("checkpoint", "plugin_graph", "graph_rewrites", "zero_noise_graph"):
        if data.get(key) is not None:
            _req_type(data, key, dict, "an object or null")
    if data.get("zero_noise_graph") is not None:
        w0 = data["zero_noise_graph"]
        _keys(w0, ("file",), ("dropped_inputs", "constant_channels", "max_abs_diff_vs_fp32", "checked_sizes"),
              "zero_noise_graph.")
        _req_type(w0, "file", str, "a file name", "zero_noise_graph.")
        check_file_name(w0["file"], "zero_noise_graph.file")
        if w0["file"] not in files:
            raise BundleError(f"manifest.json lists {w0['file']} but does not hash it")
    if data.get("stitch_halo") is not None:
        record = _req_type(data, "stitch_halo", dict, "an object or null")
        _keys(record, tuple(f.name for f in dataclasses.fields(StitchHalo)), (), "stitch_halo.")
        geometric = data["shape_rules"].get("halo")
        if not isinstance(geometric, int) or isinstance(geometric, bool):
            raise BundleError(f"{_where('stitch_halo')} needs a finite shape_rules.halo")
        _req_int(record, "pixels", 0, geometric, "stitch_halo.")
        _req_int(record, "geometric", geometric, geometric, "stitch_halo.")
        for key in ("margin", "window", "trials"):
            _req_int(record, key, 0, MAX_PATCH, "stitch_halo.")
        _opt_number(record, "tail_bound", "stitch_halo.")
        tails = _req_type(record, "tails", list, "an array of numbers", "stitch_halo.")
        if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in tails):
            raise BundleError(f"{_where('stitch_halo.tails')} must be an array of numbers")
    if data.get("plugin_graph") is not None:
        plugin = data["plugin_graph"]
        if "file" not in plugin:
            raise BundleError("manifest.json: required field 'plugin_graph.file' is missing")
        check_file_name(plugin["file"], "plugin_graph.file")
    if "value_range" in data:
        value_range = data["value_range"]
        if (not isinstance(value_range, list) or len(value_range) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value_range)
                or not value_range[0] < value_range[1]):
            raise BundleError(f"{_where('value_range')} must be [low, high] with low < high")
    for key, choices in (("channel_order", ("RGB",)), ("layout", ("NCHW",))):
        if key in data:
            _req_str(data, key, choices)


def check_against_model(manifest: "Manifest") -> None:
    """`shape_rules.output_scale` must follow from `input_kind` and `scale`; a bundle of a
    registered model must also carry that model's input kind, noise inputs and shape
    rules, as `srexport.model_table` records them (without building the model). Bundles
    exported from other `SRModel`s through the API get the first check only."""
    from srexport.errors import ModelError
    from srexport.model_table import RULE_KEYS, registered

    if manifest.task == "sr":
        want = manifest.scale if manifest.input_kind == "lr" else 1
        if manifest.shape_rules.output_scale != want:
            raise BundleError(f"{_where('shape_rules.output_scale')} is {manifest.shape_rules.output_scale}, but an "
                              f"x{manifest.scale} network taking '{manifest.input_kind}' input has {want}")
    entry = registered().get(manifest.model)
    if entry is None:
        return
    try:
        variant, scale = entry.resolve(manifest.variant, manifest.scale)
    except ModelError as exc:
        raise BundleError(f"manifest.json: {exc}") from None
    if entry.task != manifest.task:
        raise BundleError(f"{_where('task')} is '{manifest.task}', but {entry.name} is a {entry.task} network")
    model = entry.rules[(variant, scale)]
    expected = {
        "input_kind": (manifest.input_kind, model.input_kind),
        "noise_inputs": (list(manifest.noise_inputs), list(model.noise_inputs)),
    }
    for key in RULE_KEYS:
        expected[f"shape_rules.{key}"] = (getattr(manifest.shape_rules, key), model.shape_rules[key])
    for key, (have, want) in expected.items():
        if have != want:
            shown = (lambda v: [dataclasses.asdict(n) for n in v]) if key == "noise_inputs" else (lambda v: v)
            raise BundleError(f"{_where(key)} is {shown(have)}, but {entry.name} {variant} x{scale} "
                              f"has {shown(want)}")
