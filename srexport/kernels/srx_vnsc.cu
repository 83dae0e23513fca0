// Fused VN+SC: RGB (N, 3, H, W) -> the 49 shifted products (N, 49, H, W) in one kernel,
// float32 or float16 storage (float32 math). Nothing between the input and the products
// leaves shared memory; see srx_vnsc.cuh for the tile schedule (32x16 output pixels per
// 32x8-thread block, 8,272 bytes of static shared memory) and the per-element math.
// Grid: (ceil(W / 32), ceil(H / 16), N). The signature (input, int scalars, output) is
// the one TensorRT AOT plugins launch (srexport.kernels.trt_plugin).
#include "srx_vnsc.cuh"

template <typename T>
__device__ __forceinline__ void vnsc_block(const T* __restrict__ in, int n, int h, int w, T* __restrict__ out) {
    __shared__ SrxVnscTile tile;
    const int img = blockIdx.z;
    if (img >= n) return;
    const int tid = threadIdx.y * SRX_VNSC_BLOCK_X + threadIdx.x;
    const int nthreads = SRX_VNSC_BLOCK_X * SRX_VNSC_BLOCK_Y;
    const int x0 = blockIdx.x * SRX_VNSC_TILE_W;
    const int y0 = blockIdx.y * SRX_VNSC_TILE_H;
    const long long plane = (long long)h * w;
    srx_vnsc_phase_luma(tile, in + (long long)img * 3 * plane, plane, h, w, y0, x0, tid, nthreads);
    __syncthreads();
    srx_vnsc_phase_normalise(tile, h, w, y0, x0, tid, nthreads);
    __syncthreads();
    srx_vnsc_phase_products(tile, out + (long long)img * SRX_VNSC_CHANNELS * plane, plane, h, w, y0, x0,
                            threadIdx.x, threadIdx.y);
}

extern "C" __global__ void __launch_bounds__(SRX_VNSC_BLOCK_X * SRX_VNSC_BLOCK_Y)
    srx_vnsc_f32(const float* __restrict__ in, int n, int h, int w, float* __restrict__ out) {
    vnsc_block(in, n, h, w, out);
}

extern "C" __global__ void __launch_bounds__(SRX_VNSC_BLOCK_X * SRX_VNSC_BLOCK_Y)
    srx_vnsc_f16(const unsigned short* __restrict__ in, int n, int h, int w, unsigned short* __restrict__ out) {
    vnsc_block(in, n, h, w, out);
}
