"""Former home of the lazy TensorRT / cuda-python imports, now `srexport.lazy` (the one
lazy-import module for every optional dependency); the names stay importable from here."""

from srexport.lazy import (  # noqa: F401
    EXTRA_HINT,
    MIN_TENSORRT,
    CudaError,
    CudaUnavailable,
    EngineUnavailable,
    TensorRTUnavailable,
    check,
    error_name,
    import_cudart,
    import_tensorrt,
    reset_cache,
    tensorrt_version,
    version_tuple,
)
