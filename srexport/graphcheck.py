"""A bundle's graph checked against its manifest before the first image.

Names, ranks and channel counts come from the ONNX graph itself; the scale is probed by
running one small legal patch of zeros (through the session a run will use, or through
ONNX Runtime on the CPU) and comparing the output size with `shape_rules.output_scale`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import BundleError

Run = Callable[[dict[str, np.ndarray]], np.ndarray]
_PROBE_EDGE = 16


def _dims(value_info) -> list[int | None]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]


def check_structure(bundle: Bundle, precision: str) -> None:
    """Graph inputs and outputs: the manifest's names, rank 4, the channels it declares.
    A precision the bundle lacks is left to the backend, which says which it has."""
    import onnx
    from google.protobuf.message import DecodeError

    if precision not in bundle.manifest.precisions:
        return

    path = bundle.graph_path(precision)
    m = bundle.manifest
    where = f"bundle {bundle.root}: {path.name}"
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise BundleError(f"{where} is not an ONNX graph ({type(exc).__name__})") from None
    initializers = {i.name for i in graph.initializer}
    inputs = {i.name: _dims(i) for i in graph.input if i.name not in initializers}
    outputs = {o.name: _dims(o) for o in graph.output}
    if set(inputs) != set(m.inputs):
        raise BundleError(f"{where} takes inputs {sorted(inputs)}, but the manifest's inputs are {m.inputs}")
    if set(outputs) != set(m.outputs):
        raise BundleError(f"{where} has outputs {sorted(outputs)}, but the manifest's outputs are {m.outputs}")
    channels = {"image": 3, **{n.name: n.channels for n in m.noise_inputs}}
    for kind, table, wanted in (("input", inputs, channels), ("output", outputs, dict.fromkeys(outputs, 3))):
        for name, dims in table.items():
            if len(dims) != 4:
                raise BundleError(f"{where}: {kind} '{name}' has rank {len(dims)}, expected 4 (NCHW)")
            if m.task == "sr" and dims[1] is not None and dims[1] != wanted[name]:
                raise BundleError(f"{where}: {kind} '{name}' has {dims[1]} channels, "
                                  f"the manifest expects {wanted[name]}")


def probe_inputs(bundle: Bundle, height: int, width: int) -> dict[str, np.ndarray]:
    inputs = {"image": np.zeros((1, 3, height, width), np.float32)}
    for spec in bundle.manifest.noise_inputs:
        inputs[spec.name] = np.zeros(spec.shape(1, height, width), np.float32)
    return inputs


def check_scale(bundle: Bundle, precision: str, run: Run | None = None) -> None:
    """Run one small legal patch and compare the output size with the manifest's scale."""
    m = bundle.manifest
    if m.task != "sr":
        return
    rules = m.shape_rules
    edge = min(rules.legal_at_least(_PROBE_EDGE), rules.legal_at_least(m.patch))
    if run is None:
        from srexport.ort import inference_session

        session = inference_session(bundle.graph_path(precision))
        run = lambda feeds: session.run(None, feeds)[0]  # noqa: E731
    try:
        out = np.asarray(run(probe_inputs(bundle, edge, edge)))
    except Exception as exc:  # each backend has its own error types for a graph that does not fit
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"bundle {bundle.root}: the {precision} graph fails on a {edge}x{edge} patch "
                          f"shaped as the manifest describes ({first})") from None
    want = (1, 3, rules.output_scale * edge, rules.output_scale * edge)
    if tuple(out.shape) != want:
        raise BundleError(f"bundle {bundle.root}: the {precision} graph maps a {edge}x{edge} patch to "
                          f"{tuple(out.shape)}, but the manifest (output_scale {rules.output_scale}) "
                          f"expects {want}")


def check_graph(bundle: Bundle, precision: str, run: Run | None = None) -> None:
    """Structure, then scale; `run` is the session a job will use (None: ONNX Runtime)."""
    check_structure(bundle, precision)
    check_scale(bundle, precision, run)
