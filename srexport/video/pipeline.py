"""A bounded, threaded map: read, work and consume overlap, a few items in flight."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
U = TypeVar("U")
_END = object()
_POLL_S = 0.1


@dataclass
class _Failure:
    error: BaseException


def pipelined(source: Iterable[T], work: Callable[[T], U], depth: int = 3) -> Iterator[U]:
    """`work(item)` for each item of `source`, in order.

    `source` is iterated on a reader thread and `work` runs on a worker thread, each handing
    on through a queue of `depth` items, so that at most 2 * depth + 2 items exist at once
    while the caller consumes results. An exception on either thread is raised here; closing
    the iterator early stops both threads after the item each is on."""
    stop = threading.Event()
    inbox: queue.Queue = queue.Queue(depth)
    outbox: queue.Queue = queue.Queue(depth)

    def put(box: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                box.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in source:
                if not put(inbox, item):
                    return
            put(inbox, _END)
        except BaseException as exc:
            put(inbox, _Failure(exc))

    def compute() -> None:
        while not stop.is_set():
            try:
                item = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END or isinstance(item, _Failure):
                put(outbox, item)
                return
            try:
                result = work(item)
            except BaseException as exc:
                put(outbox, _Failure(exc))
                return
            if not put(outbox, result):
                return

    threads = [threading.Thread(target=read, name="srx-read", daemon=True),
               threading.Thread(target=compute, name="srx-work", daemon=True)]
    for thread in threads:
        thread.start()
    try:
        while True:
            try:
                item = outbox.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        for thread in threads:
            thread.join()
