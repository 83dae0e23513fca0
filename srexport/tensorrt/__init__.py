"""TensorRT engines for bundles: keys, optimization profiles, building, device queries.

Importing this package imports neither TensorRT nor cuda-python (see `lazy`); both come
with the optional extra `pip install "sr-export[tensorrt]"`.

- `keys`: engine file names from precision, GPU compute capability, TensorRT version,
  optimization profile and graph hash; finding a matching plan.
- `profiles`: min/opt/max input shapes from the manifest's shape rules and patch.
- `builder`: ONNX -> strongly typed engine (`build_engines` for `sr-export build`).
- `device`: the GPU through cuda-python's runtime API.
- `lazy`: the imports and the `EngineUnavailable` family of errors.
"""
