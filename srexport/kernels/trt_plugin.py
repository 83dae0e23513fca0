"""The VN+SC TensorRT plugin, "srexport::VNSC", as an IPluginV3 quickly deployable plugin.

Written against the documented `tensorrt.plugin` API of TensorRT 10.x/11.x (the Python
decorators generate the IPluginV3 / IPluginCreatorV3 objects). Importing this module
needs neither TensorRT nor a GPU; `register()` imports TensorRT and registers:

- the shape function: (N, 3, H, W) -> (N, 49, H, W), same dtype;
- the type/format combinations: float32 -> float32 or float16 -> float16, linear NCHW;
- an ahead-of-time implementation (`aot_impl`): the PTX of srx_vnsc_{f32,f16} for
  compute_75 (every GPU TensorRT 11 supports), with the launch grid
  (ceil(W/32), ceil(H/16), N) x (32, 8) as symbolic shape expressions and N, H, W as
  extra int32 kernel arguments (kernel signature: input, N, H, W, output). The kernel is
  embedded in the engine: running it needs no Python;
- a just-in-time implementation (`impl`) launching the same kernel through cuda-python
  (`srexport.kernels.cuda.vnsc`), for TensorRT builds that prefer JIT plugins.

The ONNX side: `srexport.kernels.onnx_plugin.fuse_vnsc` emits nodes with op_type "VNSC" and
the attribute plugin_namespace="srexport", which TensorRT's ONNX parser resolves to this
plugin once `register()` has run (call it before creating the parser).

No `from __future__ import annotations` here: tensorrt.plugin checks the decorated
functions' annotations as objects.
"""

import threading
from typing import List, Tuple, Union

from srexport.errors import TensorRTUnavailable  # noqa: F401  (what register() raises)
from srexport.kernels import launch
from srexport.lazy import import_tensorrt_plugin

PLUGIN_NAMESPACE = "srexport"
PLUGIN_NAME = "VNSC"
PLUGIN_ID = f"{PLUGIN_NAMESPACE}::{PLUGIN_NAME}"
PTX_ARCH = "compute_75"

_lock = threading.Lock()
_registered = False
_ptx_cache: dict = {}


def kernel_name(half: bool) -> str:
    return "srx_vnsc_f16" if half else "srx_vnsc_f32"


def plugin_ptx(arch: str = PTX_ARCH) -> str:
    """PTX of the VN+SC kernels (both dtypes) for `arch`, compiled by nvcc or NVRTC once."""
    with _lock:
        if arch not in _ptx_cache:
            from srexport.kernels.compiler import nvcc_path, ptx
            from srexport.kernels.cuda import nvrtc_compile

            source = "srx_vnsc.cu"
            _ptx_cache[arch] = ptx(source, arch) if nvcc_path() else nvrtc_compile(source, arch, ptx=True).decode()
        return _ptx_cache[arch]


def launch_geometry(n: int, h: int, w: int) -> dict:
    """The launch the plugin asks TensorRT for, evaluated for concrete sizes."""
    grid = launch.vnsc_grid(n, h, w)
    return {"grid": grid, "block": launch.VNSC_BLOCK, "shared_mem": 0, "extra_args": (n, h, w)}


def register(aot: bool = True, jit: bool = True) -> bool:
    """Register srexport::VNSC with TensorRT's plugin registry (once per process).

    Returns True when it registered now, False when it already was."""
    global _registered
    with _lock:
        if _registered:
            return False
        trt, trtp = import_tensorrt_plugin()
        _define(trt, trtp, aot=aot and hasattr(trtp, "aot_impl"), jit=jit)
        _registered = True
        return True


def _define(trt, trtp, aot: bool, jit: bool) -> None:
    TensorDesc = trtp.TensorDesc

    @trtp.register(PLUGIN_ID)
    def vnsc_desc(inp0: TensorDesc) -> TensorDesc:
        s = inp0.shape_expr
        return trtp.from_shape_expr((s[0], launch.VNSC_CHANNELS, s[2], s[3]), dtype=inp0.dtype)

    @trtp.autotune(PLUGIN_ID)
    def vnsc_autotune(inp0: TensorDesc, outputs: Tuple[TensorDesc]) -> List[trtp.AutoTuneCombination]:
        # positional alternatives: (FP32, FP32) or (FP16, FP16), linear (NCHW) layout
        return [trtp.AutoTuneCombination("FP32|FP16, FP32|FP16", "LINEAR")]

    if jit:

        @trtp.impl(PLUGIN_ID)
        def vnsc_impl(inp0: trtp.Tensor, outputs: Tuple[trtp.Tensor], stream: int) -> None:
            from srexport.kernels import cuda

            n, c, h, w = (int(d) for d in inp0.shape)
            half = inp0.dtype == trt.float16
            cuda.vnsc(inp0.data_ptr, outputs[0].data_ptr, n, h, w, dtype="float16" if half else "float32",
                      stream=stream)

    if aot:

        @trtp.aot_impl(PLUGIN_ID)
        def vnsc_aot_impl(
            inp0: TensorDesc, outputs: Tuple[TensorDesc], tactic: int
        ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
            n, _, h, w = inp0.shape_expr
            tile_h, tile_w = launch.VNSC_TILE
            params = trtp.KernelLaunchParams()
            params.grid_x = trtp.cdiv(w, tile_w)
            params.grid_y = trtp.cdiv(h, tile_h)
            params.grid_z = n
            params.block_x, params.block_y, params.block_z = launch.VNSC_BLOCK
            params.shared_mem = 0  # static shared memory only
            extra = trtp.SymIntExprs.from_tuple([trtp.SymInt32(n), trtp.SymInt32(h), trtp.SymInt32(w)])
            name = kernel_name(inp0.dtype == trt.float16)
            return name.encode(), plugin_ptx().encode(), params, extra
