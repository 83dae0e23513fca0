"""Typed parts of a profile: what `profile_bundle` is asked (`ProfileRequest`) and what it
measured (`Profile`); `Profile.to_json()` is the document `srexport.profiling.schema`
describes, key for key and in its order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from srexport.errors import SrExportError

Log = Callable[[str], None]


@dataclass(frozen=True)
class ProfileRequest:
    """`profile_bundle`'s options (meanings: its docstring)."""

    size: str | tuple[int, int] | None = None
    precision: str = "auto"
    backend: str = "auto"
    patch: int | tuple[int, int] | str | None = "auto"
    batch: int | None = None
    repeats: int = 10
    warmup: int = 2
    overlap: int | None = None
    e2e_repeats: int = 3
    threads: int = 0
    noise: float = 0.0
    window: str = "hamming"
    workload: str | None = None
    op_profile: bool = True
    op_runs: int = 3
    peak: bool = True
    sweep: bool = False
    sweep_patches: tuple[int, ...] | None = None
    max_call_s: float = 2.0
    stitch: str = "auto"
    memory: float | None = None

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0 or self.e2e_repeats < 1:
            raise SrExportError("repeats and e2e_repeats must be >= 1 and warmup >= 0")
        if self.batch is not None and self.batch < 1:
            raise SrExportError(f"batch must be >= 1, got {self.batch}")
        if isinstance(self.patch, int):
            object.__setattr__(self, "patch", (self.patch, self.patch))
        if self.sweep_patches is not None:
            object.__setattr__(self, "sweep_patches", tuple(self.sweep_patches))


@dataclass(frozen=True)
class Stats:
    """{median, p10, p90, runs} of a list of times (linear-interpolated percentiles)."""

    median: float
    p10: float
    p90: float
    runs: int

    @classmethod
    def of(cls, values: list[float], factor: float = 1.0) -> "Stats":
        scaled = np.asarray(values, dtype=np.float64) * factor
        return cls(float(np.median(scaled)), float(np.percentile(scaled, 10)), float(np.percentile(scaled, 90)),
                   int(scaled.size))

    def divided(self, divisor: float) -> "Stats":
        """The same figures in a larger unit (ms -> s: 1e3)."""
        return Stats(self.median / divisor, self.p10 / divisor, self.p90 / divisor, self.runs)

    def to_json(self) -> dict:
        return {"median": self.median, "p10": self.p10, "p90": self.p90, "runs": self.runs}


@dataclass(frozen=True)
class Size:
    width: int
    height: int

    def to_json(self) -> dict:
        return {"width": int(self.width), "height": int(self.height)}

    def hw_json(self) -> dict:
        """The same size written height first, as the patch fields are."""
        return {"height": int(self.height), "width": int(self.width)}


@dataclass(frozen=True)
class BatchTiming:
    """One batch timed: time per patch and per call, ms."""

    batch: int
    per_patch_ms: Stats
    call_ms: Stats

    def to_json(self) -> dict:
        return {"batch": self.batch, "per_patch_ms": self.per_patch_ms.to_json(), "call_ms": self.call_ms.to_json()}


@dataclass(frozen=True)
class Identity:
    """Which bundle ran where: the bundle's identity, the session and the device."""

    bundle: str
    model: str
    variant: str
    scale: int
    params: int
    precision: str
    backend: str
    providers: list[str]
    device_kind: str
    device_name: str
    threads: int

    def to_json(self) -> dict:
        return {
            "bundle": self.bundle, "model": self.model, "variant": self.variant, "scale": self.scale,
            "params": self.params, "precision": self.precision, "backend": self.backend,
            "providers": list(self.providers),
            "device": {"kind": self.device_kind, "name": self.device_name, "threads": self.threads},
        }


@dataclass(frozen=True)
class Sizes:
    """The image profiled: OUTPUT size, the size asked for, the LR input and what the tiler covers."""

    output: Size
    requested: Size
    lr: Size
    graph_input: Size

    def to_json(self) -> dict:
        return {"size": self.output.to_json(), "requested_size": self.requested.to_json(),
                "input_size": self.lr.to_json(), "graph_input_size": self.graph_input.to_json()}


@dataclass(frozen=True)
class Tiling:
    """How the runtime cut the image, and the batch of the end-to-end run."""

    patch: Size
    overlap: int
    window: str
    noise: float
    tiles: int
    stitch: str
    patch_mode: str
    memory_budget_gib: float | None
    batch: int

    def to_json(self) -> dict:
        return {
            "patch": self.patch.hw_json(), "overlap": self.overlap, "window": self.window, "noise": self.noise,
            "tiles": self.tiles, "stitch": self.stitch, "patch_mode": self.patch_mode,
            "memory_budget_gib": self.memory_budget_gib, "batch": self.batch,
        }


@dataclass(frozen=True)
class Timings:
    """Session opening, shape compiles, patch latency per batch and the end-to-end run."""

    session_open_s: float
    compile_s: float
    compiled_shapes: int | None
    latency_ms: Stats
    best: BatchTiming
    batches: list[BatchTiming]
    end_to_end_s: Stats

    def to_json(self) -> dict:
        return {
            "session_open_s": self.session_open_s, "compile_s": self.compile_s,
            "compiled_shapes": self.compiled_shapes, "latency_ms": self.latency_ms.to_json(),
            "best_batch": self.best.to_json(), "batches": [b.to_json() for b in self.batches],
            "end_to_end_s": self.end_to_end_s.to_json(),
        }


@dataclass(frozen=True)
class Cost:
    """Throughput, FLOPs and the share of the device's peak they reach."""

    mpx_per_s: float
    patch_mpx_per_s: float
    macs_per_px: float
    flops_per_px: float
    flops: dict  # `FlopCount.to_dict()`
    achieved_gflops: float
    achieved_gflops_end_to_end: float
    peak: dict | None  # `peak.py`'s record, with `fraction`

    def to_json(self) -> dict:
        return {
            "mpx_per_s": self.mpx_per_s, "patch_mpx_per_s": self.patch_mpx_per_s, "macs_per_px": self.macs_per_px,
            "flops_per_px": self.flops_per_px, "flops": self.flops, "achieved_gflops": self.achieved_gflops,
            "achieved_gflops_end_to_end": self.achieved_gflops_end_to_end, "peak": self.peak,
        }


@dataclass(frozen=True)
class Memory:
    peak_rss_mb: float
    rss_before_mb: float | None
    rss_reset: bool  # the peak counts from when profiling began
    peak_device_mb: float | None

    def to_json(self) -> dict:
        return {
            "peak_rss_mb": self.peak_rss_mb, "rss_before_mb": self.rss_before_mb,
            "peak_rss_source": "VmHWM since profiling began" if self.rss_reset else "process lifetime peak (ru_maxrss)",
            "peak_device_mb": self.peak_device_mb,
        }


@dataclass(frozen=True)
class SweepRow:
    """A batch-1 patch of one edge and precision, timed."""

    precision: str
    patch: int
    latency_ms: Stats
    mpx_per_s: float

    def to_json(self) -> dict:
        return {"precision": self.precision, "patch": self.patch, "latency_ms": self.latency_ms.to_json(),
                "mpx_per_s": self.mpx_per_s}


@dataclass(frozen=True)
class Profile:
    """One profile; `to_json()` is the schema's document."""

    schema_version: int
    created: str
    tools: dict[str, str]
    identity: Identity
    sizes: Sizes
    tiling: Tiling
    timings: Timings
    cost: Cost
    memory: Memory
    op_times: dict | None  # `op_times`' table, with the patch and batch it ran
    titan_x: dict  # `titanx.compare`'s record
    titan_x_all: list[dict]
    sweep: list[SweepRow] | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version, "created": self.created, "tools": self.tools,
            **self.identity.to_json(), **self.sizes.to_json(), **self.tiling.to_json(), **self.timings.to_json(),
            **self.cost.to_json(), **self.memory.to_json(),
            "op_times": self.op_times, "titan_x": self.titan_x, "titan_x_all": self.titan_x_all,
            "sweep": None if self.sweep is None else [row.to_json() for row in self.sweep],
            "notes": list(self.notes),
        }
