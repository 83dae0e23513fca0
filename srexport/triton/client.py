"""Client-side tiling against a Triton server: the local runtime with a remote session.

`TritonSession` is a runtime `Session` (`run(inputs) -> outputs`), so
the ordinary `Upscaler` tiles the image, draws the noise crops and blends, and only patch
batches travel to the server:

    up = srexport.triton.connect("localhost:8001", "pcarn-m-x4", batch=8)
    up.upscale_file("photo.png", "photo_x4.png")

The tiling rules come from the manifest that `export_triton` stores in the model's
config (parameter `srexport.manifest`), so the client needs no bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srexport.bundle import Bundle, Manifest
from srexport.errors import BundleError, SrExportError
from srexport.lazy import import_tritonclient
from srexport.runtime.backends.base import Session
from srexport.triton.config import MANIFEST_PARAMETER

_NUMPY = {"FP32": np.float32, "FP16": np.float16, "BF16": np.float32, "FP64": np.float64, "UINT8": np.uint8,
          "INT8": np.int8, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def client_module(protocol: str = "grpc"):
    """tritonclient.grpc or tritonclient.http, or one clear error saying how to install it."""
    return import_tritonclient(protocol)


def _config_dict(client, model: str, version: str) -> dict:
    """The model's configuration as the JSON-like dict Triton's HTTP API returns."""
    config = client.get_model_config(model, model_version=version)
    if isinstance(config, dict):  # HTTP client
        return config.get("config", config)
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(getattr(config, "config", config), preserving_proto_field_name=True)


class TritonSession(Session):
    """A `Session` whose batches run on a Triton server (gRPC or HTTP)."""

    name = "triton"
    device = "remote"

    def __init__(self, url: str, model: str, *, protocol: str = "grpc", version: str = "", client=None):
        super().__init__("fp32", reason=f"triton: model {model} at {url} ({protocol})")
        self._module = client_module(protocol)
        self.client = client if client is not None else self._module.InferenceServerClient(url=url)
        self.model, self.version, self.url = model, version, url
        config = _config_dict(self.client, model, version)
        self.max_batch = int(config.get("max_batch_size", 0))
        self.inputs = [(i["name"], i["data_type"].removeprefix("TYPE_")) for i in config.get("input", [])]
        outputs = config.get("output", [])
        if not self.inputs or not outputs:
            raise SrExportError(f"Triton model {model} at {url} declares no inputs or outputs")
        self.output = outputs[0]["name"]
        parameters = config.get("parameters", {})
        self.manifest_json = parameters.get(MANIFEST_PARAMETER, {}).get("string_value")

    def manifest(self) -> Manifest:
        if not self.manifest_json:
            raise BundleError(f"Triton model {self.model} has no '{MANIFEST_PARAMETER}' parameter (not exported by "
                              f"`sr-export export-triton`): pass the bundle to srexport.triton.connect(bundle=...)")
        return Manifest.from_json(self.manifest_json)

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        count = len(next(iter(inputs.values())))
        step = self.max_batch if self.max_batch > 0 else 1
        results = []
        for first in range(0, count, step):
            request = []
            for name, datatype in self.inputs:
                array = inputs[name][first : first + step]
                if self.max_batch <= 0:  # a model without batching takes one patch, no batch dim
                    array = array[0]
                array = np.ascontiguousarray(array, dtype=_NUMPY.get(datatype, np.float32))
                tensor = self._module.InferInput(name, list(array.shape), datatype)
                tensor.set_data_from_numpy(array)
                request.append(tensor)
            wanted = [self._module.InferRequestedOutput(self.output)]
            result = self.client.infer(self.model, request, model_version=self.version, outputs=wanted)
            out = np.asarray(result.as_numpy(self.output), dtype=np.float32)
            results.append(out if self.max_batch > 0 else out[None])
        return results[0] if len(results) == 1 else np.concatenate(results)


def connect(
    url: str,
    model: str,
    *,
    protocol: str = "grpc",
    version: str = "",
    bundle: str | Path | None = None,
    client=None,
    patch: int | tuple[int, int] | None = None,
    overlap: int | None = None,
    window: str = "hamming",
    batch: int | None = None,
    noise: float = 0.0,
    seed: int = 0,
):
    """An `Upscaler` whose patches run on Triton (tiling, noise and blending stay here).

    `batch` defaults to the model's max_batch_size (one request per batch of patches).
    `bundle` supplies the manifest when the server's config does not carry it.
    """
    from srexport.bundle import load_bundle
    from srexport.runtime.upscaler import Upscaler

    session = TritonSession(url, model, protocol=protocol, version=version, client=client)
    if bundle is not None:
        loaded = load_bundle(bundle)
    else:
        loaded = Bundle(Path(f"triton-{model}"), session.manifest())
    if isinstance(patch, int):
        patch = (patch, patch)
    batch = batch or max(1, session.max_batch)
    return Upscaler(loaded, session, patch, overlap, window, batch, noise, seed)
