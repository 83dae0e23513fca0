"""Custom CUDA kernels of sr-export and everything around them.

- srx_blend.cu / srx_vnsc.cu (+ .cuh): window blending (accumulate, finalise to HWC
  uint8/uint16/float32) and the fused VN+SC correlator; the per-element math and the
  schedules live in __host__ __device__ code in the headers.
- host_twin.cpp + `host`: the same code compiled by g++ into a library driven by ctypes;
  tests compare it with the NumPy blender and the PyTorch VN+SC (no GPU needed).
- `build`: g++ host library and nvcc fatbins (sm_75..sm_90 + PTX), cached, ptxas reports.
- `cuda`: loading (fatbin or NVRTC) and launching through cuda-python (optional).
- `trt_plugin`: the srexport::VNSC TensorRT plugin; `onnx_plugin`: the graph rewrite that
  puts it into an exported discriminator (`sr-export build --plugins`).

Importing this package needs neither a GPU, cuda-python, TensorRT nor a compiler.
"""
