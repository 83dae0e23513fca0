"""What `sr-export build` was asked to do about reduced precision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CALIB_METHODS = ("entropy", "percentile", "minmax")


@dataclass(frozen=True)
class PrecisionOptions:
    fp16: bool = False
    int8: bool = False
    calib_dir: Path | None = None
    calib_patches: int = 64
    calib_method: str = "percentile"
    seed: int = 0
    eval_dir: Path | None = None
    bf16: bool = False  # record BF16 accuracy (no graph: OpenVINO runs model.fp32.onnx in bf16)

    def wanted(self) -> bool:
        return self.fp16 or self.int8 or self.bf16
