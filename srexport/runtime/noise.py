"""Tile-consistent noise fields.

A noise field is a function of (seed, noise input, row, column) in the coordinates of
the whole image, computed with the counter-based Philox4x32-10 generator and a
Box-Muller transform. Every tile therefore crops the same field whatever the patch
size, overlap or padding, the field never has to be held in memory at once, and a
C/C++ runtime can reproduce it bit for bit from the same integer arithmetic.
"""

from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_OFFSET = 1 << 31  # maps signed coordinates (padding above/left of the image) to uint32


def philox4x32(counter: tuple[np.ndarray, ...], key: tuple[int, int], rounds: int = 10) -> tuple[np.ndarray, ...]:
    """Philox4x32 on arrays of uint32 counters (Salmon et al., SC'11)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint32) for c in counter)
    k0, k1 = np.uint32(key[0]), np.uint32(key[1])
    for _ in range(rounds):
        p0 = _M0 * c0.astype(np.uint64)
        p1 = _M1 * c2.astype(np.uint64)
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & _MASK).astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & _MASK).astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        with np.errstate(over="ignore"):
            k0, k1 = k0 + _W0, k1 + _W1
    return c0, c1, c2, c3


def normal_field(seed: int, stream: int, top: int, left: int, height: int, width: int) -> np.ndarray:
    """N(0, 1) samples of field `stream` on rows [top, top+height) and columns
    [left, left+width) of the whole-image grid (coordinates may be negative)."""
    rows = (np.arange(top, top + height, dtype=np.int64) + _OFFSET).astype(np.uint32)
    cols = (np.arange(left, left + width, dtype=np.int64) + _OFFSET).astype(np.uint32)
    c0 = np.broadcast_to(cols[None, :], (height, width))
    c1 = np.broadcast_to(rows[:, None], (height, width))
    c2 = np.full((height, width), stream, dtype=np.uint32)
    c3 = np.zeros((height, width), dtype=np.uint32)
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    x0, x1, _, _ = philox4x32((c0, c1, c2, c3), key)
    u1 = (x0.astype(np.float64) + 0.5) * 2.0**-32
    u2 = (x1.astype(np.float64) + 0.5) * 2.0**-32
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)
