"""ctypes mirrors of the structs of libsrexport's C ABI (cpp/include/srexport.h), shared
by the parity tests (tests/_cpp.py) and benchmarks/cpp_vs_python.py. Field order and types
follow the header; `srx_options_init` writes sizeof(srx_options) into `struct_size`, which
is how a caller checks `Options` against the library it loaded."""

from __future__ import annotations

import ctypes

OK, ERR_ARGUMENT, ERR_BUNDLE, ERR_BACKEND, ERR_UNAVAILABLE, ERR_IMAGE, ERR_SHAPE, ERR_CANCELLED = 0, 1, 2, 3, 4, 5, 6, 7
PATCH_AUTO, PATCH_BUNDLE = 0, -1
UINT8, UINT16, FLOAT32 = 1, 2, 3  # srx_dtype


class Image(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int), ("height", ctypes.c_int),
                ("channels", ctypes.c_int), ("dtype", ctypes.c_int), ("stride", ctypes.c_size_t)]


class Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("overlap", ctypes.c_int),
                ("window", ctypes.c_char_p), ("batch", ctypes.c_int), ("noise", ctypes.c_double),
                ("seed", ctypes.c_uint64), ("threads", ctypes.c_int), ("verify_hashes", ctypes.c_int),
                ("cache_dir", ctypes.c_char_p), ("device", ctypes.c_int), ("stitch", ctypes.c_char_p),
                ("memory_gib", ctypes.c_double)]


class Info(ctypes.Structure):
    _fields_ = [("model", ctypes.c_char_p), ("variant", ctypes.c_char_p), ("scale", ctypes.c_int),
                ("input_kind", ctypes.c_char_p), ("backend", ctypes.c_char_p), ("precision", ctypes.c_char_p),
                ("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("overlap", ctypes.c_int),
                ("batch", ctypes.c_int), ("noise_inputs", ctypes.c_int), ("window", ctypes.c_char_p)]


class Plan(ctypes.Structure):
    _fields_ = [("patch_h", ctypes.c_int), ("patch_w", ctypes.c_int), ("tiles", ctypes.c_int),
                ("overlap", ctypes.c_int), ("crop", ctypes.c_int), ("pad_top", ctypes.c_int),
                ("pad_bottom", ctypes.c_int), ("pad_left", ctypes.c_int), ("pad_right", ctypes.c_int),
                ("computed_pixels", ctypes.c_longlong)]


PROGRESS = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


def declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    """Argument and result types of the C ABI's functions on a loaded libsrexport."""
    c = ctypes
    lib.srx_version.restype = c.c_char_p
    lib.srx_last_error.restype = c.c_char_p
    lib.srx_backend_available.argtypes = [c.c_char_p]
    lib.srx_options_init.argtypes = [c.POINTER(Options)]
    lib.srx_open.argtypes = [c.c_char_p, c.POINTER(Options), c.POINTER(c.c_void_p)]
    lib.srx_close.argtypes = [c.c_void_p]
    lib.srx_get_info.argtypes = [c.c_void_p, c.POINTER(Info)]
    lib.srx_get_plan.argtypes = [c.c_void_p, c.c_int, c.c_int, c.POINTER(Plan)]
    lib.srx_tiling_note.argtypes = [c.c_void_p]
    lib.srx_tiling_note.restype = c.c_char_p
    lib.srx_precision_note.argtypes = [c.c_void_p]
    lib.srx_precision_note.restype = c.c_char_p
    lib.srx_output_size.argtypes = [c.c_void_p, c.c_int, c.c_int, c.POINTER(c.c_int), c.POINTER(c.c_int)]
    lib.srx_upscale.argtypes = [c.c_void_p, c.POINTER(Image), c.POINTER(Image), PROGRESS, c.c_void_p]
    lib.srx_cancel.argtypes = [c.c_void_p]
    lib.srx_normal_field.argtypes = [c.c_uint64, c.c_uint32, c.c_int64, c.c_int64, c.c_int, c.c_int,
                                     c.POINTER(c.c_float)]
    lib.srx_bicubic.argtypes = [c.POINTER(c.c_float), c.c_int, c.c_int, c.POINTER(c.c_float), c.c_int, c.c_int]
    return lib
