"""Which NVIDIA GPUs this process sees, through cuda-python's runtime API.

Without a driver, cuda-python still imports: `cudaGetDeviceCount` then returns
cudaErrorInsufficientDriver (35), or cudaErrorNoDevice (100) when the driver sees no GPU;
some builds raise instead (the driver library not found). All of these become a
`CudaUnavailable` with the reason; `gpu_status()` never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from srexport.errors import SrExportError
from srexport.lazy import CudaUnavailable, check, error_name, import_cudart

NO_DRIVER = 35  # cudaErrorInsufficientDriver: no driver, or one older than the runtime
NO_DEVICE = 100  # cudaErrorNoDevice


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    capability: tuple[int, int]
    memory_bytes: int
    driver_version: int  # CUDA API version the driver supports, e.g. 13000
    runtime_version: int  # cuda-python's CUDA runtime, e.g. 13040

    @property
    def sm(self) -> str:
        """'sm86': the compute capability as engine keys spell it."""
        major, minor = self.capability
        return f"sm{major}{minor}"

    def describe(self) -> str:
        gib = self.memory_bytes / 2**30
        return f"GPU {self.index}: {self.name} ({self.sm}, {gib:.1f} GiB)"


def cuda_version_text(version: int) -> str:
    """13040 -> '13.4'."""
    return f"{version // 1000}.{(version % 1000) // 10}" if version else "none"


def _device_count(cudart) -> int:
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as exc:  # a build that raises when libcuda is absent
        raise CudaUnavailable(f"no NVIDIA driver (libcuda) on this machine: {exc}") from None
    code = int(err)
    if code == NO_DRIVER:
        raise CudaUnavailable(
            f"no usable NVIDIA driver ({error_name(cudart, err)}): install the NVIDIA driver, "
            "or a newer one than this CUDA runtime needs"
        )
    if code == NO_DEVICE:
        raise CudaUnavailable("the NVIDIA driver sees no GPU (cudaErrorNoDevice); check CUDA_VISIBLE_DEVICES")
    if code != 0:
        raise CudaUnavailable(f"CUDA is unusable here: cudaGetDeviceCount returned {error_name(cudart, err)}")
    if count < 1:
        raise CudaUnavailable("the NVIDIA driver sees no GPU")
    return int(count)


def query_gpu(index: int = 0) -> GpuInfo:
    """The GPU `index`, or raise `CudaUnavailable` with the reason."""
    cudart = import_cudart()
    count = _device_count(cudart)
    if not 0 <= index < count:
        raise CudaUnavailable(f"GPU {index} does not exist (this machine has {count})")
    props = check(cudart, cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name
    name = name.split(b"\0")[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
    driver = check(cudart, cudart.cudaDriverGetVersion(), "cudaDriverGetVersion")
    runtime = check(cudart, cudart.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    return GpuInfo(index, name, (int(props.major), int(props.minor)), int(props.totalGlobalMem), int(driver),
                   int(runtime))


def gpu_status(index: int = 0) -> tuple[GpuInfo | None, str]:
    """(GpuInfo, description) or (None, why there is none). Never raises."""
    try:
        gpu = query_gpu(index)
    except SrExportError as exc:
        return None, str(exc)
    except Exception as exc:  # a broken install must not break `doctor` or `auto`
        return None, f"CUDA is unusable here: {type(exc).__name__}: {exc}"
    return gpu, gpu.describe()
