"""Window blending of overlapping output patches into float32 canvases.

This module is the reference the CUDA blend kernel is checked against.
"""

from __future__ import annotations

import numpy as np

WINDOWS = ("hamming", "bartlett", "none", "triangular-authors")


def triangular_window(length: int) -> np.ndarray:
    """The MGBPv2 authors' block weight (their `run.py`): 1, 2, .., ceil(n/2), .., 2, 1 (a
    peak of two equal values for even n), divided by its mean; float64."""
    half = length // 2
    w = np.concatenate([np.arange(1, half + 1 + length % 2), np.arange(half, 0, -1)]).astype(np.float64)
    return w / w.mean()


def window_1d(kind: str, length: int) -> np.ndarray:
    """A window sampled at pixel centres, so it is positive at both ends."""
    if kind == "triangular-authors":
        return triangular_window(length).astype(np.float32)
    t = (np.arange(length, dtype=np.float64) + 0.5) / length
    if kind == "hamming":
        w = 0.54 - 0.46 * np.cos(2.0 * np.pi * t)
    elif kind == "bartlett":
        w = 1.0 - np.abs(2.0 * t - 1.0)
    elif kind == "none":
        w = np.ones(length)
    else:
        raise ValueError(f"unknown window '{kind}' (windows: {', '.join(WINDOWS)})")
    return w.astype(np.float32)


def window_2d(kind: str, height: int, width: int) -> np.ndarray:
    return np.outer(window_1d(kind, height), window_1d(kind, width))


class Blender:
    """Accumulates weighted patches and their weights; divides once at the end."""

    def __init__(self, channels: int, height: int, width: int, window: np.ndarray):
        self.canvas = np.zeros((channels, height, width), dtype=np.float32)
        self.weight = np.zeros((height, width), dtype=np.float32)
        self.window = window.astype(np.float32)

    def add(self, patch: np.ndarray, top: int, left: int) -> None:
        """Add one CxhxW patch whose top-left output pixel is (top, left)."""
        h, w = patch.shape[-2:]
        self.canvas[:, top : top + h, left : left + w] += patch * self.window
        self.weight[top : top + h, left : left + w] += self.window

    def result(self, top: int = 0, left: int = 0, height: int | None = None, width: int | None = None) -> np.ndarray:
        """canvas / weight over the requested region (CxHxW float32).

        Divides in place (an 8K canvas is 400 MB): call it once, after the last `add`.
        """
        height = self.weight.shape[0] - top if height is None else height
        width = self.weight.shape[1] - left if width is None else width
        region = (slice(top, top + height), slice(left, left + width))
        canvas = self.canvas[(slice(None), *region)]
        canvas /= self.weight[region]
        return canvas
