"""What loading a bundle checks about a registered model, without building it.

A bundle of a registered model must carry that model's input kind, noise inputs and shape
rules (`srexport.bundle.check_against_model`). Building the model to find out would import
torch (about 1-2 s) and initialise every weight (263 M parameters for MGBPv2
aim2019-fidelity) on each load, so the figures of every registered (model, variant, scale)
are kept in `models/registered.json`, next to the models that compute them. The file is
derived from the factories (`srexport.models.registry.rules_table`), never typed:
`tests/test_model_table.py` rebuilds every model and fails when the file differs, with the
command that regenerates it.

Variant and scale resolution (`resolve_variant`) lives here too, so that the registry and
the bundle check answer an unknown variant or scale with the same line.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from srexport.errors import ModelError
from srexport.shapes import NoiseInput

TABLE_FILE = Path(__file__).resolve().parent / "models" / "registered.json"
RULE_KEYS = ("multiple_of", "offset", "min_size", "output_scale")  # the shape rules a bundle must match


@dataclass(frozen=True)
class ModelRules:
    """The sizes and inputs one (variant, scale) of a registered model has."""

    input_kind: str
    noise_inputs: tuple[NoiseInput, ...]
    shape_rules: Mapping[str, int]  # RULE_KEYS

    def to_json(self) -> dict:
        return {"input_kind": self.input_kind, "noise_inputs": [dataclasses.asdict(n) for n in self.noise_inputs],
                "shape_rules": dict(self.shape_rules)}

    @classmethod
    def from_json(cls, data: dict) -> "ModelRules":
        return cls(data["input_kind"], tuple(NoiseInput(**n) for n in data["noise_inputs"]), data["shape_rules"])


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    task: str
    default_variant: str
    variants: Mapping[str, tuple[int, ...]]
    rules: Mapping[tuple[str, int], ModelRules]

    def resolve(self, variant: str | None, scale: int | None) -> tuple[str, int]:
        return resolve_variant(self.name, self.variants, self.default_variant, variant, scale)

    def to_json(self) -> dict:
        return {"task": self.task, "default_variant": self.default_variant,
                "variants": {v: list(s) for v, s in self.variants.items()},
                "rules": {f"{v} x{s}": r.to_json() for (v, s), r in self.rules.items()}}

    @classmethod
    def from_json(cls, name: str, data: dict) -> "RegisteredModel":
        rules = {}
        for key, value in data["rules"].items():
            variant, scale = key.rsplit(" x", 1)
            rules[(variant, int(scale))] = ModelRules.from_json(value)
        return cls(name, data["task"], data["default_variant"],
                   {v: tuple(s) for v, s in data["variants"].items()}, rules)


def resolve_variant(name: str, variants: Mapping[str, tuple[int, ...]], default_variant: str,
                    variant: str | None, scale: int | None) -> tuple[str, int]:
    """(variant, scale) of a model: the defaults where not given (the variant's largest
    scale), a one-line `ModelError` for a variant or scale the model does not have."""
    variant = variant or default_variant
    if variant not in variants:
        raise ModelError(f"model '{name}' has no variant '{variant}' (variants: {', '.join(variants)})")
    scales = variants[variant]
    if scale is None:
        scale = scales[-1]
    if scale not in scales:
        raise ModelError(f"model '{name}' variant '{variant}' has no scale x{scale} "
                         f"(scales: {', '.join(f'x{s}' for s in scales)})")
    return variant, scale


def table_to_json(models: Mapping[str, RegisteredModel]) -> str:
    return json.dumps({name: m.to_json() for name, m in models.items()}, indent=1, sort_keys=True) + "\n"


@functools.cache
def registered(path: Path = TABLE_FILE) -> dict[str, RegisteredModel]:
    """Every registered model's figures, read from the table file."""
    data = json.loads(path.read_text())
    return {name: RegisteredModel.from_json(name, value) for name, value in data.items()}
