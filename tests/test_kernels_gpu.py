"""The real CUDA kernels, launched through cuda-python, against their host twins.

The twins run the kernels' own code and schedule with the same IEEE operations, so the
device results must equal them bit for bit (blending, finalisation and VN+SC alike). Every
test here needs an NVIDIA GPU with its driver and cuda-python; elsewhere they are skipped
with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest

from srexport.kernels import cuda, launch
from srexport.runtime.blend import Blender, window_1d, window_2d
from srexport.runtime.tiler import axis_starts

OK, REASON = cuda.cuda_status()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not OK, reason=f"no usable GPU: {REASON}")]

if OK:
    from srexport.kernels import host


@pytest.fixture(scope="module")
def k():
    return cuda.kernels()


@pytest.fixture(params=["default", "nvrtc"])
def kernels_from(request, monkeypatch):
    """The kernels loaded from the nvcc fatbin (when nvcc is here) and from NVRTC."""
    if request.param == "nvrtc":
        try:
            cuda.nvrtc_version()
        except Exception as exc:
            pytest.skip(f"NVRTC unavailable: {exc}")
        return cuda.Kernels(source="nvrtc")
    return cuda.kernels()


class Device:
    """Device copies of host arrays, freed at the end of a test."""

    def __init__(self, k):
        self.k, self.ptrs = k, []

    def put(self, array):
        ptr = self.k.upload(np.ascontiguousarray(array))
        self.ptrs.append(ptr)
        return ptr

    def empty(self, nbytes):
        ptr = self.k.alloc(nbytes)
        self.ptrs.append(ptr)
        return ptr

    def free(self):
        for ptr in self.ptrs:
            self.k.free(ptr)


@pytest.fixture
def dev(kernels_from):
    d = Device(kernels_from)
    yield d
    d.free()


def _tiles(height, width, ph, pw, overlap):
    return [(t, l) for t in axis_starts(height, ph, overlap) for l in axis_starts(width, pw, overlap)]


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("height,width,ph,pw,overlap,batch", [
    (100, 130, 32, 48, 8, 4),
    (97, 61, 24, 24, 23, 200),  # heavy overlap
    (40, 300, 40, 64, 63, 1100),  # more than one launch per batch
])
def test_blend_accumulate_equals_the_twin_bit_for_bit(dev, dtype, height, width, ph, pw, overlap, batch):
    k = dev.k
    rng = np.random.default_rng(height)
    offsets = _tiles(height, width, ph, pw, overlap)
    offsets = [(t - 5, l - 7) for t, l in offsets]  # and partial tiles over the top/left edges
    patches = rng.normal(0.5, 0.4, (len(offsets), 3, ph, pw)).astype(dtype)
    wy, wx = window_1d("hamming", ph), window_1d("hamming", pw)
    twin = host.HostBlender(3, height, width, wy, wx)
    canvas = dev.put(np.zeros((3, height, width), np.float32))
    weight = dev.put(np.zeros((height, width), np.float32))
    d_wy, d_wx = dev.put(wy), dev.put(wx)
    for start in range(0, len(offsets), batch):
        chunk = patches[start:start + batch]
        twin.add_batch(chunk, offsets[start:start + batch])
        d_patches = dev.put(chunk)
        k.blend_accumulate(d_patches, offsets[start:start + batch], len(chunk), 3, ph, pw, canvas, weight, height,
                           width, d_wy, d_wx, dtype=dtype)
    got_canvas = k.download(canvas, (3, height, width), np.float32)
    got_weight = k.download(weight, (height, width), np.float32)
    assert np.array_equal(got_weight, twin.weight)
    assert np.array_equal(got_canvas, twin.canvas)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_blend_finalize_equals_the_twin_bit_for_bit(dev, dtype):
    k = dev.k
    rng = np.random.default_rng(1)
    weight = rng.uniform(0.05, 3.0, (45, 67)).astype(np.float32)
    canvas = (rng.uniform(-0.2, 1.2, (3, 45, 67)) * weight).astype(np.float32)
    want = host.blend_finalize(canvas, weight, 4, 6, 33, 50, dtype=dtype)
    out = dev.empty(want.nbytes)
    k.blend_finalize(dev.put(canvas), dev.put(weight), 3, 45, 67, out, 4, 6, 33, 50, dtype=dtype)
    assert np.array_equal(k.download(out, want.shape, dtype), want)


def test_gpu_blender_equals_the_cpu_blender(k):
    rng = np.random.default_rng(2)
    height, width, ph, pw = 130, 170, 48, 64
    offsets = _tiles(height, width, ph, pw, 16)
    patches = rng.random((len(offsets), 3, ph, pw), dtype=np.float32)
    reference = Blender(3, height, width, window_2d("hamming", ph, pw))
    for (t, l), p in zip(offsets, patches):
        reference.add(p, t, l)
    with cuda.GpuBlender(3, height, width, window_1d("hamming", ph), window_1d("hamming", pw)) as blender:
        d_patches = k.upload(patches)
        try:
            blender.add_batch(d_patches, offsets)
        finally:
            k.free(d_patches)
        result = blender.download(8, 8, 114, 154, dtype=np.float32)
        u8 = blender.download(8, 8, 114, 154, dtype=np.uint8)
    want = reference.result(8, 8, 114, 154).transpose(1, 2, 0)
    assert np.array_equal(result, want)
    assert np.array_equal(u8, np.rint(np.clip(want, 0, 1) * np.float32(255)).astype(np.uint8))


@pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 3, 70, 90), (1, 3, 1, 1), (3, 3, 16, 32)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_vnsc_equals_the_twin_bit_for_bit(dev, shape, dtype):
    k = dev.k
    rng = np.random.default_rng(sum(shape))
    rgb = rng.random(shape).astype(dtype)
    want = host.vnsc(rgb)
    out = dev.empty(want.nbytes)
    n, _, h, w = shape
    k.vnsc(dev.put(rgb), out, n, h, w, dtype=dtype)
    got = k.download(out, want.shape, dtype)
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


def test_vnsc_matches_the_reference_module(k):
    import torch

    from srexport.models.discriminator import VNSC

    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    d_in = k.upload(x.numpy())
    d_out = k.alloc(2 * 49 * 64 * 96 * 4)
    try:
        k.vnsc(d_in, d_out, 2, 64, 96)
        got = k.download(d_out, (2, 49, 64, 96), np.float32)
    finally:
        k.free(d_in)
        k.free(d_out)
    with torch.no_grad():
        want = VNSC().eval()(x).numpy()
    assert np.abs(got - want).max() / max(np.abs(want).max(), 1.0) <= 1e-4


def test_launches_on_a_stream(k):
    drv = cuda._driver()
    stream = cuda._check(drv.cuStreamCreate(0))
    try:
        rgb = np.random.default_rng(4).random((1, 3, 20, 30), dtype=np.float32)
        d_in = k.upload(rgb, stream=int(stream))
        d_out = k.alloc(49 * 20 * 30 * 4)
        k.vnsc(d_in, d_out, 1, 20, 30, stream=int(stream))
        got = k.download(d_out, (1, 49, 20, 30), np.float32, stream=int(stream))
        assert np.array_equal(got, host.vnsc(rgb))
        k.free(d_in)
        k.free(d_out)
    finally:
        drv.cuStreamDestroy(stream)


def test_loaded_kernels_report_their_origin(k):
    k.function("srx_vnsc_f32")
    assert set(k.loaded_from) >= {"srx_vnsc.cu"}
    assert k.capability >= (7, 5)
    assert launch.VNSC_SHARED_BYTES < 48 * 1024
