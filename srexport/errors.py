"""User-facing failures. The CLI turns each into one line and exit code 2."""


class SrExportError(Exception):
    """Base class of every error a user can act on."""


class ModelError(SrExportError):
    """Unknown model, variant or scale."""


class CheckpointError(SrExportError):
    """A checkpoint is missing, unreadable, or does not fit the architecture."""


class ShapeError(SrExportError):
    """An input or patch size the model cannot take."""


class BundleError(SrExportError):
    """A bundle is missing, truncated, tampered with, or from a newer format."""


class ImageError(SrExportError):
    """An image that cannot be read or written."""


class ExportError(SrExportError):
    """Export or verification of a graph failed."""


class CalibrationError(SrExportError):
    """A calibration or evaluation folder, or a precision option, that cannot be used."""


class OptionError(SrExportError, ValueError):
    """A numeric option or API parameter out of its type or range."""


class SessionClosed(SrExportError):
    """A backend session used after `close()`."""


class Interrupted(SrExportError):
    """A signal stopped a run; `code` is the exit status (128 + the signal number)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class DependencyMissing(SrExportError):
    """An optional package (openvino, ray, tritonclient, matplotlib) is not installed."""


class GpuError(SrExportError):
    """The GPU path cannot run here or failed; callers that can fall back to a CPU backend
    catch this one base."""


class EngineUnavailable(GpuError):
    """No TensorRT engine can run here (missing library, GPU, engine, or a failed build)."""


class TensorRTUnavailable(EngineUnavailable):
    """The TensorRT Python package (or its `tensorrt.plugin`) or its native libraries are
    missing or too old."""


class CudaUnavailable(EngineUnavailable):
    """cuda-python, the NVIDIA driver, a GPU or a kernel compiler is missing."""


class CudaError(GpuError):
    """A CUDA runtime, driver or NVRTC call failed on a machine that has a GPU."""


class KernelBuildError(SrExportError):
    """A compiler is missing, or a kernel source does not compile cleanly."""
