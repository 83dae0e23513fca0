"""srexport.kernels.cuda against a simulated CUDA driver: "device" memory is host memory and
a launch runs the kernel's host twin on the packed kernel parameters. This checks, without
a GPU, everything cuda.py does around the kernels: argument packing for cuLaunchKernel,
grids, batch splitting, the offsets upload, pointer arithmetic, GpuBlender. The kernels
themselves are checked against their twins by test_kernels_gpu.py where a GPU exists."""

from __future__ import annotations

import ctypes
import shutil
import types

import numpy as np
import pytest

from srexport.kernels import cuda, launch
from srexport.runtime.blend import Blender, window_1d, window_2d

if shutil.which("g++") is None and shutil.which("c++") is None:
    pytest.skip("no C++ compiler: the host twin library cannot be built", allow_module_level=True)

from srexport.kernels import host  # noqa: E402

P, I = "p", "i"
SIGNATURES = {  # kernel -> parameter kinds, as declared in the .cu files
    "srx_blend_accumulate_f32": [P, I, I, I, I, P, P, P, P, P, I, I, I, I],
    "srx_blend_accumulate_f16": [P, I, I, I, I, P, P, P, P, P, I, I, I, I],
    "srx_blend_finalize_u8": [P, P, I, I, I, I, I, I, I, P],
    "srx_blend_finalize_u16": [P, P, I, I, I, I, I, I, I, P],
    "srx_blend_finalize_f32": [P, P, I, I, I, I, I, I, I, P],
    "srx_vnsc_f32": [P, I, I, I, P],
    "srx_vnsc_f16": [P, I, I, I, P],
}


class SimDriver(types.SimpleNamespace):
    """The cuda.bindings.driver calls cuda.py makes, on host memory."""

    def __init__(self):
        super().__init__()
        self.memory: dict[int, np.ndarray] = {}
        self.launches: list[tuple] = []
        self.CUdevice_attribute = types.SimpleNamespace(
            CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major", CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor")
        self.CUstream = int
        self.CUdeviceptr = int

    def cuInit(self, flags):
        return (0,)

    def cuDeviceGetCount(self):
        return 0, 1

    def cuDeviceGet(self, i):
        return 0, i

    def cuDeviceGetName(self, n, dev):
        return 0, b"Simulated GPU\0"

    def cuDeviceGetAttribute(self, attr, dev):
        return 0, {"major": 8, "minor": 6}[attr]

    def cuDevicePrimaryCtxRetain(self, dev):
        return 0, "ctx"

    def cuCtxSetCurrent(self, ctx):
        return (0,)

    def cuCtxSynchronize(self):
        return (0,)

    def cuStreamSynchronize(self, stream):
        return (0,)

    def cuModuleLoadData(self, image):
        return 0, "module"

    def cuModuleGetFunction(self, module, name):
        return 0, name.decode()

    def cuMemAlloc(self, nbytes):
        buf = np.zeros(nbytes + 64, np.uint8)
        ptr = buf.ctypes.data
        self.memory[ptr] = buf
        return 0, ptr

    def cuMemFree(self, ptr):
        del self.memory[int(ptr)]
        return (0,)

    def cuMemcpyHtoDAsync(self, dst, src, nbytes, stream):
        ctypes.memmove(int(dst), int(src), nbytes)
        return (0,)

    def cuMemcpyDtoH(self, dst, src, nbytes):
        ctypes.memmove(int(dst), int(src), nbytes)
        return (0,)

    def cuMemsetD8Async(self, dst, value, nbytes, stream):
        ctypes.memset(int(dst), value, nbytes)
        return (0,)

    def cuLaunchKernel(self, f, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        kinds = SIGNATURES[f]
        slots = (ctypes.c_void_p * len(kinds)).from_address(params)
        args = [ctypes.c_uint64.from_address(slots[i]).value if kind == P else ctypes.c_int.from_address(slots[i]).value
                for i, kind in enumerate(kinds)]
        self.launches.append((f, (gx, gy, gz), (bx, by, bz), stream, args))
        fn = getattr(host.library(), f.replace("srx_", "srx_host_"))
        if f.startswith("srx_blend_accumulate"):
            assert (bx, by, bz) == launch.BLEND_BLOCK and gz == 1
            args += [gy * launch.BLEND_BLOCK[1], gx * launch.BLEND_BLOCK[0]]  # the grid's extent
        elif f.startswith("srx_vnsc"):
            n, h, w = args[1:4]
            assert (gx, gy, gz) == launch.vnsc_grid(n, h, w) and (bx, by, bz) == launch.VNSC_BLOCK
        else:
            out_h, out_w = args[7:9]
            assert (gx, gy, gz) == launch.finalize_grid(out_h, out_w)
        fn(*args)
        return (0,)


@pytest.fixture
def sim(monkeypatch):
    driver = SimDriver()
    monkeypatch.setattr(cuda, "_driver", lambda: driver)
    monkeypatch.setattr(cuda.Kernels, "_image", lambda self, name: (b"", "simulated"))
    monkeypatch.setattr(cuda, "_kernels", {})
    return driver


def test_status_and_device(sim):
    assert cuda.cuda_status() == (True, "Simulated GPU (sm_86)")
    assert cuda.kernels().capability == (8, 6)


def test_vnsc_launch(sim):
    k = cuda.kernels()
    rgb = np.random.default_rng(0).random((2, 3, 37, 53), dtype=np.float32)
    d_in = k.upload(rgb)
    d_out = k.alloc(2 * 49 * 37 * 53 * 4)
    cuda.vnsc(d_in, d_out, 2, 37, 53, stream=7)
    assert sim.launches[-1][0] == "srx_vnsc_f32" and sim.launches[-1][3] == 7
    assert np.array_equal(k.download(d_out, (2, 49, 37, 53), np.float32), host.vnsc(rgb))
    half = rgb.astype(np.float16)
    d_half = k.upload(half)
    cuda.vnsc(d_half, d_out, 2, 37, 53, dtype="float16")
    assert np.array_equal(k.download(d_out, (2, 49, 37, 53), np.float16), host.vnsc(half))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_gpu_blender_end_to_end(sim, dtype):
    k = cuda.kernels()
    rng = np.random.default_rng(1)
    height, width, ph, pw = 90, 150, 32, 40
    offsets = [(t, l) for t in range(-8, height, 20) for l in range(-10, width, 24)]
    patches = rng.random((len(offsets), 3, ph, pw)).astype(dtype)
    pad = 48  # patches hang over the edges: blend on a larger canvas, then crop
    reference = Blender(3, height + 2 * pad, width + 2 * pad, window_2d("hamming", ph, pw))
    for (t, l), p in zip(offsets, patches):
        reference.add(p.astype(np.float32), t + pad, l + pad)
    want = reference.result(pad, pad, height, width).transpose(1, 2, 0)
    with cuda.GpuBlender(3, height, width, window_1d("hamming", ph), window_1d("hamming", pw)) as blender:
        for start in range(0, len(offsets), 7):  # batches of 7 patches from one device buffer
            d = k.upload(patches[start:start + 7])
            blender.add_batch(d, offsets[start:start + 7], dtype=dtype)
            k.free(d)
        assert np.array_equal(blender.download(dtype=np.float32), want)
        assert np.array_equal(blender.download(5, 6, 50, 60, dtype=np.uint16),
                              np.rint(np.clip(want[5:55, 6:66], 0, 1) * np.float32(65535)).astype(np.uint16))
        blender.reset()
        assert not blender.download(dtype=np.uint8).any()  # 0 / 0 quantizes to 0
    assert set(sim.memory) == {k._scratch[0][0]}  # all but the offsets scratch buffer freed


def test_large_batches_are_split_with_the_right_offsets(sim):
    k = cuda.kernels()
    rng = np.random.default_rng(2)
    count = launch.BLEND_MAX_BATCH + 300
    offsets = rng.integers(-4, 60, (count, 2))
    patches = rng.random((count, 2, 6, 5), dtype=np.float32)
    wy, wx = window_1d("bartlett", 6), window_1d("bartlett", 5)
    twin = host.HostBlender(2, 64, 64, wy, wx)
    twin.add_batch(patches, offsets)
    canvas, weight = k.alloc(2 * 64 * 64 * 4), k.alloc(64 * 64 * 4)
    k.zero(canvas, 2 * 64 * 64 * 4)
    k.zero(weight, 64 * 64 * 4)
    before = len(sim.launches)
    cuda.blend_accumulate(k.upload(patches), offsets, count, 2, 6, 5, canvas, weight, 64, 64, k.upload(wy),
                          k.upload(wx))
    assert len(sim.launches) - before == 2  # 1024 + 300
    assert sim.launches[-1][4][1] == 300
    assert np.array_equal(k.download(canvas, (2, 64, 64), np.float32), twin.canvas)
    assert np.array_equal(k.download(weight, (64, 64), np.float32), twin.weight)


def test_finalize_arguments(sim):
    k = cuda.kernels()
    rng = np.random.default_rng(3)
    weight = rng.uniform(0.5, 2, (30, 40)).astype(np.float32)
    canvas = (rng.uniform(-0.1, 1.1, (3, 30, 40)) * weight).astype(np.float32)
    out = k.alloc(20 * 25 * 3)
    cuda.blend_finalize(k.upload(canvas), k.upload(weight), 3, 30, 40, out, 4, 9, 20, 25)
    assert np.array_equal(k.download(out, (20, 25, 3), np.uint8), host.blend_finalize(canvas, weight, 4, 9, 20, 25))
    with pytest.raises(launch.KernelArgumentError, match="not inside"):
        cuda.blend_finalize(0, 0, 3, 30, 40, out, 25, 0, 20, 25)
    with pytest.raises(launch.KernelArgumentError, match="dtype"):
        cuda.blend_finalize(0, 0, 3, 30, 40, out, dtype=np.int8)


def test_kernel_image_sources(monkeypatch, tmp_path):
    driver = SimDriver()
    monkeypatch.setattr(cuda, "_driver", lambda: driver)
    (tmp_path / "srx_vnsc.fatbin").write_bytes(b"precompiled")
    monkeypatch.setenv("SREXPORT_FATBIN_DIR", str(tmp_path))
    k = cuda.Kernels(source="auto")
    assert k._image("srx_vnsc.cu") == (b"precompiled", f"fatbin {tmp_path / 'srx_vnsc.fatbin'}")
    monkeypatch.setattr(cuda, "nvcc_path", lambda: None)
    monkeypatch.setattr(cuda, "nvrtc_compile", lambda name, arch, ptx=False: b"cubin for " + arch.encode())
    monkeypatch.setattr(cuda, "nvrtc_version", lambda: (13, 0))
    image, origin = k._image("srx_blend.cu")  # no shipped fatbin, no nvcc: NVRTC for the device
    assert image == b"cubin for sm_86" and origin.startswith("NVRTC 13.0")
    with pytest.raises(cuda.CudaUnavailable, match="nvcc is not installed"):
        cuda.Kernels(source="nvcc")._image("srx_blend.cu")
    with pytest.raises(cuda.CudaUnavailable, match="auto, nvcc or nvrtc"):
        cuda.Kernels(source="cuda")._image("srx_blend.cu")
