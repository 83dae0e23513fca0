"""PyAV, imported once with a clear message where the `video` extra is not installed."""

from __future__ import annotations

from srexport.video.options import VideoError

try:
    import av
except ImportError:  # pragma: no cover - depends on the environment
    av = None


def require_av():
    """The `av` module, or a VideoError saying how to install it."""
    if av is None:
        raise VideoError("video needs PyAV: pip install 'sr-export[video]'")
    return av
