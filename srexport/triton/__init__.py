"""Triton Inference Server: model repository export and client-side tiling.

- `export_triton(bundle, repo)` writes `<repo>/<name>/config.pbtxt` and `<name>/1/model.onnx`
  (or TensorRT `model.plan` files) so a Triton server serves patches of the bundle.
- `connect(url, name)` returns an `Upscaler` whose patch batches run on that server
  (needs `tritonclient`, imported only there).
"""

from __future__ import annotations

from srexport.triton.export import default_model_name, export_triton, triton_config


def connect(*args, **kwargs):
    """An Upscaler whose patches run on a Triton server; see `srexport.triton.client.connect`."""
    from srexport.triton.client import connect as _connect

    return _connect(*args, **kwargs)


__all__ = ["connect", "default_model_name", "export_triton", "triton_config"]
