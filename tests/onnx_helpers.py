"""Tracing a model to ONNX with dynamic N/H/W and checking it against PyTorch on ONNX Runtime."""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch


def assert_dynamic_onnx_matches_torch(model, sizes: list[tuple[int, int, int]], channels: int,
                                      atol: float = 1e-4, relative: bool = False) -> None:
    """Trace `model` (one input, "image") at the first of `sizes` with dynamic batch and
    spatial axes, then run the graph at every (batch, height, width) of `sizes`: the output
    must be (batch, channels, height, width) and within `atol` of PyTorch (`atol` times the
    largest expected magnitude when `relative`)."""
    import onnxruntime as ort

    buffer = io.BytesIO()
    axes = {"image": {0: "N", 2: "h", 3: "w"}, "output": {0: "N", 2: "oh", 3: "ow"}}
    _, height, width = sizes[0]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, model.example_inputs(1, height, width), buffer, dynamo=False,
                          opset_version=17, input_names=["image"], output_names=["output"],
                          dynamic_axes=axes)
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch, height, width in sizes:
        (image,) = model.example_inputs(batch, height, width)
        with torch.no_grad():
            expected = model(image).numpy()
        got = session.run(None, {"image": image.numpy()})[0]
        assert got.shape == (batch, channels, height, width)
        limit = atol * np.abs(expected).max() if relative else atol
        assert np.abs(got - expected).max() <= limit
