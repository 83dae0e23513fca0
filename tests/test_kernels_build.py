"""Building the kernels: nvcc for every target architecture (no errors, warnings or spills),
ptxas report parsing, NVRTC, the host library cache, and cuda.py without a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from srexport.kernels import compiler, cuda, launch

REPO = Path(__file__).resolve().parents[1]
HAS_NVCC = compiler.nvcc_path() is not None


def _has_nvrtc() -> bool:
    try:
        cuda.nvrtc_version()
    except Exception:
        return False
    return True


SAMPLE_LOG = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function 'srx_vnsc_f16' for 'sm_75'
ptxas info    : Function properties for srx_vnsc_f16
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 60 registers, used 1 barriers, 12528 bytes smem, 384 bytes cmem[0]
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
    48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers
"""


def test_parse_ptxas_reads_registers_shared_memory_and_spills():
    first, second = compiler.parse_ptxas(SAMPLE_LOG)
    assert (first.kernel, first.arch, first.registers, first.shared_bytes, first.const_bytes) == (
        "srx_vnsc_f16", "sm_75", 60, 12528, 384)
    assert not first.spills and first.barriers == 1
    assert (second.kernel, second.arch, second.registers) == ("k2", "sm_90", 255)
    assert (second.stack_bytes, second.spill_stores, second.spill_loads) == (48, 40, 36)
    assert second.spills


@pytest.mark.skipif(not HAS_NVCC, reason="nvcc is not installed: CUDA sources not compiled here")
def test_nvcc_compiles_every_kernel_for_every_arch_without_spills():
    builds = compiler.compile_all()  # raises on an error, a warning (-Werror) or a spill
    for b in builds:
        assert b.fatbin.is_file() and b.fatbin.stat().st_size > 0
        assert b.archs == compiler.ARCHS and b.ptx_arch == compiler.PTX_ARCH
        assert not b.warnings, b.warnings
        kernels = {name for name, src in cuda.KERNELS.items() if src == b.source}
        seen = {(r.kernel, r.arch) for r in b.resources}
        assert seen == {(k, a) for k in kernels for a in compiler.ARCHS}
        for r in b.resources:
            assert r.spill_stores == 0 and r.spill_loads == 0 and r.stack_bytes == 0, r
            assert r.registers <= 255
            if r.kernel.startswith("srx_vnsc"):
                assert r.shared_bytes == launch.VNSC_SHARED_BYTES
    print("\n" + compiler.summary(builds))


@pytest.mark.skipif(not HAS_NVCC, reason="nvcc is not installed")
def test_plugin_ptx_has_both_entries():
    ptx = compiler.ptx("srx_vnsc.cu", "compute_75")
    assert ".target sm_75" in ptx
    assert ".entry srx_vnsc_f32" in ptx and ".entry srx_vnsc_f16" in ptx


@pytest.mark.skipif(not _has_nvrtc(), reason="cuda-python with nvidia-cuda-nvrtc is not installed")
def test_nvrtc_compiles_the_same_sources_without_a_gpu():
    ptx = cuda.nvrtc_compile("srx_vnsc.cu", "compute_75", ptx=True).decode()
    assert ".entry srx_vnsc_f32" in ptx and ".entry srx_vnsc_f16" in ptx
    version = tuple(int(v) for v in ptx.split(".version ")[1].split()[0].split("."))
    if HAS_NVCC:  # an NVRTC newer than nvcc emits PTX the local ptxas rejects
        nvcc_ptx = compiler.ptx("srx_vnsc.cu", "compute_75")
        nvcc_version = tuple(int(v) for v in nvcc_ptx.split(".version ")[1].split()[0].split("."))
        assert version <= nvcc_version, f"NVRTC PTX {version} newer than nvcc's {nvcc_version}: pin nvidia-cuda-nvrtc"
    cubin = cuda.nvrtc_compile("srx_blend.cu", "sm_86")
    assert cubin[:4] == b"\x7fELF"


def test_host_library_is_cached_outside_the_source_tree(tmp_path, monkeypatch):
    lib = compiler.host_library()
    assert lib.is_file()
    assert compiler.KERNEL_DIR not in lib.parents
    assert compiler.host_library() == lib  # cached: same hash, no rebuild
    monkeypatch.setenv("SREXPORT_CACHE_DIR", str(tmp_path))
    assert compiler.cache_dir() == tmp_path / "kernels"


def test_unknown_source_is_refused():
    with pytest.raises(compiler.KernelBuildError, match="unknown kernel source"):
        compiler.compile_cuda("nope.cu")


def test_cuda_module_without_cuda_python_gives_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # import of cuda.bindings now fails
    monkeypatch.setitem(sys.modules, "cuda", None)
    ok, reason = cuda.cuda_status()
    assert not ok and "cuda-python" in reason
    with pytest.raises(cuda.CudaUnavailable, match="pip install cuda-python"):
        cuda.Kernels()


def test_cuda_status_never_raises():
    ok, reason = cuda.cuda_status()
    assert isinstance(ok, bool) and reason
    if not ok:
        with pytest.raises(cuda.CudaUnavailable):
            cuda.kernels()


def test_device_pointer_accepts_common_handles():
    class Cai:
        __cuda_array_interface__ = {"data": (1234, False), "shape": (1,), "typestr": "<f4", "version": 3}

    class Torchish:
        def data_ptr(self):
            return 99

    assert cuda.device_pointer(5) == 5
    assert cuda.device_pointer(Cai()) == 1234
    assert cuda.device_pointer(Torchish()) == 99
    assert cuda.device_pointer(None) == 0
    with pytest.raises(launch.KernelArgumentError):
        cuda.device_pointer(object())


def test_launch_geometry():
    assert launch.vnsc_grid(2, 40, 50) == (2, 3, 2)
    assert launch.blend_grid(17, 33) == (2, 3, 1)
    assert launch.blend_bbox(launch.check_offsets([(-5, 3), (10, -20)]), 8, 8, 16, 16) == (0, 0, 16, 11)
    assert launch.blend_bbox(launch.check_offsets([(20, 0)]), 8, 8, 16, 16) is None
    assert launch.blend_chunks(2050) == [(0, 1024), (1024, 2048), (2048, 2050)]


def test_ci_script_is_valid_bash():
    script = REPO / ".ci" / "kernels.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
