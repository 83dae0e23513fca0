"""ONNX Runtime backend: the embedded default (CPU; CUDA/TensorRT EPs when installed).

`run` gives one batch every thread of the session. Throughput mode (`run_concurrent`, for
the frame and folder pipelines and the tile scheduler of `Upscaler`) runs each caller's item
on one of `concurrency` further sessions of the same graph, each with its share of the
threads (`default_streams`; `OrtOptions(streams=N)` overrides it), created on the first
concurrent call. On the CPU only: a GPU provider keeps one item at a time. A CPU session of
the fp32 graph runs its pixel shuffles as one-hot ConvTransposes, the same bits faster
(`ort_graph`).
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import SrExportError
from srexport.ort import inference_session
from srexport.runtime.backends.base import Session
from srexport.runtime.backends.ort_graph import cpu_session_graph
from srexport.runtime.throughput import StreamPlan, plan_streams

_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def physical_threads() -> int:
    """Threads for intra-op parallelism: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


THREADS_PER_STREAM = 4


def default_streams(threads: int) -> int:
    """Concurrent CPU sessions for a thread budget: two from 2 threads, one per 4 threads from
    12 (as OpenVINO's THROUGHPUT hint groups cores).

    Measured with 2 threads on an AMX Xeon, ONNX Runtime 1.32, PCARN-M-L1 x4 fp32 (the graph
    the CPU default runs there): 320x180 frames 288-299 ms an item on two one-thread sessions
    against 327-329 ms on one two-thread session, the 14 CSet14 images 1.04-1.05 against
    1.16-1.18 s, with the same bits."""
    if threads < 2:
        return 1
    return max(2, threads // THREADS_PER_STREAM)


class OrtSession(Session):
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, precision: str = "fp32", threads: int = 0, providers: list[str] | None = None,
                 *, optimization: str = "all", streams: int | None = None, reason: str = "",
                 precision_reason: str = "", zero_noise: bool = False):
        import onnxruntime as ort

        super().__init__(precision, reason=reason, precision_reason=precision_reason)
        available = ort.get_available_providers()
        missing = [p for p in providers or () if p not in available]
        if missing:
            raise SrExportError(f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)})")
        chosen = providers or [p for p in _PREFERRED if p in available]
        self.threads = threads or physical_threads()
        self._graph = bundle.graph_path(precision, zero_noise)
        self.zero_noise_graph = self._graph != bundle.graph_path(precision)
        self._optimization = optimization
        self._model: Path | bytes = self._graph
        self.shuffles_rewritten = 0  # pixel shuffles run as ConvTranspose (`ort_graph`)
        if chosen[0] == "CPUExecutionProvider":
            self._model, self.shuffles_rewritten = cpu_session_graph(self._graph, precision)
        self._session = inference_session(self._model, threads=self.threads, providers=chosen, sequential=True,
                                          optimization=optimization)
        self._providers = self._session.get_providers()
        self.device = "cpu" if self._providers[0] == "CPUExecutionProvider" else "cuda"
        self.input_names = [i.name for i in self._session.get_inputs()]
        if self.device == "cpu":
            self._stream_plan = plan_streams("onnxruntime", self.threads, streams=streams,
                                             device_streams=default_streams(self.threads))
        else:
            self._stream_plan = StreamPlan(1, self.threads, f"ONNX Runtime on {self._providers[0]}: one item at a time")
        self._pool: queue.SimpleQueue | None = None
        self._pool_lock = threading.Lock()

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._session.run(None, {name: inputs[name] for name in self.input_names})[0]

    # -- throughput ----------------------------------------------------------------------
    def _run_concurrent(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """One caller's batch on a session of its own (`concurrency` of them, each with the
        plan's threads per stream), so that the callers' items run at the same time."""
        if self.concurrency == 1:
            return self._run(inputs)
        pool = self._stream_sessions()
        session = pool.get()
        try:
            return session.run(None, {name: inputs[name] for name in self.input_names})[0]
        finally:
            pool.put(session)

    def _stream_sessions(self) -> queue.SimpleQueue:
        with self._pool_lock:
            if self._pool is None:
                pool: queue.SimpleQueue = queue.SimpleQueue()
                for _ in range(self.concurrency):
                    pool.put(inference_session(self._model, threads=self._stream_plan.threads_per_stream,
                                               providers=self._providers, sequential=True,
                                               optimization=self._optimization))
                self._pool = pool
            return self._pool

    def _release(self) -> None:
        self._session = None
        self._pool = None
