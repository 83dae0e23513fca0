"""Triton model configuration (config.pbtxt) as plain data, and its protobuf text form.

The text follows Triton's `model_config.proto` (ModelConfig); the tests parse it with
`google.protobuf.text_format` against the `model_config_pb2` that `tritonclient` ships.
Nothing here needs tritonclient or a server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from srexport.errors import ExportError

PLATFORMS = {"onnx": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}
MANIFEST_PARAMETER = "srexport.manifest"  # the bundle manifest (JSON), for client-side tiling

# onnx.TensorProto element types -> Triton data types
_ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 16: "TYPE_BF16", 11: "TYPE_FP64", 2: "TYPE_UINT8",
               3: "TYPE_INT8", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, Triton data type, dims without the batch dim (-1: any)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    comment: str = ""


@dataclass(frozen=True)
class GraphIO:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_batch: bool  # every tensor's first dim is symbolic: Triton may batch along it


def graph_io(onnx_path: str | Path) -> GraphIO:
    """Names, types and dims of an ONNX graph's inputs and outputs (weights not loaded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {t.name for t in model.graph.initializer}

    def specs(values) -> list[tuple[TensorSpec, bool]]:
        found = []
        for value in values:
            if value.name in weights:
                continue
            tensor = value.type.tensor_type
            if tensor.elem_type not in _ONNX_TYPES:
                raise ExportError(f"{onnx_path}: {value.name} has an element type Triton cannot serve "
                                  f"({onnx.TensorProto.DataType.Name(tensor.elem_type)})")
            dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor.shape.dim]
            if not dims:
                raise ExportError(f"{onnx_path}: {value.name} has no shape")
            found.append((TensorSpec(value.name, _ONNX_TYPES[tensor.elem_type], tuple(dims)), dims[0] == -1))
        return found

    ins, outs = specs(model.graph.input), specs(model.graph.output)
    dynamic = all(batch for _, batch in ins + outs)
    strip = (lambda s: TensorSpec(s.name, s.data_type, s.dims[1:])) if dynamic else (lambda s: s)
    return GraphIO(tuple(strip(s) for s, _ in ins), tuple(strip(s) for s, _ in outs), dynamic)


@dataclass(frozen=True)
class InstanceGroup:
    kind: str  # KIND_GPU, KIND_CPU, KIND_AUTO
    count: int
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Warmup:
    """One warm-up request of zeros (Triton runs it when it loads the model)."""

    name: str
    batch_size: int
    shapes: dict  # input name -> (data type, dims without batch)


@dataclass
class ModelConfig:
    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    instance_groups: tuple[InstanceGroup, ...]
    default_model_filename: str | None = None
    cc_model_filenames: dict[str, str] = field(default_factory=dict)
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 100
    parameters: dict[str, str] = field(default_factory=dict)
    warmup: tuple[Warmup, ...] = ()
    header: tuple[str, ...] = ()  # comment lines at the top

    def to_pbtxt(self) -> str:
        """The protobuf text form Triton reads from <model>/config.pbtxt."""
        lines = [f"# {h}" for h in self.header]
        lines += [f"name: {_quote(self.name)}", f"platform: {_quote(self.platform)}",
                  f"max_batch_size: {self.max_batch_size}"]
        for key, specs in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{key} [")
            for i, spec in enumerate(specs):
                comma = "," if i < len(specs) - 1 else ""
                if spec.comment:
                    lines.append(f"  # {spec.comment}")
                lines += ["  {", f"    name: {_quote(spec.name)}", f"    data_type: {spec.data_type}",
                          f"    dims: [ {', '.join(str(d) for d in spec.dims)} ]", "  }" + comma]
            lines.append("]")
        lines.append("instance_group [")
        for i, group in enumerate(self.instance_groups):
            comma = "," if i < len(self.instance_groups) - 1 else ""
            lines += ["  {", f"    count: {group.count}", f"    kind: {group.kind}"]
            if group.gpus:
                lines.append(f"    gpus: [ {', '.join(str(g) for g in group.gpus)} ]")
            lines.append("  }" + comma)
        lines.append("]")
        if self.max_batch_size > 0:
            lines.append("dynamic_batching {")
            if self.preferred_batch_sizes:
                lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in self.preferred_batch_sizes)} ]")
            lines += [f"  max_queue_delay_microseconds: {self.max_queue_delay_microseconds}", "}"]
        if self.default_model_filename:
            lines.append(f"default_model_filename: {_quote(self.default_model_filename)}")
        for cc, filename in sorted(self.cc_model_filenames.items()):
            lines.append(f"cc_model_filenames {{ key: {_quote(cc)} value: {_quote(filename)} }}")
        for key, value in self.parameters.items():
            lines.append(f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}")
        for warm in self.warmup:
            lines += ["model_warmup {", f"  name: {_quote(warm.name)}", f"  batch_size: {warm.batch_size}"]
            for input_name, (data_type, dims) in warm.shapes.items():
                lines += [f"  inputs {{ key: {_quote(input_name)} value {{ data_type: {data_type} "
                          f"dims: [ {', '.join(str(d) for d in dims)} ] zero_data: true }} }}"]
            lines.append("}")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A protobuf text-format string literal (C escapes; our strings are ASCII)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    if any(ord(c) < 32 or ord(c) > 126 for c in escaped):
        raise ExportError(f"cannot write a non-ASCII or control character into config.pbtxt: {text!r}")
    return f'"{escaped}"'
