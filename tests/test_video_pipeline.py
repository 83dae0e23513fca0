"""The threaded map under video: order, bounded look-ahead, errors, early stop."""

from __future__ import annotations

import threading
import time

import pytest

from srexport.video.pipeline import pipelined


def test_results_in_order_with_a_bounded_look_ahead():
    produced = []
    depth = 2

    def source():
        for i in range(30):
            produced.append(i)
            yield i

    ahead = []
    for consumed, value in enumerate(pipelined(source(), lambda x: x * x, depth)):
        assert value == consumed * consumed
        time.sleep(0.005)  # a slow consumer: the producer would run away if unbounded
        ahead.append(len(produced) - consumed)
    assert max(ahead) <= 2 * depth + 3  # two queues, one item on each thread, one handed over
    assert len(produced) == 30


def test_reading_runs_while_work_is_busy():
    """Work on item 0 waits for the source to reach item 2: possible only when the two overlap."""
    reached = threading.Event()

    def source():
        for i in range(5):
            if i == 2:
                reached.set()
            yield i

    seen = []

    def work(x):
        if x == 0:
            seen.append(reached.wait(timeout=10))
        return x

    assert list(pipelined(source(), work, 2)) == list(range(5))
    assert seen == [True]


@pytest.mark.parametrize("where", ["source", "work"])
def test_an_error_on_either_thread_is_raised_to_the_consumer(where):
    def source():
        yield 1
        if where == "source":
            raise ValueError("bad packet")
        yield 2

    def work(x):
        if where == "work" and x == 2:
            raise ValueError("bad frame")
        return x

    with pytest.raises(ValueError, match="bad"):
        list(pipelined(source(), work, 2))


def test_closing_early_stops_both_threads():
    before = {t.name for t in threading.enumerate()}
    results = pipelined(iter(range(10**6)), lambda x: x, 2)
    assert next(results) == 0
    results.close()
    alive = {t.name for t in threading.enumerate()} - before
    assert not {"srx-read", "srx-work"} & alive
