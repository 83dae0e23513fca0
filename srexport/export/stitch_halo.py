"""The stitching halo: how far from an output pixel the input still changes it, measured.

A network's receptive field (`ShapeRules.halo`, from its layers' geometry) bounds the input
pixels that can reach an output pixel; trained weights usually make the far ones irrelevant
long before it. G-MGBP BOE-R1 x4 has a geometric halo of 85 LR pixels, but the input pixels
more than 29 pixels away from an output pixel move it by less than 1e-7 in all (float32
rounding of a [0, 1] output is 6e-8). Crop stitching needs tiles that overlap by twice the
halo, so stitching with the measured one instead of the geometric one computes far fewer
pixels for the same output to float rounding.

The measurement, at build time, on the network in PyTorch: for `TRIALS` random inputs of
`edge` x `edge` pixels, back-propagate a random +-1 weighting of the outputs of the centre
pixel (every channel and sub-pixel) to the input and sum |gradient| over the channels:
`tail(r)` is the sum over the input pixels farther than r (Chebyshev) from the centre, a
first-order bound on how much those pixels, moved anywhere within [0, 1], move the
weighted output. The stitching halo is the smallest r with `tail(r) <= TAIL_BOUND` on every
trial, plus `MARGIN`, when that lies within the window with room to spare (else none is
recorded and stitching keeps the geometric halo). It is a measurement, not a proof: the
bound is first-order and taken at a few inputs, which is why the runtime's tests compare
tiled and whole outputs of the published checkpoints on real pictures.

Only builds from a checkpoint measure it (randomly initialised weights have no reason to
decay), only for networks with a finite halo, and only where the window's forward pass
costs at most `MAX_GFLOP` by the graph's FLOP count (the larger MGBP and MGBPv2 variants
keep their geometric halo; what a build decides never depends on timing). The published
checkpoints measured: G-MGBP BOE-R1 33, R2 29, R3 33 px (of 85); PCARN-M and PCARN-M-L1
come within the margin of their 21 px (none recorded); MGBP NTIRE-2018 tracks 2 and 4 (128 px) do not decay within the
window, track 3 (1,159 px) neither, and track 1's FLOPs cannot be counted (no measurement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from srexport.shapes import StitchHalo

TAIL_BOUND = 1e-7
MARGIN = 4
TRIALS = 2
MAX_EDGE = 97  # the measurement window's edge in input pixels (odd: a centre pixel)
MAX_GFLOP = 150.0  # forward pass on the window; G-MGBP x4 at 97x97 is about 115
SEED = 20261202


def window_edge(halo: int) -> int:
    """The measurement window: the whole receptive field where it fits, else MAX_EDGE."""
    return min(2 * halo + 1, MAX_EDGE)


def tails(model, edge: int, rng: np.random.Generator) -> np.ndarray:
    """tail(r) for r = 0 .. edge // 2 on one random input (float64 sums of the gradient)."""
    import torch

    image = torch.from_numpy(rng.random((1, 3, edge, edge), dtype=np.float32)).requires_grad_(True)
    inputs = model.example_inputs(1, edge, edge)
    noise = [torch.zeros_like(t) for t in inputs[1:]]
    with torch.enable_grad():
        out = model(image, *noise)
        s = out.shape[-1] // edge
        c = edge // 2
        block = out[0, :, c * s:(c + 1) * s, c * s:(c + 1) * s]
        weights = torch.from_numpy(rng.choice(np.array([-1.0, 1.0], np.float32), size=tuple(block.shape)))
        # the input's gradient only: no weight gradients are computed
        (grad,) = torch.autograd.grad((block * weights).sum(), [image])
    grad = grad[0].abs().sum(0).numpy().astype(np.float64)
    yy, xx = np.mgrid[0:edge, 0:edge]
    ring = np.maximum(np.abs(yy - c), np.abs(xx - c))
    per_ring = np.bincount(ring.ravel(), weights=grad.ravel(), minlength=c + 1)
    # tail(r): the pixels of rings r + 1, r + 2, ...
    return np.concatenate([np.cumsum(per_ring[::-1])[::-1][1:], [0.0]])


def window_gflop(graph: Path, model, edge: int) -> float | None:
    """GFLOP of one forward pass of the exported graph on the measurement window; None where
    the count cannot resolve the graph's shapes (MGBP track 1 computes its crops from Shape
    nodes), which leaves the cost unknown and the halo unmeasured."""
    from srexport.export.onnx_export import input_names
    from srexport.profiling.flops import FlopCountError, count_flops

    shapes = {name: tuple(t.shape) for name, t in zip(input_names(model), model.example_inputs(1, edge, edge))}
    try:
        return count_flops(graph, shapes).flops / 1e9
    except FlopCountError:
        return None


def measure(model, graph: Path) -> StitchHalo | None:
    """The stitching halo of `model` (an SRModel with trained weights, exported to `graph`),
    or None where it is not measured or does not decay within the window."""
    rules = model.shape_rules()
    halo = rules.halo
    if halo is None or halo <= MARGIN:
        return None
    edge = rules.legal_at_least(window_edge(halo))
    cost = window_gflop(graph, model, edge)
    if cost is None or cost > MAX_GFLOP:
        return None
    rng = np.random.default_rng(SEED)
    found = 0
    all_tails = [tails(model, edge, rng) for _ in range(TRIALS)]
    for tail in all_tails:
        below = np.nonzero(tail <= TAIL_BOUND)[0]
        if below.size == 0:
            return None
        found = max(found, int(below[0]))
    pixels = found + MARGIN
    if pixels >= halo or pixels > edge // 2 - MARGIN:
        return None  # no smaller than the geometric halo, or too close to the window's edge
    bounds = [float(t[found]) for t in all_tails]
    return StitchHalo(pixels=pixels, geometric=halo, tail_bound=TAIL_BOUND, margin=MARGIN, window=edge,
                      trials=TRIALS, tails=bounds)
