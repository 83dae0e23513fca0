"""Bringing arbitrary input sizes to the legal sizes of a graph."""

from __future__ import annotations

import numpy as np

from srexport.shapes import ShapeRules


def reflect_pad(array: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """Reflect-pad the last two axes; images thinner than the pad are reflected repeatedly."""
    width = [(0, 0)] * (array.ndim - 2) + [(top, bottom), (left, right)]
    return np.pad(array, width, mode="reflect" if min(array.shape[-2:]) > 1 else "edge")


def legal_box(height: int, width: int, rules: ShapeRules) -> tuple[int, int]:
    """The legal (height, width) at least as large as the given one."""
    return rules.legal_at_least(height), rules.legal_at_least(width)


def pad_to_legal(array: np.ndarray, rules: ShapeRules) -> np.ndarray:
    """Reflect-pad the bottom/right of an (..., H, W) array to the next legal size."""
    height, width = array.shape[-2:]
    legal_h, legal_w = legal_box(height, width, rules)
    if (legal_h, legal_w) == (height, width):
        return array
    return reflect_pad(array, 0, legal_h - height, 0, legal_w - width)
