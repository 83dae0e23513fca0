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


def test_chunks_start_at_keyframes_at_least_the_gap_apart_and_segments_end_where_chunks_do():
    from srexport.distributed.ray_video import plan_segments
    from srexport.video.chunks import Scan, chunk_starts
    from srexport.video.options import FrameRange

    pts = tuple(range(0, 200, 10))  # 20 frames
    scan = Scan(pts, frozenset({0, 30, 50, 60, 90, 150, 160}))  # keyframes at frames 0 3 5 6 9 15 16
    assert chunk_starts(scan, FrameRange(), 3) == [0, 3, 6, 9, 15]
    assert chunk_starts(scan, FrameRange(), 1) == [0, 3, 5, 6, 9, 15, 16]
    assert chunk_starts(scan, FrameRange(), 0) == [0]
    assert chunk_starts(scan, FrameRange(4, 16), 3) == [4, 9, 15]  # 5 and 6 are under 3 frames after 4
    assert chunk_starts(scan, FrameRange(25, None), 3) == []
    # Target ceil(20 / (2 workers * 3)) = 4 frames: a segment ends at the first chunk end at or past it.
    segments = plan_segments(pts, [0, 3, 6, 9, 15], 20, workers=2, shift=0)
    assert [(s.first, len(s.pts), s.chunk_starts) for s in segments] == [
        (0, 6, (0, 3)), (6, 9, (6, 9)), (15, 5, (15,))]
    assert sum((s.pts for s in segments), ()) == pts
