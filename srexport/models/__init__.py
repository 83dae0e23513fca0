"""The model zoo: faithful PyTorch architectures of the supported networks."""

from srexport.models.base import NoiseInput, ShapeRules, SRModel, count_parameters
from srexport.models.checkpoint import load_checkpoint, read_state_dict
from srexport.models.registry import ModelEntry, build_model, entries, get

__all__ = [
    "ModelEntry",
    "NoiseInput",
    "SRModel",
    "ShapeRules",
    "build_model",
    "count_parameters",
    "entries",
    "get",
    "load_checkpoint",
    "read_state_dict",
]
