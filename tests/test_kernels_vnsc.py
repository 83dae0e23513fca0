"""VN+SC: the host twin of the fused CUDA kernel against the PyTorch reference module.

The twin runs the kernel's own code block by block (32x16 output tiles with their halos),
so images larger than one tile exercise the tile seams, and sizes that are not multiples
of the tile exercise the partial blocks at the borders.

Error measure: max |twin - reference| / max(max |reference|, 1), per case. V is a product
of normalised luminances, O(1) on textured images; the floor of 1 keeps flat images (V = 0
up to rounding in every implementation) from dividing by nothing.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from srexport.models.discriminator import VNSC, gaussian_kernel

if shutil.which("g++") is None and shutil.which("c++") is None:
    pytest.skip("no C++ compiler: the host twin library cannot be built", allow_module_level=True)

from srexport.kernels import host, launch  # noqa: E402

TOLERANCE = 1e-4


def rel_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got.astype(np.float64) - want).max() / max(np.abs(want).max(), 1.0))


@pytest.fixture(scope="module")
def references():
    return VNSC().eval(), VNSC().double().eval()


def _cases():
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 83).view(1, 1, 1, 83).expand(1, 3, 70, 83)
    return {
        "random 2x3x37x53": torch.rand(2, 3, 37, 53, generator=gen),
        "random 1x3x70x90 (tile seams)": torch.rand(1, 3, 70, 90, generator=gen),
        "bright low contrast (sky)": 0.85 + 0.004 * torch.rand(1, 3, 48, 64, generator=gen)
        + torch.linspace(0, 0.02, 64).view(1, 1, 1, 64),
        "smooth ramp plus noise": ramp + 0.01 * torch.rand(1, 3, 70, 83, generator=gen),
        "edges": (torch.rand(1, 3, 33, 47, generator=gen) > 0.5).float(),
        "flat": torch.full((1, 3, 20, 20), 0.7),
        "one pixel": torch.rand(1, 3, 1, 1, generator=gen),
        "thin strips": torch.rand(1, 3, 2, 40, generator=gen),
        "tall strip": torch.rand(1, 3, 50, 3, generator=gen),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_twin_matches_reference(name, references):
    reference, reference64 = references
    x = CASES[name]
    got = host.vnsc(x.numpy())
    with torch.no_grad():
        want = reference(x).numpy()
        want64 = reference64(x.double()).numpy()
    assert got.shape == want.shape == (x.shape[0], 49, *x.shape[2:])
    assert got.dtype == np.float32
    assert rel_error(got, want) <= TOLERANCE, rel_error(got, want)
    assert rel_error(got, want64) <= TOLERANCE, rel_error(got, want64)


def test_layout_of_the_49_channels():
    """Channel 7(p+3) + (q+3) at (i, j) is N(i, j) N(i+p, j+q), zero off the image."""
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(3))
    got = host.vnsc(x.numpy())[0]
    with torch.no_grad():
        centre = VNSC().eval().normalise(x)[0, 0].numpy()
    for p in range(-3, 4):
        for q in range(-3, 4):
            shifted = np.zeros_like(centre)
            src = centre[max(p, 0):9 + min(p, 0), max(q, 0):11 + min(q, 0)]
            shifted[max(-p, 0):max(-p, 0) + src.shape[0], max(-q, 0):max(-q, 0) + src.shape[1]] = src
            np.testing.assert_allclose(got[7 * (p + 3) + (q + 3)], centre * shifted, rtol=1e-4, atol=1e-5)


def test_batch_images_are_independent():
    x = torch.rand(3, 3, 21, 34, generator=torch.Generator().manual_seed(4)).numpy()
    batch = host.vnsc(x)
    for i in range(3):
        assert np.array_equal(batch[i], host.vnsc(x[i:i + 1])[0])


def test_float16_twin_is_the_float32_twin_rounded():
    """f16 storage, f32 math: the f16 kernel's output is the f32 kernel's on the same
    (half-rounded) input, rounded to half, bit for bit."""
    x = torch.rand(1, 3, 40, 45, generator=torch.Generator().manual_seed(5)).half().numpy()
    got16 = host.vnsc(x)
    got32 = host.vnsc(x.astype(np.float32))
    assert got16.dtype == np.float16
    assert np.array_equal(got16.view(np.uint16), got32.astype(np.float16).view(np.uint16))
    with torch.no_grad():
        want = VNSC().eval()(torch.from_numpy(x.astype(np.float32))).numpy()
    assert rel_error(got16.astype(np.float32), want) <= 2e-3  # half precision of the output


def test_gaussian_taps_are_the_reference_taps():
    assert np.array_equal(host.vnsc_taps(), gaussian_kernel()[0, 0].numpy())


def test_luminance_is_the_reference_luminance_bit_for_bit():
    x = torch.rand(1, 3, 17, 19, generator=torch.Generator().manual_seed(6))
    assert np.array_equal(host.luma(x[0].numpy()), VNSC.luminance(x)[0, 0].numpy())


def test_half_conversions_match_numpy_for_every_half():
    bits = np.arange(1 << 16, dtype=np.uint16)
    ours = host.half_to_float(bits)
    theirs = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(theirs)
    assert np.array_equal(np.isnan(ours), nan)
    assert np.array_equal(ours[~nan].view(np.uint32), theirs[~nan].view(np.uint32))


def test_float_to_half_rounds_like_numpy():
    rng = np.random.default_rng(7)
    values = np.concatenate([
        rng.normal(0, 1, 200_000).astype(np.float32),
        rng.normal(0, 1e-5, 100_000).astype(np.float32),  # subnormal halves
        (rng.random(100_000) * 70000).astype(np.float32),  # around the overflow threshold
        np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32),  # exact halves
        # ties: halfway between neighbouring halves
        ((np.arange(1, 2000, dtype=np.float64) + 0.5) * 2.0 ** -24).astype(np.float32),
        np.array([65504, 65519.99, 65520, 1e30, -1e30, np.inf, -np.inf, 0.0, -0.0, 2 ** -25, 2 ** -26], np.float32),
    ])
    values = values[~np.isnan(values)]
    ours = host.float_to_half(values)
    with np.errstate(over="ignore"):
        theirs = values.astype(np.float16).view(np.uint16)
    assert np.array_equal(ours, theirs)
    assert np.isnan(host.float_to_half(np.array([np.nan], np.float32)).view(np.float16)).all()


def test_bad_inputs_are_refused():
    with pytest.raises(launch.KernelArgumentError, match=r"\(N, 3, H, W\)"):
        host.vnsc(np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(launch.KernelArgumentError, match="dtype"):
        host.vnsc(np.zeros((1, 3, 8, 8), np.float64))
    with pytest.raises(launch.KernelArgumentError, match="empty"):
        host.vnsc(np.zeros((1, 3, 0, 8), np.float32))
