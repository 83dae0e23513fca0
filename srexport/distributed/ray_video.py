"""`sr-export run BUNDLE in.mp4 -o out.mp4 --ray`: one video split at keyframes across
Ray workers, the encoded pieces joined by stream copy, the same packets as one process.

The driver reads the video stream's packets (timestamps and keyframe flags, no decoding)
and cuts the frames into chunks by the rule of `srexport.video.chunks`, which the
single-process run follows too: a chunk starts at an input keyframe and is encoded by a
fresh encoder. Consecutive chunks form segments, dealt out to actors that each hold one
loaded bundle. An actor seeks to its segment's first keyframe, decodes, keeps the frames
whose timestamps the driver listed (presentation order), upscales each with the noise seed
of its index in the whole video, and encodes chunk by chunk with the driver's encoder spec.
The driver muxes the segments' packets in order into the output (its header made by an
encoder opened with the same spec), interleaved with the audio, subtitle and data packets
it copies once from the input.

What is identical to `upscale_video` in one process: every video packet (bytes,
timestamps, keyframe flags), so the decoded frames too, and every copied packet; the tests
compare them for FFV1 and libx264. Where that holds: the encoder's output depends only on
its settings, its frames and its thread count (x264 uses one thread count per CPU count:
workers on machines with another CPU count encode differently, and the frames still decode
to the same pixels only for lossless codecs). The container bytes around the packets
(interleaving, muxer bookkeeping) are not promised.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from srexport.errors import SrExportError
from srexport.video.options import VideoError, VideoOptions

SEGMENTS_PER_WORKER = 3  # enough to keep every worker busy while the driver muxes in order
ACTOR_START_TIMEOUT_S = 600
_POLL_S = 0.2


@dataclass(frozen=True)
class Segment:
    """Consecutive chunks for one worker: its frames' input timestamps, in presentation order."""

    seq: int
    first: int  # presentation index (in the whole input) of its first frame
    pts: tuple[int, ...]
    chunk_starts: tuple[int, ...]  # presentation indices where a fresh encoder starts
    shift: int  # subtracted from timestamps (a --frames range starting after frame 0)


@dataclass
class SegmentResult:
    seq: int
    packets: list = field(default_factory=list)  # EncodedPacket
    frames: int = 0
    error: str = ""
    worker: int = 0


@dataclass(frozen=True)
class RayVideoReport:
    """What a Ray video run did."""

    video: object  # VideoResult
    workers: int
    segments: int
    segments_by_worker: dict[int, int]
    note: str = ""


def plan_segments(pts: tuple[int, ...], starts: list[int], stop: int, workers: int, shift: int) -> list[Segment]:
    """Chunks [starts[i], starts[i+1]) grouped into about SEGMENTS_PER_WORKER segments per
    worker of similar frame counts (a segment ends only where a chunk does)."""
    if not starts:
        return []
    bounds = list(starts) + [stop]
    target = max(1, math.ceil((stop - starts[0]) / (workers * SEGMENTS_PER_WORKER)))
    segments: list[Segment] = []
    group: list[int] = []
    for i, begin in enumerate(starts):
        group.append(begin)
        end = bounds[i + 1]
        if end - group[0] >= target or end == stop:
            segments.append(Segment(len(segments), group[0], tuple(pts[group[0]:end]), tuple(group), shift))
            group = []
    return segments


def _decoded(path: str, stream_index: int, segment: Segment):
    """(index, frame) for the segment's frames, decoded from its first keyframe on."""
    from srexport.video.avlib import av

    container = av.open(path, "r")
    try:
        stream = container.streams[stream_index]
        container.seek(segment.pts[0], stream=stream, backward=True, any_frame=False)
        got = 0
        wanted = set(segment.pts)
        for packet in container.demux(stream):
            for frame in stream.decode(packet):
                if frame.pts not in wanted:
                    continue
                if frame.pts != segment.pts[got]:
                    raise VideoError(f"{path}: after seeking to the keyframe at {segment.pts[0]}, the frame at "
                                     f"{segment.pts[got]} does not decode; it cannot be split (run without --ray)")
                yield segment.first + got, frame
                got += 1
                if got == len(segment.pts):
                    return
        raise VideoError(f"{path}: damaged or truncated: {got} of the {len(segment.pts)} frames from "
                         f"{segment.first} on decode")
    finally:
        container.close()


class _SegmentWorker:
    """Holds one loaded bundle; decodes, upscales and encodes whole segments."""

    def __init__(self, job, src: str, probe, spec, static_noise: bool, depth: int):
        from srexport.distributed.ray_run import _message

        self.src, self.probe, self.spec, self.static, self.depth = src, probe, spec, static_noise, depth
        self.failure = self.note = ""
        try:
            self.upscaler = job.load()
            self.note = job.describe(self.upscaler.for_frames())
        except Exception as exc:  # reported once by the driver, as one line
            self.upscaler = None
            self.failure = _message(job.bundle, exc)

    def ready(self) -> tuple[str, str]:
        return self.failure, self.note

    def run(self, segment: Segment) -> SegmentResult:
        from srexport.video.avlib import av
        from srexport.video.colour import from_rgb, to_rgb
        from srexport.video.encode import ChunkEncoder, EncodedPacket
        from srexport.video.pipeline import pipelined
        from srexport.video.seeds import upscale_frame

        result = SegmentResult(segment.seq, worker=os.getpid())
        colour = self.probe.colour

        def frames():
            for index, frame in _decoded(self.src, self.probe.index, segment):
                yield index, frame.pts, frame.duration or None, to_rgb(frame, colour)

        def work(item):
            index, pts, duration, rgb = item
            return index, pts, duration, upscale_frame(self.upscaler, index, rgb, self.static)

        chunks = ChunkEncoder(self.spec)
        starts = set(segment.chunk_starts)
        try:
            with closing(pipelined(frames(), work, self.depth)) as results:
                for index, pts, duration, rgb in results:
                    if index in starts:
                        result.packets += [EncodedPacket.of(p) for p in chunks.flush()]
                    frame = from_rgb(rgb, self.spec.pix_fmt, colour)
                    frame.pts = pts - segment.shift
                    if duration:
                        frame.duration = duration
                    frame.time_base = self.spec.time_base
                    result.packets += [EncodedPacket.of(p) for p in chunks.encode(frame)]
                    result.frames += 1
            result.packets += [EncodedPacket.of(p) for p in chunks.flush()]
        except (av.FFmpegError, ValueError) as exc:
            result.error, result.packets = f"{self.src}: damaged or undecodable video ({exc})", []
        except SrExportError as exc:
            result.error, result.packets = " ".join(str(exc).split()), []
        except Exception as exc:
            result.error, result.packets = f"{self.src}: {type(exc).__name__}: {exc}", []
        return result


class _Copied:
    """The input's copied packets in file order, kept or dropped as `demux` does for a range."""

    def __init__(self, source, streams: list, start, end, shift: bool):
        self.packets = source.demux(*streams) if streams else iter(())
        self.start, self.end, self.shift = start, end, shift
        self.pending = None

    def _time(self, packet):
        from fractions import Fraction

        return packet.pts * Fraction(packet.time_base)

    def until(self, limit):
        """Kept packets before `limit` seconds (None: all that remain)."""
        while True:
            packet = self.pending
            self.pending = None
            if packet is None:
                packet = next(self.packets, None)
                if packet is None:
                    return
                if packet.size == 0 or (packet.pts is None and packet.dts is None):
                    continue
                if packet.pts is None:
                    packet.pts = packet.dts
            at = self._time(packet)
            if limit is not None and at >= limit:
                self.pending = packet
                return
            if (self.shift and at < self.start) or (self.end is not None and at >= self.end):
                continue
            if self.shift:
                offset = round(self.start / packet.time_base)
                packet.pts -= offset
                if packet.dts is not None:
                    packet.dts -= offset
            yield packet


def ray_upscale_video(
    bundle: str | Path,
    src: str | Path,
    dst: str | Path,
    options: VideoOptions | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    backend: str = "auto",
    precision: str = "auto",
    progress: Callable[[int, "int | None"], None] | None = None,
    warn: Callable[[str], None] = print,
    on_ready: Callable[[int, str], None] | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float | None = None,
    **upscaler_options,
) -> RayVideoReport:
    """Upscale `src` into `dst` on Ray workers; the video packets equal `upscale_video`'s.

    Keywords as `srexport.distributed.ray_run.run_images_ray` (address, workers, sizes of the
    actors, `srexport.load`'s options). A first SIGINT/SIGTERM stops dealing out segments
    and keeps a playable file of the segments finished in order (`VideoInterrupted`); a
    second stops at once, leaving nothing. The input must be readable at the same path on
    every node; the output is written by the driver."""
    from srexport.distributed.ray_run import (
        LoadOptions, _cluster_plan, check_request, driver_job, import_ray, ray_session,
    )
    from srexport.video.chunks import chunk_starts, min_chunk_frames, scan_video
    from srexport.video.decode import check_complete, open_input
    from srexport.video.encode import Encoder
    from srexport.video.job import check_paths, output_size, stop_on_signals, temporary_beside

    options = options or VideoOptions()
    load_options = LoadOptions.from_keywords(upscaler_options)
    check_request(workers, cpus_per_worker, backend)
    src, dst = check_paths(src, dst)
    import_ray()
    job = driver_job(bundle, backend, precision, load_options, repeating=True)
    planner = job.planner()

    source, probe = open_input(src)
    tmp: Path | None = None
    encoder = None
    try:
        min_frames = min_chunk_frames(options.chunk_frames, probe.rate)
        if min_frames == 0:
            raise VideoError("--ray cuts the video where the encoder restarts: chunk frames 0 (never) cannot be split")
        scan = scan_video(src, probe.index)
        check_complete(probe, len(scan.pts), scan.end)  # as decoding the whole file would
        starts = chunk_starts(scan, options.frames, min_frames)
        if not starts:
            raise VideoError(f"{src}: no frames" + (" in the --frames range" if options.frames.start else ""))
        stop = len(scan.pts) if options.frames.stop is None else min(options.frames.stop, len(scan.pts))
        first_at = scan.pts[starts[0]] * probe.time_base
        shift = options.frames.start > 0
        size = output_size(planner, probe)
        tmp = temporary_beside(dst)
        encoder = Encoder(tmp, source, probe, options, size, size[0] // probe.width, warn)
        with ray_session(address) as ray:
            workers, gpus = _cluster_plan(ray, workers, cpus_per_worker, gpus_per_worker)
            job = job.sized(cpus_per_worker, gpus)
            segments = plan_segments(scan.pts, starts, stop, workers,
                                     round(first_at / probe.time_base) if shift else 0)
            end_at = scan.pts[stop] * probe.time_base if stop < len(scan.pts) else None
            copied = _Copied(source, [source.streams[i] for i in encoder.copies], first_at, end_at, shift)
            report = _execute(ray, job, str(src), probe, encoder, options, segments, copied, workers,
                              cpus_per_worker, gpus, progress, on_ready, stop - starts[0])
        video = report.video
        with stop_on_signals():  # a first signal now still lets the file be finished
            try:
                encoder.close()
            except Exception as exc:
                raise VideoError(f"{dst}: cannot finish the file ({exc})") from None
            os.replace(tmp, dst)
            tmp = None
        from srexport.video.job import VideoInterrupted, VideoResult

        video = VideoResult(dst, encoder.frames, encoder.choice.codec, encoder.choice.pix_fmt, size,
                            len(encoder.copies), video.interrupted)
        report = RayVideoReport(video, report.workers, report.segments, report.segments_by_worker, report.note)
        if video.interrupted:
            raise VideoInterrupted(video)
        return report
    except BaseException:
        if encoder is not None and tmp is not None:
            encoder.abandon()
        raise
    finally:
        source.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()


def _execute(ray, job, src: str, probe, encoder, options: VideoOptions, segments: list[Segment], copied: _Copied,
             workers: int, cpus_per_worker: float, gpus: float, progress, on_ready, total: int):
    """Deal segments out, mux them in order; returns a report whose `video` says whether a
    signal stopped it (the encoder then holds the finished prefix)."""
    from srexport.distributed.ray_run import _root_cause_error
    from srexport.video.job import VideoResult, stop_on_signals

    remote = ray.remote(num_cpus=cpus_per_worker, num_gpus=gpus or 0, max_restarts=0)(_SegmentWorker)
    actors = [remote.remote(job, src, probe, encoder.spec, options.static_noise, options.depth)
              for _ in range(workers)]
    by_worker: dict[int, int] = {}
    interrupted = False
    note = ""
    try:
        with stop_on_signals() as stop:  # after ray.init, which installs handlers of its own
            refs = [a.ready.remote() for a in actors]
            deadline = time.monotonic() + ACTOR_START_TIMEOUT_S
            while len(ray.wait(refs, num_returns=len(refs), timeout=_POLL_S)[0]) < len(refs):
                if stop.is_set():
                    raise KeyboardInterrupt
                if time.monotonic() > deadline:
                    raise SrExportError(f"{workers} Ray workers did not start within {ACTOR_START_TIMEOUT_S} s: "
                                        f"the cluster lacks the CPUs/GPUs they ask for, or cannot import sr-export")
            for failure, line in ray.get(refs):
                if failure:
                    raise SrExportError(f"a Ray worker could not open the bundle: {failure}")
                note = note or line
            if on_ready:
                on_ready(workers, note)
            todo = list(segments)
            pending: dict = {}  # object ref -> actor
            idle = list(actors)
            done: dict[int, SegmentResult] = {}
            next_seq = 0
            while next_seq < len(segments):
                if stop.is_set():
                    interrupted = True
                    break
                while idle and todo and len(done) < 2 * workers:
                    actor = idle.pop()
                    pending[actor.run.remote(todo.pop(0))] = actor
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
                for ref in ready:
                    idle.append(pending.pop(ref))
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayActorError as exc:
                        raise SrExportError(f"a Ray worker died while upscaling {src}: "
                                            f"{' '.join(str(exc).split())[:200]}") from None
                    except Exception as exc:
                        cause = _root_cause_error(exc)
                        if cause is not None:
                            raise cause from None
                        raise
                    if result.error:
                        raise VideoError(result.error)
                    done[result.seq] = result
                while next_seq in done:
                    result = done.pop(next_seq)
                    segment = segments[next_seq]
                    if result.frames != len(segment.pts):
                        raise VideoError(f"{src}: a segment gave {result.frames} of {len(segment.pts)} frames")
                    encoder.mux_encoded(result.packets, result.frames)
                    by_worker[result.worker] = by_worker.get(result.worker, 0) + 1
                    next_seq += 1
                    following = segments[next_seq].pts[0] * probe.time_base if next_seq < len(segments) else None
                    for packet in copied.until(following):
                        encoder.copy(packet)
                    if progress:
                        progress(encoder.frames, total)
            if encoder.frames == 0 and interrupted:
                raise KeyboardInterrupt
    finally:
        for actor in actors:
            ray.kill(actor)
    result = VideoResult(Path(src), encoder.frames, encoder.choice.codec, encoder.choice.pix_fmt, (0, 0), 0,
                         interrupted)
    return RayVideoReport(result, workers, len(segments), by_worker, note)
