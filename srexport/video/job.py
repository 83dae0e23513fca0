"""One video in, one video out: decode, upscale and encode overlapped, in bounded memory.

Decoding (with the conversion to float RGB) runs on a reader thread, inference on a
worker thread and encoding plus muxing on the calling thread, with `options.depth` frames
queued between each. The encoder restarts at the chunk starts of `srexport.video.chunks`
(input keyframes, 2 s apart at least), which is what lets `--ray` split the same video. The output is written under a hidden temporary name beside `dst` and
renamed when complete. An error removes it. SIGINT or SIGTERM (when called on the main
thread) finishes the frame being encoded, flushes the encoder, closes the file (a complete,
playable video holding the frames done so far), renames it to `dst` and raises
`VideoInterrupted`; a second signal stops at once and removes the file.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from srexport.video.avlib import av, require_av
from srexport.video.chunks import chunk_starts, min_chunk_frames, scan_video
from srexport.video.decode import PacketItem, Probe, VideoItem, demux, open_input
from srexport.video.encode import Encoder
from srexport.video.options import VIDEO_SUFFIXES, VideoError, VideoOptions, is_video
from srexport.video.pipeline import pipelined
from srexport.video.seeds import upscale_frame

FrameProgress = Callable[[int, "int | None"], None]


class VideoInterrupted(KeyboardInterrupt):
    """Stopped by a signal; `result` describes the playable file that was kept."""

    def __init__(self, result: "VideoResult"):
        super().__init__(f"interrupted: {result.path} holds the first {result.frames} frames")
        self.result = result


@dataclass(frozen=True)
class VideoResult:
    path: Path
    frames: int
    codec: str
    pix_fmt: str
    size: tuple[int, int]
    copied_streams: int
    interrupted: bool = False


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM; the second raises KeyboardInterrupt."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _temporary_beside(dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}", dir=dst.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would outlive the rename
    return Path(tmp)


def output_size(upscaler, probe: Probe) -> tuple[int, int]:
    """What `upscale_planes` returns for a frame: the graph's output scale, after the
    bicubic pre-upscale for networks that take upscaled input (BPP, MGBPv2)."""
    s = upscaler.output_scale
    if upscaler.bundle.manifest.input_kind == "upscaled":
        s *= upscaler.scale
    return probe.width * s, probe.height * s


def check_paths(src: str | Path, dst: str | Path) -> tuple[Path, Path]:
    """(src, dst) as paths, or a VideoError for an output that is no video or is the input."""
    require_av()
    src, dst = Path(src), Path(dst)
    if not is_video(dst):
        raise VideoError(f"output {dst} must be a video file ({', '.join(VIDEO_SUFFIXES[:6])}, ...)")
    if src.resolve() == dst.resolve():
        raise VideoError(f"output {dst} would overwrite the input")
    return src, dst


def temporary_beside(dst: Path) -> Path:
    """A hidden temporary file beside `dst` with the usual file mode, renamed when complete."""
    return _temporary_beside(dst)


def stop_on_signals():
    """An event set by the first SIGINT/SIGTERM (the second raises KeyboardInterrupt)."""
    return _stop_on_signals()


def upscale_video(upscaler, src: str | Path, dst: str | Path, options: VideoOptions | None = None,
                  progress: FrameProgress | None = None, warn: Callable[[str], None] = print,
                  on_probe: Callable[[Probe], None] | None = None) -> VideoResult:
    """Upscale every frame of `src` (or `options.frames`) into `dst`, copying the other streams."""
    options = options or VideoOptions()
    src, dst = check_paths(src, dst)
    source, probe = open_input(src)
    tmp: Path | None = None
    try:
        if on_probe:
            on_probe(probe)
        tmp = _temporary_beside(dst)
        size = output_size(upscaler, probe)
        encoder = Encoder(tmp, source, probe, options, size, size[0] // probe.width, warn)
        result = _stream(upscaler, source, probe, encoder, options, progress, tmp, dst, restarts(src, probe, options))
        tmp = None
        if result.interrupted:
            raise VideoInterrupted(result)
        return result
    finally:
        source.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()


def restarts(src: Path, probe: Probe, options: VideoOptions) -> set[int]:
    """Frame indices where the encoder starts a new chunk (srexport.video.chunks), the
    first chunk's excepted. A stream that cannot be cut (damaged, untimed) is one chunk:
    decoding says what is wrong with it."""
    min_frames = min_chunk_frames(options.chunk_frames, probe.rate)
    if not min_frames:
        return set()
    try:
        scan = scan_video(src, probe.index)
    except VideoError:
        return set()
    return set(chunk_starts(scan, options.frames, min_frames)[1:])


def _stream(upscaler, source, probe: Probe, encoder: Encoder, options: VideoOptions, progress, tmp: Path,
            dst: Path, chunk_starts_at: set[int]) -> VideoResult:
    def work(item):
        if isinstance(item, VideoItem):
            item.rgb = upscale_frame(upscaler, item.index, item.rgb, options.static_noise)
        return item

    total = probe.frames
    if total is not None:
        total = max(0, min(total, options.frames.stop or total) - options.frames.start)
    with _stop_on_signals() as stop:
        items = demux(source, probe, options.frames, set(encoder.copies))
        try:
            with closing(pipelined(items, work, options.depth)) as results:
                for item in results:
                    if isinstance(item, PacketItem):
                        encoder.copy(item.packet)
                        continue
                    if item.index in chunk_starts_at:
                        encoder.restart()
                    encoder.write(item.rgb, item.pts, item.duration)
                    if progress:
                        progress(encoder.frames, total)
                    if stop.is_set():
                        break
        except (av.FFmpegError, ValueError) as exc:
            encoder.abandon()
            raise VideoError(f"{probe.path}: damaged or undecodable video ({exc})") from None
        except BaseException:
            encoder.abandon()
            raise
        finally:
            items.close()  # on this thread, before the input container closes
        if encoder.frames == 0:
            encoder.abandon()
            if stop.is_set():
                raise KeyboardInterrupt
            raise VideoError(f"{probe.path}: no frames decoded" + (" in the --frames range" if options.frames.start else ""))
        # A first signal from here on still lets the file be finished.
        try:
            encoder.close()
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{dst}: cannot finish the file ({exc})") from None
        os.replace(tmp, dst)
        interrupted = stop.is_set()
    return VideoResult(dst, encoder.frames, encoder.choice.codec, encoder.choice.pix_fmt,
                       output_size(upscaler, probe), len(encoder.copies), interrupted)
