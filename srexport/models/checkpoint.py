"""Loading published checkpoints safely and strictly."""

from __future__ import annotations

from pathlib import Path

import torch

from srexport.errors import CheckpointError
from srexport.models.base import SRModel

_WRAPPER_KEYS = ("state_dict", "model", "params", "model_state_dict")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint with `weights_only=True` and return its flat state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_checkpoint(model: SRModel, path: str | Path) -> SRModel:
    """Load `path` into `model`, refusing any missing/unexpected key or shape mismatch."""
    state = model.adapt_checkpoint(read_state_dict(path))
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{path} does not fit {type(model).__name__}: missing key '{key}'")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path} does not fit {type(model).__name__}: '{key}' has shape "
                f"{tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected:
            raise CheckpointError(f"{path} does not fit {type(model).__name__}: unexpected key '{key}'")
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
