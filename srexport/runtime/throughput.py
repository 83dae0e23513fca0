"""Throughput mode: several images, frames or tiles in flight, with reading and writing
overlapped with inference on other threads.

`ordered_map` is the scheduler's engine: a reader thread pulls items from the source, `workers`
threads run the work (each holding one of the backend's infer requests / streams /
execution contexts while it infers), the caller receives results in source order. Queues are
bounded: at most `depth` items are read ahead of the one the caller is waiting for.

`plan_streams` picks how many items to keep in flight from the backend and the thread budget;
its note goes into the run line.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
U = TypeVar("U")
_POLL_S = 0.05
_END = object()


@dataclass(frozen=True)
class StreamPlan:
    """How many items run at once (`streams`), with how many threads each, and why."""

    streams: int
    threads_per_stream: int
    reason: str

    def note(self) -> str:
        if self.streams == 1:
            return f"1 stream ({self.reason})"
        return f"{self.streams} streams x {self.threads_per_stream} threads in flight ({self.reason})"


_CPU_STREAMS = {  # backend -> (name, the reason for several streams)
    "openvino": ("OpenVINO", "OpenVINO THROUGHPUT for {threads} threads"),
    "onnxruntime": ("ONNX Runtime", "ONNX Runtime: {count} sessions of the graph"),
}


def plan_streams(backend: str, threads: int, *, streams: int | None = None, device_streams: int | None = None,
                 contexts: int | None = None) -> StreamPlan:
    """The streams of a run.

    - `streams` given (>= 1): that many, the thread budget split between them;
    - openvino: `device_streams` (runtime.backends.openvino.default_streams: one per 4
      threads, so 1 below 8 threads), at least 1;
    - tensorrt: `contexts` execution contexts (each on its own CUDA stream), default 2:
      one copies while the other computes (TrtSession splits each batch over them; it
      serves one caller at a time, so its items are not run concurrently);
    - onnxruntime: `device_streams` concurrent sessions
      (runtime.backends.onnxruntime.default_streams: two from 2 threads), at least 1;
    - torch: 1 (every thread on one item).
    """
    threads = max(1, threads)
    if streams is not None:
        if streams < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        return StreamPlan(streams, max(1, threads // streams), "as requested")
    if backend in _CPU_STREAMS:
        label, several = _CPU_STREAMS[backend]
        count = max(1, device_streams or 1)
        if count == 1:
            return StreamPlan(1, threads, f"{label}: every one of {threads} threads on one item")
        return StreamPlan(count, max(1, threads // count), several.format(count=count, threads=threads))
    if backend == "tensorrt":
        count = max(1, contexts or 2)
        return StreamPlan(count, threads, "TensorRT execution contexts, one CUDA stream each")
    return StreamPlan(1, threads, f"{backend}: one item at a time uses every thread")


@dataclass
class _Failure:
    error: BaseException


def ordered_map(source: Iterable[T], work: Callable[[T], U], workers: int = 1, depth: int | None = None
                ) -> Iterator[U]:
    """`work(item)` for every item of `source`, yielded in source order, `workers` items
    computed at once on worker threads while a reader thread pulls the next ones.

    At most `depth` (default 2 * workers) items exist between the reader and the caller. An
    exception from the source or from `work` is raised here, after the results before it;
    closing the iterator early stops every thread after the item it is on."""
    workers = max(1, workers)
    depth = max(workers, depth or 2 * workers)
    stop = threading.Event()
    slots = threading.Semaphore(depth)
    inbox: queue.Queue = queue.Queue()
    results: dict[int, object] = {}
    ready = threading.Condition()

    def acquire() -> bool:
        while not stop.is_set():
            if slots.acquire(timeout=_POLL_S):
                return True
        return False

    def publish(index: int, value) -> None:
        with ready:
            results[index] = value
            ready.notify_all()

    def read() -> None:
        index = 0
        items = iter(source)
        try:
            while acquire():  # a slot first, so that no item waits outside the bound
                try:
                    item = next(items)
                except StopIteration:
                    break
                inbox.put((index, item))
                index += 1
            else:
                return
        except BaseException as exc:
            publish(index, _Failure(exc))
            index += 1
        publish(index, _END)
        for _ in range(workers):
            inbox.put(None)

    def compute() -> None:
        while not stop.is_set():
            try:
                job = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if job is None:
                return
            index, item = job
            try:
                value = work(item)
            except BaseException as exc:
                value = _Failure(exc)
            publish(index, value)

    threads = [threading.Thread(target=read, name="srx-read", daemon=True)]
    threads += [threading.Thread(target=compute, name=f"srx-work-{k}", daemon=True) for k in range(workers)]
    for thread in threads:
        thread.start()
    try:
        index = 0
        while True:
            with ready:
                while index not in results:
                    ready.wait(_POLL_S)
                value = results.pop(index)
            if value is _END:
                return
            slots.release()
            index += 1
            if isinstance(value, _Failure):
                raise value.error
            yield value
    finally:
        stop.set()
        for thread in threads:
            thread.join()
