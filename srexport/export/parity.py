"""Parity of an exported graph against the PyTorch model on ONNX Runtime CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from srexport.bundle import ParityCheck
from srexport.models.base import ShapeRules, SRModel
from srexport.ort import inference_session
from srexport.runtime.padding import pad_to_legal

TOLERANCE = 1e-4


def verification_sizes(rules: ShapeRules) -> list[tuple[int, int]]:
    """Three input sizes: a legal square, a legal non-square, and one that needs padding
    (for models that take every size, an odd non-square one that exercises their own
    internal padding)."""
    square = rules.legal_at_least(max(rules.min_size, 24))
    tall = rules.legal_at_least(square + 2 * rules.multiple_of + 1)
    odd = (square + 1, tall + 3) if rules.multiple_of > 1 else (square + 13, square + 29)
    return [(square, square), (tall, square), odd]


def check_parity(
    model: SRModel, graph: onnx.ModelProto | str | Path, sizes: list[tuple[int, int]] | None = None,
    zero_noise: bool = False,
) -> list[ParityCheck]:
    """Run torch and ONNX Runtime on the same inputs; return the max abs error per size.
    With `zero_noise` the noise inputs are zeros (the graph may take the image alone)."""
    model = model.eval()
    rules = model.shape_rules()
    session = inference_session(graph)
    names = [i.name for i in session.get_inputs()]
    checks = []
    for height, width in sizes or verification_sizes(rules):
        image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height * 7919 + width))
        padded = torch.from_numpy(pad_to_legal(image.numpy(), rules))
        inputs = model.example_inputs(1, *padded.shape[-2:])
        inputs = (padded, *(torch.zeros_like(t) if zero_noise else t for t in inputs[1:]))
        with torch.no_grad():
            expected = model(*inputs).numpy()
        got = session.run(None, dict(zip(names, (t.numpy() for t in inputs))))[0]
        checks.append(
            ParityCheck(height, width, tuple(padded.shape[-2:]) != (height, width),
                        float(np.max(np.abs(expected - got))))
        )
    return checks
