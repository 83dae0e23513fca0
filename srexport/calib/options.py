"""What `sr-export build` was asked to do about reduced precision, checked when made: a
bad combination is one `CalibrationError` naming the command-line flag, before any work."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srexport.errors import CalibrationError

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

    def __post_init__(self) -> None:
        if self.int8 and self.calib_dir is None:
            raise CalibrationError("--int8 needs --calib-dir DIR (a folder of representative images)")
        for folder, flag in ((self.calib_dir, "--calib-dir"), (self.eval_dir, "--eval-dir")):
            if folder is not None and not Path(folder).is_dir():
                raise CalibrationError(f"{flag} {folder} is not a folder")
        if self.calib_method not in CALIB_METHODS:
            raise CalibrationError(f"--calib-method must be one of {', '.join(CALIB_METHODS)}, "
                                   f"got '{self.calib_method}'")
        if self.calib_patches < 1:
            raise CalibrationError("--calib-patches must be >= 1")

    def wanted(self) -> bool:
        return self.fp16 or self.int8 or self.bf16
