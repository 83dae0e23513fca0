"""Throughput mode: several frames, images or tiles in flight, outputs bit-identical to one at a time."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from srexport.export.build import export_bundle
from srexport.runtime.backends.selection import available_backends
from srexport.runtime.throughput import StreamPlan, ordered_map, plan_streams
from srexport.runtime.upscaler import Upscaler
from srexport.video.seeds import frame_seed
from test_backend_openvino import ConvNet

needs_openvino = pytest.mark.skipif(
    not available_backends()["openvino"], reason="openvino is not installed (pip install 'sr-export[openvino]')"
)


# -- the ordered map ---------------------------------------------------------------------
def test_ordered_map_keeps_source_order_while_items_finish_out_of_order():
    delays = [0.03, 0.0, 0.02, 0.0, 0.01, 0.0, 0.0, 0.02]

    def work(k):
        time.sleep(delays[k])
        return k * k

    assert list(ordered_map(range(len(delays)), work, workers=3)) == [k * k for k in range(len(delays))]


def test_ordered_map_runs_workers_items_at_once():
    active, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(3, timeout=5)

    def work(k):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        if k < 3:
            gate.wait()  # the first three only finish once all three run together
        with lock:
            active[0] -= 1
        return k

    assert list(ordered_map(range(6), work, workers=3)) == list(range(6))
    assert peak[0] == 3


def test_ordered_map_reads_ahead_at_most_depth_items():
    pulled = []

    def source():
        for k in range(20):
            pulled.append(k)
            yield k

    seen = []
    for value in ordered_map(source(), lambda k: k, workers=2, depth=4):
        seen.append(value)
        time.sleep(0.01)
        # items read but not yet handed to the caller: never more than the depth
        assert len(pulled) - len(seen) <= 4
    assert seen == list(range(20))


def test_ordered_map_raises_work_errors_after_the_results_before_them():
    def work(k):
        if k == 3:
            raise ValueError("bad item 3")
        return k

    got = []
    with pytest.raises(ValueError, match="bad item 3"):
        for value in ordered_map(range(10), work, workers=2):
            got.append(value)
    assert got == [0, 1, 2]


def test_ordered_map_raises_source_errors_in_order():
    def source():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for value in ordered_map(source(), lambda k: 10 * k, workers=2):
            got.append(value)
    assert got == [10, 20]


def test_closing_the_map_early_stops_its_threads():
    before = {t.name for t in threading.enumerate()}
    results = ordered_map(iter(range(1000)), lambda k: k, workers=2, depth=2)
    assert next(results) == 0
    results.close()
    left = [t for t in threading.enumerate() if t.name.startswith("srx-") and t.name not in before]
    assert left == []


# -- the stream plan ---------------------------------------------------------------------
def test_stream_plans_per_backend():
    assert plan_streams("openvino", 2, device_streams=2) == StreamPlan(2, 1, "OpenVINO THROUGHPUT for 2 threads")
    assert plan_streams("openvino", 16, device_streams=4).threads_per_stream == 4
    assert plan_streams("openvino", 8, streams=3) == StreamPlan(3, 2, "as requested")
    assert plan_streams("tensorrt", 2).streams == 2
    assert plan_streams("tensorrt", 2, contexts=3).streams == 3
    assert plan_streams("onnxruntime", 2).streams == 1
    assert plan_streams("onnxruntime", 2, device_streams=2) == StreamPlan(2, 1, "ONNX Runtime: 2 sessions of the graph")
    assert plan_streams("onnxruntime", 2, device_streams=1) == StreamPlan(
        1, 2, "ONNX Runtime: every one of 2 threads on one item")
    assert plan_streams("onnxruntime", 8, device_streams=2, streams=4) == StreamPlan(4, 2, "as requested")
    assert plan_streams("openvino", 2, device_streams=1) == StreamPlan(
        1, 2, "OpenVINO: every one of 2 threads on one item")
    assert "2 streams x 1 threads" in plan_streams("openvino", 2, device_streams=2).note()
    with pytest.raises(ValueError):
        plan_streams("openvino", 2, streams=0)


def test_onnxruntime_streams_follow_the_thread_budget():
    from srexport.runtime.backends.onnxruntime import default_streams

    # two one-thread sessions beat one two-thread session on 2 threads; one per 4 from 12
    assert [default_streams(t) for t in (1, 2, 3, 4, 8, 12, 16, 56)] == [1, 2, 2, 2, 2, 3, 4, 14]


@needs_openvino
def test_default_streams_follow_the_thread_budget():
    from srexport.runtime.backends.openvino import default_streams

    # one stream per 4 threads: below 8 threads every thread works on one item
    assert [default_streams(t) for t in (1, 2, 4, 7, 8, 16, 56)] == [1, 1, 1, 1, 2, 4, 14]


# -- OpenVINO sessions -------------------------------------------------------------------
@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("throughput") / "convnet"
    return export_bundle(ConvNet(), root, {"model": "convnet", "variant": "test", "scale": 2, "task": "sr"},
                         log=lambda m: None)


def _frames(count: int, sizes=((20, 28), (40, 72), (20, 28))) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, sizes[k % len(sizes)] + (3,), dtype=np.uint8) for k in range(count)]


@needs_openvino
def test_concurrent_runs_share_the_streams_and_match_one_at_a_time(bundle):
    from srexport.runtime.backends.openvino import OvSession

    session = OvSession(bundle, "fp32", threads=2, streams=2)
    assert session.concurrency == 2
    rng = np.random.default_rng(1)
    feeds = [{"image": rng.random((1, 3, 24, 24), dtype=np.float32),
              "noise0": rng.standard_normal((1, 1, 24, 24)).astype(np.float32)} for _ in range(6)]
    alone = [session.run(feed) for feed in feeds]
    together: dict[int, np.ndarray] = {}

    def call(k):
        together[k] = session.run_concurrent(feeds[k])

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, expected in enumerate(alone):
        assert np.array_equal(together[k], expected)
    entry = session.compiled({"image": (1, 3, 24, 24), "noise0": (1, 1, 24, 24)}, "THROUGHPUT", 2)
    assert entry.streams == 2 and len(entry.requests) == 2


@needs_openvino
def test_upscale_frames_in_flight_equal_each_frame_upscaled_alone(bundle):
    from srexport.runtime.backends.openvino import OvSession

    up = Upscaler(bundle, OvSession(bundle, "fp32", threads=2, streams=2), patch=(16, 16), overlap=4,
                  noise=0.2, seed=11)
    assert up.concurrency == 2
    frames = _frames(7)
    got = list(up.upscale_frames(iter(frames)))
    assert len(got) == len(frames)
    for k, (frame, out) in enumerate(zip(frames, got)):
        alone = Upscaler(bundle, OvSession(bundle, "fp32", threads=2, streams=1), patch=(16, 16), overlap=4,
                         noise=0.2, seed=frame_seed(11, k))
        assert alone.concurrency == 1
        assert np.array_equal(out, alone.upscale(frame)), f"frame {k}"
    # the function form runs the same stream
    from srexport.video import upscale_frames

    assert all(np.array_equal(a, b) for a, b in zip(upscale_frames(up, iter(frames)), got, strict=True))


@needs_openvino
def test_tiles_of_one_image_in_flight_equal_the_sequential_tiling(bundle):
    from srexport.runtime.backends.openvino import OvSession

    planes = np.random.default_rng(3).random((3, 50, 70), dtype=np.float32)
    streamed = Upscaler(bundle, OvSession(bundle, "fp32", threads=2, streams=2), patch=(16, 16), noise=0.1, seed=3)
    sequential = Upscaler(bundle, OvSession(bundle, "fp32", threads=2, streams=1), patch=(16, 16), noise=0.1, seed=3)
    assert len(streamed.plan(50, 70).tiles) > 4
    done = []
    out = streamed.upscale_planes(planes, lambda d, t: done.append((d, t)))
    assert np.array_equal(out, sequential.upscale_planes(planes))
    assert done[-1] == (len(streamed.plan(50, 70).tiles),) * 2


@needs_openvino
def test_folder_run_in_flight_writes_what_one_image_at_a_time_writes(bundle, tmp_path):
    from srexport.runtime.backends.openvino import OvSession
    from srexport.runtime.backends.options import OpenVINOOptions
    from srexport.runtime.folder_run import run_images

    src = tmp_path / "in"
    src.mkdir()
    inputs = []
    for k, frame in enumerate(_frames(5)):
        path = src / f"img{k}.png"
        Image.fromarray(frame).save(path)
        inputs.append(path)
    broken = src / "img9.png"
    broken.write_bytes(b"not a png")
    inputs.insert(2, broken)
    errors = []
    failures = run_images(bundle.root, inputs, tmp_path / "out", quiet=True, report_error=errors.append,
                          backend="openvino", precision="fp32", threads=2,
                          backend_options=OpenVINOOptions(streams=2))
    assert failures == 1 and len(errors) == 1 and "img9" in errors[0]
    alone = Upscaler(bundle, OvSession(bundle, "fp32", threads=2, streams=1), patch="auto")
    for path in inputs:
        if path == broken:
            assert not (tmp_path / "out" / "img9.png").exists()
            continue
        expected = tmp_path / "alone" / path.name
        expected.parent.mkdir(exist_ok=True)
        alone.upscale_file(path, expected)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / path.name)), np.asarray(Image.open(expected)))


@needs_openvino
def test_the_run_line_reports_the_streams(bundle):
    from srexport.runtime.folder_run import describe
    from srexport.runtime.upscaler import load

    from srexport.runtime.backends.options import OpenVINOOptions

    line = describe(load(bundle.root, "openvino", "fp32", threads=2))
    assert line.endswith("throughput: 1 stream (OpenVINO: every one of 2 threads on one item)")
    line = describe(load(bundle.root, "openvino", "fp32", threads=2, backend_options=OpenVINOOptions(streams=2)))
    assert line.endswith("throughput: 2 streams x 1 threads in flight (as requested)")


def _feeds(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    return [{"image": rng.random((1, 3, 24, 24), dtype=np.float32),
             "noise0": rng.standard_normal((1, 1, 24, 24)).astype(np.float32)} for _ in range(count)]


def _all_at_once(call, feeds: list) -> list[np.ndarray]:
    results: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(feeds), timeout=30)

    def run(k):
        start.wait()
        results[k] = call(feeds[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(feeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [results[k] for k in range(len(feeds))]


def test_onnxruntime_concurrent_calls_run_on_sessions_of_their_own_and_match_one_at_a_time(bundle):
    from srexport.runtime.backends.onnxruntime import OrtSession

    session = OrtSession(bundle, "fp32", threads=2)
    assert session.concurrency == 2
    assert session.stream_plan == StreamPlan(2, 1, "ONNX Runtime: 2 sessions of the graph")
    feeds = _feeds(6)
    alone = [session.run(feed) for feed in feeds]
    for got, expected in zip(_all_at_once(session.run_concurrent, feeds), alone, strict=True):
        assert np.array_equal(got, expected)
    single = OrtSession(bundle, "fp32", threads=1)
    assert single.concurrency == 1
    assert np.array_equal(single.run_concurrent(feeds[0]), alone[0])


def test_onnxruntime_streams_option_fixes_the_sessions(bundle):
    from srexport.runtime.backends.options import OrtOptions
    from srexport.runtime.folder_run import describe
    from srexport.runtime.upscaler import load

    up = load(bundle.root, "onnxruntime", "fp32", threads=2, backend_options=OrtOptions(streams=1))
    assert up.concurrency == 1
    assert describe(up).endswith("throughput: 1 stream (as requested)")
    up = load(bundle.root, "onnxruntime", "fp32", threads=2)
    assert describe(up).endswith("throughput: 2 streams x 1 threads in flight (ONNX Runtime: 2 sessions of the graph)")
    up = load(bundle.root, "onnxruntime", "fp32", threads=4, backend_options=OrtOptions(streams=3))
    assert up.concurrency == 3
    from srexport.errors import OptionError

    with pytest.raises(OptionError, match="OrtOptions.streams"):
        OrtOptions(streams=0)


def test_onnxruntime_frames_and_tiles_in_flight_equal_one_at_a_time(bundle):
    from srexport.runtime.backends.onnxruntime import OrtSession

    up = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch=(16, 16), overlap=4, noise=0.2, seed=11)
    assert up.concurrency == 2
    frames = _frames(5)
    for k, (frame, out) in enumerate(zip(frames, up.upscale_frames(iter(frames)), strict=True)):
        alone = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2, streams=1), patch=(16, 16), overlap=4,
                         noise=0.2, seed=frame_seed(11, k))
        assert alone.concurrency == 1
        assert np.array_equal(out, alone.upscale(frame)), f"frame {k}"
    planes = np.random.default_rng(3).random((3, 50, 70), dtype=np.float32)
    streamed = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch=(16, 16), noise=0.1, seed=3)
    sequential = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2, streams=1), patch=(16, 16), noise=0.1, seed=3)
    assert len(streamed.plan(50, 70).tiles) > 4
    assert np.array_equal(streamed.upscale_planes(planes), sequential.upscale_planes(planes))


@needs_openvino
def test_the_memory_budget_plans_for_every_patch_in_flight(bundle):
    from srexport.runtime.backends.openvino import OvSession
    from srexport.runtime.budget import budget_patch, image_bytes

    gib = (image_bytes(300, 400, 2, False) + 5e6) / 2**30  # about 5 MB left for the network
    up = Upscaler(bundle, OvSession(bundle, "fp32", threads=2, streams=2), patch="auto", memory=gib)
    assert up.patches_in_flight == 2
    plan = up.plan(300, 400)
    assert len(plan.tiles) > 1
    left = up.budget.bytes - image_bytes(300, 400, 2, False)
    model = up.memory_model()
    # two patches of this size fit what the budget leaves ...
    assert model.patch_bytes(plan.patch_h, plan.patch_w, 2) <= left
    # ... and the budget binds: the largest patch one call at a time could take would not fit twice
    rules = bundle.manifest.stitching_rules
    one = budget_patch(model, up.budget.bytes, rules, 300, 400, 1, False, 2 * rules.halo + 1, 2 * rules.halo)
    assert model.patch_bytes(*one, 2) > left


def test_an_image_alone_tiles_in_flight_only_where_the_shared_budget_costs_little(bundle):
    """The streams split the budget between the tiles in flight; an image that one patch of
    the whole budget covers runs whole on every thread instead of in two smaller tiles."""
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.budget import image_bytes

    probe = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch="auto")
    whole = probe.memory_model().patch_bytes(40, 40, 1)
    gib = (image_bytes(40, 40, 2, False) + 1.5 * whole) / 2**30  # one whole patch fits, two do not
    up = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch="auto", memory=gib, noise=0.1, seed=3)
    assert up.concurrency == 2
    shared = up.graph_plan(40, 40)
    assert len(shared.tiles) > 1 and shared.computed_pixels > 1.1 * 40 * 40  # two in flight would tile it
    plan, in_flight = up.alone_plan(40, 40)
    assert len(plan.tiles) == 1 and not in_flight
    assert up.plan(40, 40) == plan
    planes = np.random.default_rng(4).random((3, 40, 40), dtype=np.float32)
    reference = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2, streams=1), patch="auto", noise=0.1, seed=3)
    assert np.array_equal(up.upscale_planes(planes), reference.upscale_planes(planes))
    # a wider image: two tiles in flight cost 7.5% more pixels than the whole, so they run in flight
    whole = probe.memory_model().patch_bytes(60, 80, 1)
    gib = (image_bytes(60, 80, 2, False) + 1.5 * whole) / 2**30
    wide = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch="auto", memory=gib)
    # memory touched for free: the CPU cost model then takes the fewest pixels (see test_runtime_budget)
    wide._memory_model = dataclasses.replace(probe.memory_model(), touch_flops_per_byte=0.0)
    plan, in_flight = wide.alone_plan(60, 80)
    assert in_flight and plan == wide.graph_plan(60, 80) and plan.computed_pixels == 2 * 60 * 43
    # a fixed patch tiles the same either way: its tiles run in flight
    fixed = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch=(16, 16))
    assert fixed.alone_plan(60, 80) == (fixed.graph_plan(60, 80), True)
    one_stream = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2, streams=1), patch=(16, 16))
    assert one_stream.alone_plan(60, 80) == (one_stream.graph_plan(60, 80), False)


def test_items_stay_in_flight_unless_the_shared_budget_tiles_them_more(bundle, tmp_path):
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.budget import image_bytes
    from srexport.runtime.folder_run import run_images

    loose = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch="auto")
    assert loose.items_in_flight([(40, 40), (30, 50), None]) == 2
    assert loose.items_in_flight([(40, 40)]) == 1  # a lone image runs by itself, on every thread
    whole = loose.memory_model().patch_bytes(40, 40, 1)
    gib = (image_bytes(40, 40, 2, False) + 1.5 * whole) / 2**30  # one 40x40 item fits whole, two do not
    tight = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch="auto", memory=gib)
    assert tight.items_in_flight([(40, 40)] * 3) == 1
    assert tight.items_in_flight([None, None]) == 2  # sizes unknown: the streams
    assert "1 item at a time here" in tight.streams_note(1, 3) and "item at a time" not in tight.streams_note(2, 3)
    assert tight.streams_note(1, 1).endswith("; one image: every thread on it")
    assert Upscaler(bundle, OrtSession(bundle, "fp32", threads=2), patch=(16, 16)).items_in_flight([(40, 40)] * 2) == 2

    frames = _frames(3, sizes=((40, 40),))
    alone = Upscaler(bundle, OrtSession(bundle, "fp32", threads=2, streams=1), patch="auto", memory=gib)
    for frame, out in zip(frames, tight.upscale_frames(iter(frames)), strict=True):
        assert np.array_equal(out, alone.upscale(frame))
    src = tmp_path / "in"
    src.mkdir()
    inputs = []
    for k, frame in enumerate(frames):
        inputs.append(src / f"f{k}.png")
        Image.fromarray(frame).save(inputs[-1])
    import io

    from rich.console import Console

    shown = io.StringIO()
    assert run_images(bundle.root, inputs, tmp_path / "out", console=Console(file=shown, width=4000),
                      backend="onnxruntime", precision="fp32", threads=2, memory=gib) == 0
    assert "2 streams x 1 threads in flight (ONNX Runtime: 2 sessions of the graph); 1 item at a time here " \
           "(the memory budget shared by 2 would tile them more)" in shown.getvalue()
    for path in inputs:
        expected = alone.upscale(np.asarray(Image.open(path)))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / path.name)), expected)


def test_gpu_sessions_keep_the_plan_their_streams_share(bundle):
    """A GPU session's streams hold their buffers whatever runs, so its plans keep the
    budget shared by every stream (an ONNX Runtime CPU session marked as on a GPU stands in)."""
    from srexport.runtime.backends.onnxruntime import OrtSession
    from srexport.runtime.budget import image_bytes

    session = OrtSession(bundle, "fp32", threads=2)
    probe = Upscaler(bundle, session, patch="auto")
    gib = (image_bytes(40, 40, 2, False) + 1.5 * probe.memory_model().patch_bytes(40, 40, 1)) / 2**30
    up = Upscaler(bundle, session, patch="auto", memory=gib)
    assert up.alone_plan(40, 40)[0] != up.graph_plan(40, 40)  # on the CPU: one tile, every thread
    assert up.items_in_flight([(40, 40)] * 3) == 1
    session.device = "cuda"
    assert up.alone_plan(40, 40) == (up.graph_plan(40, 40), False)
    assert len(up.plan(40, 40).tiles) > 1
    assert up.items_in_flight([(40, 40)] * 3) == 2


def test_a_slow_first_image_does_not_idle_the_other_stream(tmp_path):
    """Results leave a folder run in order; the images behind a slow one must still be
    computed meanwhile (up to 4 per stream), not wait for it (with 2 streams the old bound
    of 4 items let the second stream finish only 3 images behind a large first one)."""
    import threading
    from types import SimpleNamespace

    from PIL import Image

    from srexport.runtime.folder_run import FOLDER_DEPTH_PER_STREAM, upscale_files
    from srexport.runtime.throughput import ordered_map

    inputs = []
    for k in range(10):
        inputs.append(tmp_path / f"{k}.png")
        Image.new("RGB", (4, 4), (k, k, k)).save(inputs[-1])
    others_done = threading.Semaphore(0)
    behind = 2 * FOLDER_DEPTH_PER_STREAM - 1  # what the slots leave for the images after the first

    def upscale_loaded(image, on_patch):
        if image.pixels[0, 0, 0] == 0:  # the first image waits until the others behind it are done
            for _ in range(behind):
                assert others_done.acquire(timeout=20), "the other stream stalled behind the first image"
        else:
            others_done.release()
        return image

    upscaler = SimpleNamespace(concurrency=2, upscale_loaded=upscale_loaded, items_in_flight=lambda sizes: 2,
                               in_flight=lambda items, work, depth=None, workers=None: ordered_map(items, work, 2, depth))
    done = [src.name for src, _, _ in upscale_files(upscaler, inputs, [tmp_path / f"o{k}.png" for k in range(10)],
                                                    lambda a, b: None)]
    assert done == [p.name for p in inputs]
    assert behind == 7
