"""ONNX Runtime backend: the embedded default (CPU; CUDA/TensorRT EPs when installed)."""

from __future__ import annotations

import os

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import SrExportError
from srexport.ort import inference_session
from srexport.runtime.backends.base import Session

_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def physical_threads() -> int:
    """Threads for intra-op parallelism: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class OrtSession(Session):
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int = 0, providers: list[str] | None = None,
                 *, optimization: str = "all", reason: str = "", precision_reason: str = ""):
        import onnxruntime as ort

        super().__init__(precision, reason=reason, precision_reason=precision_reason)
        available = ort.get_available_providers()
        missing = [p for p in providers or () if p not in available]
        if missing:
            raise SrExportError(f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)})")
        chosen = providers or [p for p in _PREFERRED if p in available]
        self._session = inference_session(bundle.graph_path(precision), threads=threads or physical_threads(),
                                          providers=chosen, sequential=True, optimization=optimization)
        self._providers = self._session.get_providers()
        self.device = "cpu" if self._providers[0] == "CPUExecutionProvider" else "cuda"
        self.input_names = [i.name for i in self._session.get_inputs()]

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._session.run(None, {name: inputs[name] for name in self.input_names})[0]

    def _release(self) -> None:
        self._session = None
