"""The published checkpoints that ship inside the package, and how `--weights` is resolved.

`--weights` takes either a shipped name (`PCARN-M-L1`, `BOE-R1`, ...) or a path. A model
with a shipped default builds from it when no weights are given; `init` asks for the
model's own initialisation instead. Each shipped file's SHA-256 is checked on use, so a
damaged installation is refused rather than silently exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from srexport.errors import CheckpointError
from srexport.fsutil import sha256_file

INIT = "init"  # --weights init: the model's initialisation, no checkpoint


@dataclass(frozen=True)
class ShippedCheckpoint:
    """One published checkpoint carried as package data under srexport/weights/."""

    name: str
    model: str
    file: str  # relative to srexport/weights/
    sha256: str
    licence: str
    source: str
    description: str
    default: bool = False

    @property
    def path(self) -> Path:
        return Path(str(resources.files("srexport") / "weights" / self.file))

    @property
    def licence_file(self) -> Path:
        return self.path.with_name("LICENSE")


_PCARN = "github.com/nmhkahn/PCARN-pytorch"
_PIRM = "github.com/pnavarre/pirm-sr-2018"

SHIPPED: tuple[ShippedCheckpoint, ...] = (
    ShippedCheckpoint("PCARN-M-L1", "pcarn-m", "pcarn/PCARN-M-L1.pth",
                      "50a018566eb28fbf966e0e4d43b513fa90b7242932afd9dddbc0be69d9df6ec9", "MIT", _PCARN,
                      "PCARN-M trained with the L1 loss (fidelity); x2/x3/x4", default=True),
    ShippedCheckpoint("PCARN-M", "pcarn-m", "pcarn/PCARN-M.pth",
                      "a7e328d6c87991ec81540d6b0b15723714443d0c276bec0e864aae441ef16a24", "MIT", _PCARN,
                      "PCARN-M trained with the GAN loss (perceptual); x2/x3/x4"),
    ShippedCheckpoint("BOE-R1", "gmgbp", "gmgbp-pirm2018/BOE-R1.model",
                      "ae5f0b1f8d620f5571051e45ee54ec88f230246da2df51042edb432db022f53d", "LGPL-3.0", _PIRM,
                      "G-MGBP 4x, PIRM-SR 2018 region 1 (published noise W=0.0632)", default=True),
    ShippedCheckpoint("BOE-R2", "gmgbp", "gmgbp-pirm2018/BOE-R2.model",
                      "c559a33714cf3f81219a85b999f2559f3bf0bfd42fdb2e3c7d057780591186a3", "LGPL-3.0", _PIRM,
                      "G-MGBP 4x, PIRM-SR 2018 region 2 (published noise W=0.275)"),
    ShippedCheckpoint("BOE-R3", "gmgbp", "gmgbp-pirm2018/BOE-R3.model",
                      "7c860869957df1655e91fc082715e703931b529057f7a7541f0d65ca1598d9ad", "LGPL-3.0", _PIRM,
                      "G-MGBP 4x, PIRM-SR 2018 region 3 (published noise W=1.0)"),
)


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a build's weights come from: a verified file, or the initialisation."""

    path: Path | None
    shipped: ShippedCheckpoint | None = None

    @property
    def describe(self) -> str:
        if self.shipped is not None:
            s = self.shipped
            return f"the shipped checkpoint {s.name} ({s.licence}, {s.source})"
        return str(self.path) if self.path is not None else "the model's initialisation"


def shipped_for(model: str) -> list[ShippedCheckpoint]:
    return [c for c in SHIPPED if c.model == model]


def default_for(model: str) -> ShippedCheckpoint | None:
    return next((c for c in SHIPPED if c.model == model and c.default), None)


def find_shipped(name: str) -> ShippedCheckpoint | None:
    return next((c for c in SHIPPED if c.name.lower() == name.lower()), None)


def checked_path(checkpoint: ShippedCheckpoint) -> Path:
    """The shipped file, after its SHA-256 matched the one recorded here."""
    path = checkpoint.path
    if not path.is_file():
        raise CheckpointError(f"the shipped checkpoint {checkpoint.name} is missing from this installation ({path})")
    if sha256_file(path) != checkpoint.sha256:
        raise CheckpointError(
            f"the shipped checkpoint {checkpoint.name} is damaged ({path} does not match its SHA-256); "
            "reinstall sr-export"
        )
    return path


def resolve_weights(model: str, weights: str | Path | None) -> ResolvedWeights:
    """Resolve `--weights` for `model`: None -> its shipped default (or the initialisation
    where none is published), `init` -> the initialisation, a shipped name, or a path."""
    if weights is None:
        default = default_for(model)
        return ResolvedWeights(None) if default is None else ResolvedWeights(checked_path(default), default)
    text = str(weights)
    if text == INIT:
        return ResolvedWeights(None)
    shipped = find_shipped(text) if not isinstance(weights, Path) else None
    if shipped is not None:
        if shipped.model != model:
            raise CheckpointError(f"{shipped.name} is a {shipped.model} checkpoint, not {model}")
        return ResolvedWeights(checked_path(shipped), shipped)
    path = Path(weights)
    if not path.is_file():
        names = ", ".join(c.name for c in shipped_for(model))
        hint = f" (shipped for {model}: {names}, or a path)" if names else ""
        raise CheckpointError(f"checkpoint not found: {path}{hint}")
    return ResolvedWeights(path)
