"""Validation of numeric options and API parameters, before any work is done.

Every check raises `OptionError` (an `SrExportError` and a `ValueError`) with one line
naming the parameter, what it must be and what it got.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from srexport.errors import OptionError

MAX_PATCH = 16384  # patch edge in graph input pixels
MAX_BATCH = 4096
MAX_THREADS = 4096
MAX_NOISE = 1.0e4  # amplitude W; larger values overflow float32 noise fields
MAX_SEED = 2**64 - 1  # the noise key is two 32-bit words
# Bytes held per output pixel while an image is blended: the float32 canvas (3 channels)
# and its weight plane, the cropped result, and the quantised copy with its temporary.
BYTES_PER_OUTPUT_PIXEL = 3 * 4 + 4 + 3 * 4 + 3 * 4 + 3 * 2


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def integer(name: str, value: object, low: int, high: int) -> int:
    """An int (not a bool, not a float, not a string) in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise OptionError(f"{name} must be an integer, got {type(value).__name__} {_shown(value)}")
    value = int(value)
    if not low <= value <= high:
        raise OptionError(f"{name} must be between {low} and {high}, got {_shown(value)}")
    return value


MAX_MEMORY_GIB = 1 << 20  # a memory budget in GiB


def number(name: str, value: object, low: float, high: float) -> float:
    """A finite real number in [low, high]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise OptionError(f"{name} must be a number, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, int) and not low <= value <= high:
        raise OptionError(f"{name} must be between {low:g} and {high:g}, got {_shown(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise OptionError(f"{name} must be a finite number, got {value}")
    if not low <= value <= high:
        raise OptionError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return value


def patch_size(name: str, value: object) -> tuple[int, int] | None:
    """None, "auto", an int edge, or (height, width) ints, each in [1, MAX_PATCH]."""
    if value is None or value == "auto":
        return None
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise OptionError(f"{name} must be an int or (height, width), got {len(value)} values")
        return (integer(f"{name} height", value[0], 1, MAX_PATCH), integer(f"{name} width", value[1], 1, MAX_PATCH))
    if isinstance(value, np.integer):  # load() widens only a Python int to (edge, edge)
        raise OptionError(f"{name} must be a Python int or (height, width), got {type(value).__name__}")
    edge = integer(name, value, 1, MAX_PATCH)
    return (edge, edge)


def bundle_path(value: object) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value:
        raise OptionError(f"bundle must be a path to a bundle directory, got {type(value).__name__} {_shown(value)}")
    return Path(value)


def choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise OptionError(f"{name} must be one of {', '.join(choices)}, got {_shown(value)}")
    return value


def check_load(bundle: object, backend: object = "auto", precision: object = "fp32", *, patch: object = None,
               overlap: object = None, window: object = "hamming", batch: object = 1, noise: object = 0.0,
               seed: object = 0, threads: object = 0, memory: object = None) -> None:
    """The parameters of `srexport.load`, checked before the bundle is opened."""
    bundle_path(bundle)
    for name, value in (("backend", backend), ("precision", precision), ("window", window)):
        if not isinstance(value, str) or not value:
            raise OptionError(f"{name} must be a name (a string), got {type(value).__name__} {_shown(value)}")
    patch_size("patch", patch)
    if overlap is not None:
        integer("overlap", overlap, 0, MAX_PATCH)
    integer("batch", batch, 1, MAX_BATCH)
    number("noise", noise, 0.0, MAX_NOISE)
    integer("seed", seed, 0, MAX_SEED)
    integer("threads", threads, 0, MAX_THREADS)
    if memory is not None:
        number("memory", memory, 1e-3, MAX_MEMORY_GIB)


def _identity(path: Path) -> tuple | Path:
    try:
        st = path.stat()
        return (st.st_dev, st.st_ino)
    except OSError:
        return path.resolve()


def refuse_overwriting_inputs(inputs: list, targets: list) -> None:
    """No output may land on one of the inputs (the same file, by any name or link)."""
    sources = {_identity(Path(p)): Path(p) for p in inputs}
    for target in targets:
        hit = sources.get(_identity(Path(target)))
        if hit is not None:
            raise OptionError(f"output {target} would overwrite the input {hit}; choose another output")


def available_memory() -> int:
    """Bytes this machine can still allocate (MemAvailable; the physical total elsewhere)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 62


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def check_output_fits(height: int, width: int, scale: int, available: int | None = None) -> None:
    """Refuse an image whose upscaled output cannot be held in memory, before allocating."""
    out_h, out_w = height * scale, width * scale
    need = out_h * out_w * BYTES_PER_OUTPUT_PIXEL
    have = available_memory() if available is None else available
    if need > have:
        raise OptionError(f"a {width}x{height} input gives a {out_w}x{out_h} output that needs about "
                          f"{_gib(need)} of memory; {_gib(have)} is available")


def check_array(array: np.ndarray, scale: int) -> None:
    """An input array whose output fits in memory and, if float, holds finite values only."""
    check_output_fits(array.shape[0], array.shape[1], scale)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise OptionError("the input array holds NaN or infinite values")


# Command-line options: the rule each one follows (None values are defaults left unset).
_INT_OPTIONS = {
    "seed": (0, MAX_SEED), "overlap": (0, MAX_PATCH), "batch": (1, MAX_BATCH), "max_patch": (1, MAX_PATCH),
    "max_batch": (1, MAX_BATCH), "calib_patches": (1, 1_000_000), "threads": (0, MAX_THREADS),
    "repeats": (1, 1_000_000), "warmup": (0, 1_000_000), "e2e_repeats": (1, 1_000_000),
    "ray_workers": (1, MAX_THREADS), "opt_level": (0, 5),
}


def check_options(**values: object) -> None:
    """Command-line values by option name (`noise`, `seed`, `patch`...); one `OptionError`
    naming the flag (--noise) for the first bad one."""
    for key, value in values.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "noise":
            number(flag, value, 0.0, MAX_NOISE)
        elif key == "patch":
            patch_size(flag, value)
        elif key == "memory":
            number(flag, value, 1e-3, MAX_MEMORY_GIB)
        else:
            low, high = _INT_OPTIONS[key]
            integer(flag, value, low, high)
