"""Per-backend options (`srexport.load(..., backend_options=...)`) and the request a backend
opener receives.

Each options class holds only what its backend honours, is frozen, and checks itself on
construction (one-line `OptionError`). Threads are not among them: `threads` is the same
for every backend and travels in `SessionRequest`.

    srexport.load(bundle, "openvino", backend_options=OpenVINOOptions(cache_dir="ov-cache"))
    srexport.load(bundle, "tensorrt", backend_options=TensorRTOptions(gpu_index=1, opt_level=5))
    srexport.load(bundle, "auto", backend_options=(TensorRTOptions(gpu_index=1), OpenVINOOptions(streams=2)))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from srexport.bundle import Bundle
from srexport.errors import OptionError
from srexport.ort import OPTIMIZATION_LEVELS
from srexport.runtime.backends.openvino import SHAPES as OV_SHAPES
from srexport.runtime.backends.tensorrt import STREAMS as TRT_STREAMS
from srexport.tensorrt.builder import DEFAULT_OPT_LEVEL, OPT_LEVELS


def _int(owner: str, field: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise OptionError(f"{owner}.{field} must be an integer {bound}, got {value!r}")


@dataclass(frozen=True)
class OrtOptions:
    """ONNX Runtime: `providers` in order of preference (None: TensorRT, CUDA, CPU, those
    installed); `graph_optimization` one of `srexport.ort.OPTIMIZATION_LEVELS`; `streams`
    fixes the concurrent CPU sessions of throughput mode (None: the stream plan's)."""

    providers: tuple[str, ...] | None = None
    graph_optimization: str = "all"
    streams: int | None = None

    def __post_init__(self) -> None:
        if self.providers is not None:
            providers = (self.providers,) if isinstance(self.providers, str) else self.providers
            if (not isinstance(providers, (tuple, list)) or not providers
                    or not all(isinstance(p, str) and p for p in providers)):
                raise OptionError(f"OrtOptions.providers must be provider names, got {self.providers!r}")
            object.__setattr__(self, "providers", tuple(providers))
        if self.graph_optimization not in OPTIMIZATION_LEVELS:
            raise OptionError(f"OrtOptions.graph_optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}, "
                              f"got {self.graph_optimization!r}")
        if self.streams is not None:
            _int("OrtOptions", "streams", self.streams, 1, 256)


@dataclass(frozen=True)
class OpenVINOOptions:
    """OpenVINO: `cache_dir` turns on OpenVINO's on-disk model cache there (off by default:
    see runtime.backends.openvino); `streams` fixes the throughput streams (None: the
    stream plan's); `shapes` "auto", "dynamic" or "static" compiles."""

    cache_dir: Path | None = None
    streams: int | None = None
    shapes: str = "auto"

    def __post_init__(self) -> None:
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, Path)) or not str(self.cache_dir):
                raise OptionError(f"OpenVINOOptions.cache_dir must be a folder path, got {self.cache_dir!r}")
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
            if self.cache_dir.exists() and not self.cache_dir.is_dir():
                raise OptionError(f"OpenVINOOptions.cache_dir {self.cache_dir} exists and is not a folder")
        if self.streams is not None:
            _int("OpenVINOOptions", "streams", self.streams, 1, 256)
        if self.shapes not in OV_SHAPES:
            raise OptionError(f"OpenVINOOptions.shapes must be one of {', '.join(OV_SHAPES)}, got {self.shapes!r}")


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT: the GPU (`gpu_index`), the builder optimisation level of engines built
    here (`opt_level`, 0..5), the execution contexts / CUDA streams a batch is split over
    (`streams`), and whether a missing engine is built (`build`) or refused."""

    gpu_index: int = 0
    opt_level: int = DEFAULT_OPT_LEVEL
    streams: int = TRT_STREAMS
    build: bool = True

    def __post_init__(self) -> None:
        _int("TensorRTOptions", "gpu_index", self.gpu_index, 0, 63)
        _int("TensorRTOptions", "opt_level", self.opt_level, OPT_LEVELS.start, OPT_LEVELS.stop - 1)
        _int("TensorRTOptions", "streams", self.streams, 1, 8)
        if not isinstance(self.build, bool):
            raise OptionError(f"TensorRTOptions.build must be True or False, got {self.build!r}")


@dataclass(frozen=True)
class TorchOptions:
    """PyTorch: the reference backend takes no options beyond the threads."""


BackendOptions = Union[OrtOptions, OpenVINOOptions, TensorRTOptions, TorchOptions]
OPTION_TYPES = (OrtOptions, OpenVINOOptions, TensorRTOptions, TorchOptions)


@dataclass(frozen=True)
class SessionRequest:
    """What a backend opener gets: the bundle, the (resolved) precision, the threads, the
    tiler's patch and batch when known, the memory budget, the progress log, this
    backend's options (None: its defaults), and why it was chosen (the selection note)."""

    bundle: Bundle
    precision: str
    threads: int = 0
    patch: tuple[int, int] | int | str | None = None
    batch: int | None = None
    memory: float | None = None
    log: Callable[[str], None] | None = None
    options: BackendOptions | None = None
    reason: str = "requested"
    precision_reason: str = ""
    zero_noise: bool = False  # noise W = 0: the CPU backends may run the W = 0 graph

    def noted(self) -> dict[str, str]:
        """The selection-note fields every session constructor takes."""
        return {"reason": self.reason, "precision_reason": self.precision_reason}
