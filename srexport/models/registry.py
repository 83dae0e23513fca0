"""The model registry: a table of small factories, one entry per network family.

Each model module defines `ENTRY`; adding a network means writing its module and
naming it in `_MODULES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

from srexport.errors import ModelError
from srexport.model_table import (RULE_KEYS, TABLE_FILE, ModelRules, RegisteredModel, resolve_variant,
                                     table_to_json)
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
        return resolve_variant(self.name, self.variants, self.default_variant, variant, scale)

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


def rules_table() -> dict[str, RegisteredModel]:
    """Every registered (model, variant, scale)'s input kind, noise inputs and shape rules,
    computed by building each model (what `srexport.model_table` keeps in its file). The
    models are built on the meta device: their shape rules come from the layers' geometry,
    so no weight is allocated (MGBPv2 aim2019-fidelity has 263 M)."""
    import torch

    table = {}
    for name, entry in entries().items():
        rules = {}
        for variant, scales in entry.variants.items():
            for scale in scales:
                with torch.device("meta"):
                    model = entry.factory(variant, scale)
                shape = model.shape_rules()
                rules[(variant, scale)] = ModelRules(model.input_kind, tuple(model.noise_inputs),
                                                     {key: getattr(shape, key) for key in RULE_KEYS})
        table[name] = RegisteredModel(name, entry.task, entry.default_variant, dict(entry.variants), rules)
    return table


def write_rules_table(path: Path = TABLE_FILE) -> Path:
    """Regenerate the table file: `python -c "from srexport.models.registry import
    write_rules_table; write_rules_table()"` after adding or changing a model."""
    path.write_text(table_to_json(rules_table()))
    return path
