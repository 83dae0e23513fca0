"""The model registry: a table of small factories, one entry per network family.

Each model module defines `ENTRY`; adding a network means writing its module and
naming it in `_MODULES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable, Literal

from srexport.errors import ModelError
from srexport.models.base import SRModel

_MODULES = ("gmgbp", "pcarn", "mgbpv2", "mgbp", "bpp", "discriminator")


@dataclass(frozen=True)
class ModelEntry:
    """One registered network family.

    `variants` maps a variant name to the scales one checkpoint of it serves;
    `factory(variant, scale)` builds the module (random initialisation).
    `needs_weights` is True where trained weights are published: exporting without
    them works but warns loudly.
    """

    name: str
    description: str
    variants: dict[str, tuple[int, ...]]
    default_variant: str
    needs_weights: bool
    factory: Callable[[str, int], SRModel]
    task: Literal["sr", "critic"] = "sr"
    weights_hint: str = ""
    extra: dict = field(default_factory=dict)

    def resolve(self, variant: str | None, scale: int | None) -> tuple[str, int]:
        variant = variant or self.default_variant
        if variant not in self.variants:
            raise ModelError(
                f"model '{self.name}' has no variant '{variant}' "
                f"(variants: {', '.join(self.variants)})"
            )
        scales = self.variants[variant]
        if scale is None:
            scale = scales[-1]
        if scale not in scales:
            raise ModelError(
                f"model '{self.name}' variant '{variant}' has no scale x{scale} "
                f"(scales: {', '.join(f'x{s}' for s in scales)})"
            )
        return variant, scale

    def build(self, variant: str | None = None, scale: int | None = None) -> SRModel:
        variant, scale = self.resolve(variant, scale)
        return self.factory(variant, scale)


def entries() -> dict[str, ModelEntry]:
    table: dict[str, ModelEntry] = {}
    for module in _MODULES:
        entry = importlib.import_module(f"srexport.models.{module}").ENTRY
        for e in entry if isinstance(entry, (list, tuple)) else (entry,):
            table[e.name] = e
    return table


def get(name: str) -> ModelEntry:
    table = entries()
    if name not in table:
        raise ModelError(f"unknown model '{name}' (models: {', '.join(table)})")
    return table[name]


def build_model(name: str, variant: str | None = None, scale: int | None = None) -> SRModel:
    """Build a registered model with random initialisation."""
    return get(name).build(variant, scale)
