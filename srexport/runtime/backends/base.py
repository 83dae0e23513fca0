"""The backend contract: every session the runtime drives subclasses `Session`.

A backend implements `_run` (a batch in, a batch out) and overrides only the extras it
has; the defaults say "one stream, outputs on the host, no backend profiler":

- `stream_plan` None (set `_stream_plan` for streams): `concurrency` 1 and `run_concurrent` is `run`;
- `max_patch_edge` None: no limit beyond the memory budget;
- `device_blender(...)` None: the tiler blends with NumPy (`run_to_device` is refused);
- `providers` []: nothing to show after the backend's name;
- `profile_ops(...)` None: `sr-export profile` uses its generic per-operator profiler;
- `compiled_models()` None: the backend compiles nothing per shape;
- `repeating_shapes()` a no-op: the backend compiles nothing per shape, so a stream of
  frames of one size needs nothing of it;
- `backend_note` "": nothing to add to the selection note.

`selection_note` (why this backend, and this precision when it was "auto") is made from
constructor fields, `reason` and `precision_reason`. `close()` releases what the session
holds (also as a context manager); a closed session refuses `run` in one line.
"""

from __future__ import annotations

import abc
import contextlib
from typing import ClassVar, Iterator

import numpy as np

from srexport.errors import SessionClosed, SrExportError
from srexport.runtime.throughput import StreamPlan


class Session(abc.ABC):
    """A bundle graph on one backend: `run(inputs) -> output batch` (NCHW float32)."""

    name: ClassVar[str] = ""
    device: str = "cpu"

    def __init__(self, precision: str = "fp32", *, reason: str = "", precision_reason: str = ""):
        self.precision = precision
        self.zero_noise_graph = False  # runs the W = 0 graph (no noise inputs; Bundle.graph_path)
        self.reason = reason
        self.precision_reason = precision_reason
        self._providers: list[str] = []
        self._closed = False

    # -- the one thing a backend must do ---------------------------------------------------
    @abc.abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs by graph input name (NCHW float32) -> the output batch (NCHW float32)."""

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs by graph input name (NCHW float32) -> the output batch (NCHW float32), an
        array the caller owns (no backend reuses it: the stitcher keeps a lone tile's output)."""
        self._require_open()
        return self._run(inputs)

    # -- throughput ----------------------------------------------------------------------
    _stream_plan: StreamPlan | None = None  # a backend with streams sets its plan

    @property
    def concurrency(self) -> int:
        """How many `run_concurrent` callers run at once."""
        return 1 if self._stream_plan is None else self._stream_plan.streams

    @property
    def stream_plan(self) -> StreamPlan | None:
        """The streams the session runs (None: one)."""
        return self._stream_plan

    def run_concurrent(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """`run` for one of `concurrency` callers on several threads at once."""
        self._require_open()
        return self._run_concurrent(inputs)

    def _run_concurrent(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self._run(inputs)

    # -- tiling and blending -------------------------------------------------------------
    @property
    def max_patch_edge(self) -> int | None:
        """The largest patch edge the backend accepts (None: any the budget allows)."""
        return None

    def device_blender(self, channels: int, height: int, width: int, wy: np.ndarray, wx: np.ndarray):
        """A blender of outputs left on the device (`run_to_device`), or None: blend on the host."""
        return None

    def run_to_device(self, inputs: dict[str, np.ndarray]):
        raise SrExportError(f"the {self.name or 'this'} backend keeps no outputs on a device (use run)")

    # -- what the CLI and the profiler show ----------------------------------------------
    @property
    def providers(self) -> list[str]:
        """What runs the graph, shown after the backend's name (e.g. ONNX Runtime's providers)."""
        return list(self._providers)

    def profile_ops(self, inputs: dict[str, np.ndarray], runs: int) -> dict[str, float] | None:
        """Milliseconds per run by operator from the backend's own profiler, or None."""
        return None

    def compiled_models(self) -> int | None:
        """Compiled models held for the shapes met so far (static-shape backends), or None."""
        return None

    @contextlib.contextmanager
    def repeating_shapes(self, on: bool = True) -> Iterator[None]:
        """On this thread, while open: the shapes run will come again and again (the frames of
        one stream), so a backend that can compile a shape of its own may do so. `on=False`
        leaves the thread as it is (for handing a caller's state to a worker thread)."""
        yield

    def repeating_here(self) -> bool:
        """Whether this thread is inside `repeating_shapes()`."""
        return False

    @property
    def backend_note(self) -> str:
        """What the backend adds to the selection note (TensorRT: which engine)."""
        return ""

    @property
    def selection_note(self) -> str:
        """Why this backend ("requested", "auto: ...") and precision; "" when opened directly."""
        if not self.reason:
            return ""
        return "; ".join(part for part in (self.reason, self.backend_note, self.precision_reason) if part)

    # -- lifetime ------------------------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release what the session holds; later calls of `run` are refused."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:
        """What `close` frees (the backend's runtime objects)."""

    def _require_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"the {self.name} session is closed: open the bundle again to run it")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NoSession(Session):
    """The session of a planning-only `Upscaler` (tiling rules and noise, no backend)."""

    name = ""

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        raise SrExportError("this Upscaler plans tiles only: it has no session to run them")
