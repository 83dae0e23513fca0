"""OpenVINO backend: the fastest CPU path (FP32, BF16 on AVX512-BF16/AMX, INT8 on VNNI/AMX).

It reads the bundle's ONNX graphs directly (no conversion step, nothing written):

- fp32: `model.fp32.onnx` computed in float32 (the inference precision is pinned to f32:
  OpenVINO's own default on AMX CPUs is bf16);
- bf16: the same `model.fp32.onnx` compiled with INFERENCE_PRECISION_HINT bf16, on CPUs
  whose OPTIMIZATION_CAPABILITIES list BF16 (AVX512-BF16 or AMX); elsewhere a one-line
  `SrExportError` (OpenVINO itself would silently fall back to f32);
- int8: the bundle's QDQ graph `model.int8.onnx` (OpenVINO turns QDQ pairs into int8
  kernels: VNNI / AMX-INT8 where present); the layers left in float run in bf16 where
  the CPU has BF16 (as OpenVINO does by default on AMX), else in f32 (`int8_remainder`);
- fp16 is refused: on a CPU it brings no speed (use bf16 or int8), and the GPU backends
  own it.

Input shapes (`shapes`): "dynamic" compiles the graph once with its spatial dimensions
left free (batch and channels fixed), so every image and tile size runs on one compiled
model; "static" reshapes the graph to each shape it meets and compiles once per shape.
"auto" (the default) is dynamic for networks with a finite halo (patch auto gives them a
patch per image size) and static for those with a fixed training patch (BPP, instance
norm: one 192x192 patch ran 3.3 s static vs 4.0 s dynamic). Measured on a 2-core EPYC
(AVX2), fp32: the dynamic model computes exactly (bit for bit) what the static ones do,
and runs no slower (PCARN-M-L1 x4 on the 14 CSet14 images: 1 compile of 0.2 s instead of
10 compiles, 3.0 s in all; G-MGBP R1 on CSet5: 1 compile of 1.9 s instead of 5, 9.3 s;
benchmarks/ov_shapes.py).

On a 2-core AMX Xeon the dynamic model is slower than static ones: it loses OpenVINO's
fused Add+ReLU subgraphs (G-MGBP BOE-R1 bf16, 128x128: 452 ms against 390 ms, per-node
sums). So inside `repeating_shapes()` (the frame streams of `upscale_frames` and video,
whose frames share one size) "auto" compiles static shapes for halo networks too: one
static compile costs about what the dynamic one does. Measured there, 2 threads: PCARN-M-L1
x4 on 320x180 frames, bf16 0.424 -> 0.408 s per 4 frames, int8 0.385 -> 0.356 s
(bit-identical outputs); G-MGBP on the CSet5 sizes, bf16 0.96 -> 0.82 s (outputs within
bf16 rounding of each other). Folder runs and single images keep the one dynamic compile:
a static compile per image size would cost more than it saves.

Compiled models are kept per (graph file digest, precision, shapes, hint, streams,
threads, cache dir) in an in-process cache shared by every session, so reopening a bundle
or upscaling many images never recompiles.

Threads and streams: a batch of one patch runs with PERFORMANCE_HINT LATENCY (one stream,
every thread on the patch); a batch of several patches compiles the one-patch shape with
PERFORMANCE_HINT THROUGHPUT (OpenVINO picks the streams for the thread budget; a known
batch smaller than the thread count gets one stream per patch) and runs the patches as
concurrent infer requests, one per stream, each kept busy. Pass `batch` (what
`Upscaler(batch=...)` will send) to fix the mode for the session, so the last, partial
batch of an image reuses the same compiled model; without it the mode follows each call.

Throughput mode (`run_concurrent`, for callers on several threads at once: the frame and
folder pipelines and the tile scheduler of `Upscaler`): one-patch batches compile with
PERFORMANCE_HINT THROUGHPUT and NUM_STREAMS from `srexport.runtime.throughput.plan_streams`
(`stream_plan`; `streams` overrides it); each call takes a free infer request (a stream) from
the compiled model's pool, so `concurrency` calls run at once. `run` may be called from
several threads too: its requests come from the same kind of pool.

OpenVINO's on-disk model cache (CACHE_DIR) is off by default: measured on G-MGBP and BPP
it saves only about a quarter of the compile time (hashing the model costs the rest) and
stores the compiled weights again per shape (76 MB per BPP shape). Pass `cache_dir` to
turn it on for that session's compiles (`OpenVINOOptions(cache_dir=...)` through `srexport.load`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterator

import numpy as np

from srexport.bundle import Bundle
from srexport.errors import SrExportError
from srexport.fsutil import sha256_file
from srexport.lazy import import_openvino
from srexport.runtime.backends.base import Session
from srexport.runtime.backends.onnxruntime import physical_threads
from srexport.runtime.throughput import StreamPlan, plan_streams

PRECISIONS = ("fp32", "bf16", "int8")
CACHE_SIZE = 32  # compiled models kept per process: every shape a static folder run uses (CSet14: 10 sizes) stays compiled
SHAPES = ("auto", "dynamic", "static")

_OV_TYPE = {"fp32": "f32", "bf16": "bf16"}  # inference precision per request (int8: see below)
_GRAPH = {"fp32": "fp32", "bf16": "fp32", "int8": "int8"}  # bundle graph per request

_core = None
_core_lock = threading.Lock()
_compiled: OrderedDict[tuple, object] = OrderedDict()
_open_sessions: dict[str, int] = {}  # graph digest -> sessions open on it (under _compiled_lock)
_compiled_lock = threading.Lock()


def core():
    """The process's one `openvino.Core` (creating one costs about 0.1 s)."""
    global _core
    with _core_lock:
        if _core is None:
            _core = import_openvino().Core()
        return _core


def cpu_capabilities() -> set[str]:
    """OpenVINO's OPTIMIZATION_CAPABILITIES of this CPU, e.g. {"FP32", "INT8", "BF16"}."""
    return set(core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def cpu_name() -> str:
    try:
        return str(core().get_property("CPU", "FULL_DEVICE_NAME"))
    except Exception:  # pragma: no cover - a plugin without the property
        return "this CPU"


def check_precision(precision: str, caps: set[str] | None = None) -> None:
    """Refuse, in one line, a precision this backend or this CPU cannot run."""
    if precision == "fp16":
        raise SrExportError(
            "the openvino backend runs fp32, bf16 and int8, not fp16: on a CPU fp16 brings no speed "
            "(use --precision bf16 or int8; fp16 is for GPU backends)"
        )
    if precision not in PRECISIONS:
        raise SrExportError(f"unknown precision '{precision}' for the openvino backend ({', '.join(PRECISIONS)})")
    if precision == "bf16":
        caps = cpu_capabilities() if caps is None else caps
        if "BF16" not in caps:
            offered = ", ".join(sorted(c for c in caps if c in ("FP32", "INT8", "FP16", "BF16"))) or "none"
            raise SrExportError(
                f"bf16 needs a CPU with AVX512-BF16 or AMX; {cpu_name()} offers {offered}: "
                "use --precision fp32 or int8"
            )


def require_bf16_compile(got, graph_name: str) -> None:
    """Refuse a compiled model whose INFERENCE_PRECISION_HINT is not bfloat16.

    The property is an `openvino.Type`; its printed form changed between releases
    (`bf16`, then `<Type: 'bfloat16'>`), so it is compared as a Type, never as text."""
    ov = import_openvino()
    if not isinstance(got, ov.Type):
        raise SrExportError(f"OpenVINO reported INFERENCE_PRECISION_HINT {got!r} for {graph_name}, not a type")
    if got != ov.Type.bf16:
        raise SrExportError(f"OpenVINO compiled {graph_name} in {got.get_type_name()}, not bf16, on {cpu_name()}")


def int8_remainder() -> str:
    """What the layers an INT8 graph keeps in float (excluded, elementwise) compute in:
    bf16 where the CPU has it (AMX: otherwise those layers, in f32, would make int8 slower
    than plain bf16; bf16 alone costs PCARN-M and G-MGBP 0.003 dB PSNR-Y on Set14, emulated), else f32."""
    return "bf16" if "BF16" in cpu_capabilities() else "f32"


def clear_cache() -> None:
    """Drop every compiled model of this process (tests; freeing memory)."""
    with _compiled_lock:
        _compiled.clear()


def cached_models(graph_digest: str | None = None) -> int:
    """Compiled models in the process's cache (of one graph, by its file digest, when given)."""
    with _compiled_lock:
        return sum(1 for key in _compiled if graph_digest in (None, key[0]))


class OvSession(Session):
    """A bundle graph on the OpenVINO CPU plugin; `run(inputs) -> output batch`."""

    name = "openvino"

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        threads: int = 0,
        batch: int | None = None,
        cache_dir: str | Path | None = None,
        streams: int | None = None,
        shapes: str = "auto",
        *,
        reason: str = "",
        precision_reason: str = "",
        zero_noise: bool = False,
    ):
        super().__init__(precision, reason=reason, precision_reason=precision_reason)
        check_precision(precision)
        if shapes not in SHAPES:
            raise SrExportError(f"unknown input shapes '{shapes}' for the openvino backend ({', '.join(SHAPES)})")
        self.shapes_requested = shapes
        if shapes == "auto":
            shapes = "dynamic" if bundle.manifest.shape_rules.halo is not None else "static"
        self.shapes = shapes
        self._repeating = threading.local()
        ov_core = core()
        self.threads = threads or physical_threads()
        self.batch = batch
        self._stream_plan: StreamPlan = plan_streams("openvino", self.threads, streams=streams,
                                                    device_streams=default_streams(self.threads))
        self.inference_precision = _OV_TYPE.get(precision) or int8_remainder()
        self._providers = [f"CPU ({'int8 + ' if precision == 'int8' else ''}{self.inference_precision})"]
        graph_precision = _GRAPH[precision]
        self.graph = bundle.graph_path(graph_precision, zero_noise)
        self.zero_noise_graph = self.graph != bundle.graph_path(graph_precision)
        file = self.graph.relative_to(bundle.root).as_posix()
        # the file's digest keys the cache: a rebuilt bundle at the same path recompiles
        self._digest = bundle.manifest.files.get(file) or sha256_file(self.graph)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        if self.cache_dir is not None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._model = ov_core.read_model(str(self.graph))
        except Exception as exc:
            raise SrExportError(f"OpenVINO cannot read {self.graph}: {_first_line(exc)}") from None
        self.input_names = [port.get_any_name() for port in self._model.inputs]
        self._model_lock = threading.Lock()
        with _compiled_lock:
            _open_sessions[self._digest] = _open_sessions.get(self._digest, 0) + 1

    # -- compiling -----------------------------------------------------------------------
    def _config(self, hint: str, streams: int | None) -> dict:
        config = {
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": self.threads,
            "INFERENCE_PRECISION_HINT": self.inference_precision,
        }
        if streams:
            config["NUM_STREAMS"] = streams
        if self.cache_dir is not None:  # per compile, not on the shared Core: other sessions keep theirs
            config["CACHE_DIR"] = str(self.cache_dir)
        return config

    def streams(self) -> int | None:
        """Streams for THROUGHPUT: OpenVINO's choice for the thread budget, except that a
        session told its batch, smaller than the thread count, gets one stream per patch
        (more streams would idle)."""
        return self.batch if self.batch and 1 < self.batch < self.threads else None

    @contextlib.contextmanager
    def repeating_shapes(self, on: bool = True) -> Iterator[None]:
        """With shapes "auto", compile the shapes run on this thread static meanwhile."""
        before = self.repeating_here()
        self._repeating.on = before or on
        try:
            yield
        finally:
            self._repeating.on = before

    def repeating_here(self) -> bool:
        return getattr(self._repeating, "on", False)

    def dynamic_here(self) -> bool:
        """Whether a compile on this thread leaves height and width free."""
        if self.shapes != "dynamic":
            return False
        return not (self.shapes_requested == "auto" and self.repeating_here())

    def compiled(self, shapes: dict[str, tuple[int, ...]], hint: str, streams: int | None = None) -> "_Compiled":
        """The compiled model for these input shapes, hint and streams (cached); spatially
        dynamic (height and width -1) when the session's shapes are dynamic on this thread."""
        if self.dynamic_here():
            shapes = {n: tuple(s[:2]) + (-1,) * (len(s) - 2) for n, s in shapes.items()}
        key = (self._digest, self.precision, self.threads, hint, streams, tuple(shapes[n] for n in self.input_names),
               self.cache_dir)
        with _compiled_lock:
            found = _compiled.get(key)
            if found is not None:
                _compiled.move_to_end(key)
                return found
        with self._model_lock:
            try:
                partial = import_openvino().PartialShape
                self._model.reshape({name: partial(list(shapes[name])) for name in self.input_names})
                model = core().compile_model(self._model, "CPU", self._config(hint, streams))
            except Exception as exc:
                shown = ", ".join(f"{n} {'x'.join('?' if d < 0 else str(d) for d in s)}" for n, s in shapes.items())
                raise SrExportError(
                    f"OpenVINO cannot compile {self.graph.name} for {shown}: {_first_line(exc)}"
                ) from None
        if self.precision == "bf16":
            require_bf16_compile(model.get_property("INFERENCE_PRECISION_HINT"), self.graph.name)
        entry = _Compiled(model)
        with _compiled_lock:
            _compiled[key] = entry
            while len(_compiled) > CACHE_SIZE:
                _compiled.popitem(last=False)
        return entry

    @property
    def graph_digest(self) -> str:
        """The SHA-256 of the graph file, which keys its compiled models."""
        return self._digest

    def compiled_models(self) -> int:
        """Compiled models in the process's cache (shared by every OpenVINO session)."""
        return cached_models()

    def mode(self, batch: int) -> str:
        """THROUGHPUT (streams, one request per patch) for batches, LATENCY for one patch."""
        return "THROUGHPUT" if (self.batch or batch) > 1 else "LATENCY"

    def profile_ops(self, inputs: dict[str, np.ndarray], runs: int) -> dict[str, float]:
        """Milliseconds per run by OpenVINO node type (PERF_COUNT on a separate LATENCY
        compile of these shapes; `sr-export profile`'s per-operator table)."""
        self._require_open()
        arrays = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        with self._model_lock:
            self._model.reshape({name: list(a.shape) for name, a in arrays.items()})
            config = dict(self._config("LATENCY", None), PERF_COUNT=True)
            request = core().compile_model(self._model, "CPU", config).create_infer_request()
        request.infer(arrays)  # warm-up, not counted
        totals: dict[str, float] = {}
        for _ in range(max(1, runs)):
            request.infer(arrays)
            for info in request.get_profiling_info():
                ms = info.real_time.total_seconds() * 1e3
                if ms > 0:
                    totals[info.node_type] = totals.get(info.node_type, 0.0) + ms
        return {op: ms / max(1, runs) for op, ms in totals.items()}

    # -- running -------------------------------------------------------------------------
    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        arrays = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        batch = arrays[self.input_names[0]].shape[0]
        hint = self.mode(batch)
        if hint == "LATENCY":
            entry = self.compiled({n: a.shape for n, a in arrays.items()}, hint)
            requests = entry.take(1)
            try:
                requests[0].infer(arrays, share_inputs=True)
                return np.array(requests[0].get_output_tensor(0).data, copy=True)
            finally:
                entry.give(requests)
        entry = self.compiled({n: (1,) + a.shape[1:] for n, a in arrays.items()}, hint, self.streams())
        requests = entry.take(batch)
        try:
            return _run_streams(requests, arrays, batch)
        finally:
            entry.give(requests)

    def _run_concurrent(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """`run` for one of several callers at once: every patch on one stream of a
        THROUGHPUT compile with the stream plan's streams."""
        if self.concurrency == 1:
            return self._run(inputs)
        arrays = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        batch = arrays[self.input_names[0]].shape[0]
        entry = self.compiled({n: (1,) + a.shape[1:] for n, a in arrays.items()}, "THROUGHPUT",
                              self.stream_plan.streams)
        requests = entry.take(batch)
        try:
            return _run_streams(requests, arrays, batch)
        finally:
            entry.give(requests)

    def _release(self) -> None:
        """The graph's compiled models leave the process's cache with the last open session
        on it (until then the others share them): a closed Upscaler gives back their memory,
        which grows with the largest shape each ran (PCARN-M on the CSet14 sizes: 130-190 MB
        a model)."""
        self._model = None
        with _compiled_lock:
            left = _open_sessions.get(self._digest, 1) - 1
            if left > 0:
                _open_sessions[self._digest] = left
                return
            _open_sessions.pop(self._digest, None)
            for key in [key for key in _compiled if key[0] == self._digest]:
                del _compiled[key]


THREADS_PER_STREAM = 4


def default_streams(threads: int) -> int:
    """Streams for a thread budget: one per 4 threads (as OpenVINO's THROUGHPUT hint groups
    cores), so up to 7 threads every thread works on one item.

    Measured with 2 threads on an AMX Xeon (benchmarks/cpu_peers.py, default_run.py): one
    stream of 2 threads beat 2 streams of 1 thread on every workload. The networks'
    convolutions split over 2 threads at 93-95% efficiency, while 2 streams pay each new
    input shape's first inference twice, leave one stream idle behind a large image, and
    halve the memory budget of a tile (G-MGBP CSet5 folder 3.86 -> 2.55 s, PCARN-M CSet14
    1.98 -> 1.86 s, PCARN-M 320x180 frames fp32 2.79 -> 2.63 s, bf16 equal)."""
    return max(1, threads // THREADS_PER_STREAM)


def _run_streams(requests: list, arrays: dict[str, np.ndarray], batch: int) -> np.ndarray:
    """One patch per infer request, every request (stream) kept busy: patch i goes to
    request i mod R as soon as that request has finished patch i - R."""
    output: np.ndarray | None = None

    def collect(index: int) -> None:
        nonlocal output
        request = requests[index % len(requests)]
        request.wait()
        result = request.get_output_tensor(0).data
        if output is None:
            output = np.empty((batch,) + result.shape[1:], np.float32)
        output[index] = result[0]

    for index in range(batch):
        if index >= len(requests):
            collect(index - len(requests))
        feed = {n: a[index : index + 1] for n, a in arrays.items()}
        requests[index % len(requests)].start_async(feed, share_inputs=True)
    for index in range(max(0, batch - len(requests)), batch):
        collect(index)
    return output


class _Compiled:
    """A compiled model with its OPTIMAL_NUMBER_OF_INFER_REQUESTS infer requests (one per
    stream), created once, in a pool: each caller takes the requests it runs on and gives
    them back, so callers on several threads share the streams."""

    def __init__(self, model):
        self.model = model
        count = max(1, int(model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [model.create_infer_request() for _ in range(count)]
        self.streams = int(model.get_property("NUM_STREAMS"))
        self._free: queue.SimpleQueue = queue.SimpleQueue()
        for request in self.requests:
            self._free.put(request)

    def take(self, wanted: int) -> list:
        """One free request (waiting for it), then up to `wanted` - 1 more that are free now."""
        taken = [self._free.get()]
        while len(taken) < wanted:
            try:
                taken.append(self._free.get_nowait())
            except queue.Empty:
                break
        return taken

    def give(self, requests: list) -> None:
        for request in requests:
            self._free.put(request)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
