"""Checkpoint contents: a flat mapping of str keys to dense, finite, floating tensors only."""

from __future__ import annotations

import collections

import pytest
import torch

from cli_helpers import run_cli
from reliability_helpers import assert_one_line


def _pcarn_state() -> dict[str, torch.Tensor]:
    from srexport.models import registry

    return dict(registry.get("pcarn-m").factory("m", 4).state_dict())


def _first(state: dict) -> str:
    return sorted(state)[0]


def _case(kind: str):
    state = _pcarn_state()
    key = _first(state)
    if kind == "int keys":
        return {i: v for i, v in enumerate(state.values())}, "not a string"
    if kind == "meta tensor":
        state[key] = torch.empty(state[key].shape, device="meta")
        return state, "meta"
    if kind == "sparse tensor":
        state[key] = state[key].reshape(state[key].shape[0], -1).to_sparse()
        return state, "dense"
    if kind == "complex":
        state[key] = state[key].to(torch.complex64)
        return state, "complex64"
    if kind == "int64":
        state[key] = torch.zeros(state[key].shape, dtype=torch.int64)
        return state, "int64"
    if kind == "bool":
        state[key] = torch.zeros(state[key].shape, dtype=torch.bool)
        return state, "bool"
    if kind == "nan":
        state[key] = torch.full_like(state[key], float("nan"))
        return state, "NaN"
    if kind == "inf":
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("inf")
        return state, "infinite"
    if kind == "nested":
        return {"state_dict": {"a": {"b": torch.zeros(1)}}}, "not a tensor"
    if kind == "list":
        return [torch.zeros(1)], "state dict"
    if kind == "empty":
        return {}, "state dict"
    if kind == "tensor":
        return torch.zeros(3), "state dict"
    if kind == "string values":
        return {"a": "b"}, "not a tensor"
    if kind == "wrapped nan":
        state[key] = torch.full_like(state[key], float("nan"))
        return {"epoch": 3, "model": collections.OrderedDict(state)}, "NaN"
    raise AssertionError(kind)


KINDS = ["int keys", "meta tensor", "sparse tensor", "complex", "int64", "bool", "nan", "inf", "nested",
         "list", "empty", "tensor", "string values", "wrapped nan"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_checkpoint_contents_are_one_line(kind, tmp_path, capsys):
    data, fragment = _case(kind)
    path = tmp_path / "ckpt.pth"
    torch.save(data, path)
    line = assert_one_line(*run_cli(capsys, "build", "--model", "pcarn-m", "--scale", "4", "--weights", path,
                                    "--out", tmp_path / "b"))
    assert fragment in line, line
    assert not (tmp_path / "b").exists()


class _Custom:
    pass


@pytest.mark.parametrize("payload", ["object", "function"])
def test_pickled_objects_never_get_weights_only_advice(payload, tmp_path, capsys):
    path = tmp_path / "ckpt.pth"
    torch.save({"w": torch.zeros(1), "extra": _Custom() if payload == "object" else print}, path)
    code, out, err = run_cli(capsys, "build", "--model", "pcarn-m", "--weights", path, "--out", tmp_path / "b")
    line = assert_one_line(code, out, err)
    assert "weights_only" not in err and "Python objects" in line


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04garbage", b"\x80\x02}q\x00.", b"\x00" * 100])
def test_unreadable_checkpoint_bytes_are_one_line(data, tmp_path, capsys):
    path = tmp_path / "ckpt.pth"
    path.write_bytes(data)
    code, out, err = run_cli(capsys, "build", "--model", "pcarn-m", "--weights", path, "--out", tmp_path / "b")
    assert_one_line(code, out, err)
    assert "weights_only" not in err


def test_a_valid_float64_checkpoint_still_loads(tmp_path):
    """Refusing bad contents must not refuse a good file saved in double precision."""
    from conftest import shared_file
    from srexport.models import load_checkpoint, registry
    from srexport.models.checkpoint import read_state_dict

    published = shared_file("weights", "pcarn", "PCARN-M-L1.pth")
    state = {k: v.double() for k, v in read_state_dict(published).items()}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state}, path)
    from_double = load_checkpoint(registry.get("pcarn-m").factory("m", 4), path).state_dict()
    from_float = load_checkpoint(registry.get("pcarn-m").factory("m", 4), published).state_dict()
    assert from_double.keys() == from_float.keys()
    assert all(torch.equal(from_double[k], from_float[k]) for k in from_float)
