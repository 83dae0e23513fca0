"""PyTorch backend: the exported model itself through the same tiler (the reference)."""

from __future__ import annotations

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import SrExportError
from srexport.runtime.backends.base import Session


class TorchSession(Session):
    name = "torch"

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int = 0, *, reason: str = "",
                 precision_reason: str = ""):
        import torch

        super().__init__(precision, reason=reason, precision_reason=precision_reason)

        from srexport.export.model_bundle import model_from_bundle

        if precision != "fp32":
            raise SrExportError(f"the torch backend runs fp32 only, not {precision}")
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._model = model_from_bundle(bundle)
        self.input_names = list(bundle.manifest.inputs)

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            args = [torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self.input_names]
            return self._model(*args).numpy()

    def _release(self) -> None:
        self._model = None
