"""srexport.cabi, the ctypes structs the tests and benchmarks share, against the compiled
library: srx_options_init writes the C compiler's sizeof(srx_options) into struct_size."""

from __future__ import annotations

import ctypes

import pytest

from _cpp import build
from srexport.cabi import Options, declare


def test_options_struct_matches_the_header() -> None:
    built = build()
    if isinstance(built, str):
        pytest.skip(built)
    lib = declare(ctypes.CDLL(str(built)))
    options = Options()
    lib.srx_options_init(ctypes.byref(options))
    assert options.struct_size == ctypes.sizeof(Options)
    assert options.backend == b"auto" and options.precision == b"auto"
    assert (options.window, options.stitch) == (b"hamming", b"auto")  # the fields after the ints and doubles
    assert (options.batch, options.overlap, options.verify_hashes, options.memory_gib) == (1, -1, 1, 0.0)
