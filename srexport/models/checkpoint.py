"""Loading published checkpoints safely and strictly."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Collection
from pathlib import Path

import torch

from srexport.errors import CheckpointError
from srexport.models.base import SRModel

_WRAPPER_KEYS = ("state_dict", "model", "params", "model_state_dict")
_INDEX_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def read_state_dict(path: str | Path, index_keys: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """Read a checkpoint with `weights_only=True` and return its flat state dict.

    Only a flat mapping of string keys to dense, finite, floating-point tensors is
    accepted (after unwrapping the usual containers: state_dict, model, params,
    model_state_dict). `index_keys` name integer tables (saved permutation buffers) that
    may be integer tensors; the model's `adapt_checkpoint` checks and drops them."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, which would run the file's code.
        raise CheckpointError(
            f"cannot read checkpoint {path}: it holds Python objects other than tensors "
            f"(refused: only weights are loaded)"
        ) from None
    except Exception as exc:  # torch raises many kinds for a bad file
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None
    for key in _WRAPPER_KEYS:
        if isinstance(data, dict) and key in data and isinstance(data[key], dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data:
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: state dict key {key!r} is a {type(key).__name__}, not a string")
        where = f"{path}: '{key[:80]}'"
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{where} is a {type(value).__name__}, not a tensor")
        if value.is_meta:
            raise CheckpointError(f"{where} is a meta tensor (no data)")
        if value.layout != torch.strided:
            raise CheckpointError(f"{where} is a {str(value.layout).removeprefix('torch.')} tensor, not a dense one")
        if key.removeprefix("module.") in index_keys and value.dtype in _INDEX_DTYPES:
            state[key.removeprefix("module.")] = value
            continue
        if value.is_quantized or not value.is_floating_point():
            raise CheckpointError(f"{where} has dtype {str(value.dtype).removeprefix('torch.')}, "
                                  "not floating point")
        if not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{where} holds NaN or infinite values")
        state[key.removeprefix("module.")] = value
    return state


def check_state_fits(model: SRModel, state: dict, source: str, error: type[Exception] = CheckpointError) -> None:
    """Refuse any missing or unexpected key and any shape mismatch, naming the first."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise error(f"{source} does not fit {type(model).__name__}: missing key '{key}'")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise error(
                f"{source} does not fit {type(model).__name__}: '{key}' has shape "
                f"{tuple(state[key].shape)}, expected {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected:
            raise error(f"{source} does not fit {type(model).__name__}: unexpected key '{key}'")


def load_checkpoint(model: SRModel, path: str | Path) -> SRModel:
    """Load `path` into `model`, refusing any missing/unexpected key or shape mismatch."""
    state = model.adapt_checkpoint(read_state_dict(path, model.index_buffers))
    check_state_fits(model, state, str(path))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()
