"""Which input pixels each pixel of a feature map reads: receptive fields derived from a
network's own layer geometry (for the manifest's halo), one dimension at a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Support:
    """Which (padded) LR input pixels a feature map's pixels read, in one dimension.

    The map lives on a grid `scale` times finer than the LR grid; its pixel
    i = scale * m + phase reads LR pixels m + lo[phase] .. m + hi[phase] (through any
    channel). Every layer is translation-equivariant, so this holds for every m.
    Borders (reflection, replicate or zero padding) only fold reads back inside or read
    nothing; they do not widen the interior receptive field. Where a network's padding
    and crop cancel (pad * scale = crop) they can be left out; otherwise `shift` tracks
    them as the index offsets they are.
    """

    scale: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    @staticmethod
    def identity() -> "Support":
        return Support(1, (0,), (0,))

    def radius(self) -> int:
        return max(max(-lo for lo in self.lo), max(self.hi))

    def reads(self, j: int) -> tuple[int, int]:
        m, phase = divmod(j, self.scale)
        return m + self.lo[phase], m + self.hi[phase]

    def __add__(self, other: "Support") -> "Support":
        assert self.scale == other.scale, "adding maps of different grids"
        return Support(
            self.scale,
            tuple(map(min, self.lo, other.lo)),
            tuple(map(max, self.hi, other.hi)),
        )

    def gather(self, out_scale: int, taps) -> "Support":
        """The support of a map whose pixel i reads this map's pixels `taps(i)`."""
        lo, hi = [], []
        for phase in range(out_scale):
            spans = [self.reads(j) for j in taps(phase)]
            lo.append(min(s[0] for s in spans))
            hi.append(max(s[1] for s in spans))
        return Support(out_scale, tuple(lo), tuple(hi))

    def conv(self, kernel: int, stride: int, padding: int) -> "Support":
        # y[i] reads x[stride * i - padding + t], t = 0 .. kernel - 1
        assert self.scale % stride == 0
        return self.gather(
            self.scale // stride, lambda i: [stride * i - padding + t for t in range(kernel)]
        )

    def conv_transpose(self, kernel: int, stride: int, padding: int) -> "Support":
        # y[stride * j - padding + t] += x[j] w[t]: y[i] reads x[(i + padding - t) / stride]
        return self.gather(
            self.scale * stride,
            lambda i: [(i + padding - t) // stride for t in range(kernel) if (i + padding - t) % stride == 0],
        )

    def shift(self, offset: int) -> "Support":
        """The support of y[i] = x[i + offset] (a crop by `offset`, or a pad by -offset)."""
        return self.conv(1, 1, -offset)
