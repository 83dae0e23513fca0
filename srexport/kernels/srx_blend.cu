// Window blending on the GPU: the twin of srexport.runtime.blend.Blender.
//
// srx_blend_accumulate_{f32,f16}: adds a batch of NCHW output patches, weighted by the
// separable window outer(wy, wx), into float32 planar canvas (C x H x W) and weight (H x W)
// planes at per-patch (top, left) offsets. Patches may hang over the canvas edges (the
// outside part is dropped) and may overlap each other arbitrarily.
//
// Schedule: conflict-free gather, no atomics. Grid = the batch's bounding box on the
// canvas (from (y0, x0)) in 32x8 blocks; one thread owns one canvas pixel. A block first
// culls the batch to the patches meeting its rectangle (warp w ballots patches
// 32k..32k+31 for k = w, w+8, ... into a shared bitmask), then each thread adds the
// covering patches in batch order with plain loads and stores. No two threads write one
// address, so the result is deterministic and bit-identical to the CPU Blender adding the
// same patches in the same order (float atomics would make the summation order, and so the
// last bits, depend on scheduling), and a canvas pixel is read and written once per batch
// instead of once per covering patch. Batches of more than SRX_BLEND_MAX_BATCH patches are
// split by the launcher into launches on one stream (ordered, so still exact).
//
// srx_blend_finalize_{u8,u16,f32}: canvas / weight over a region, written interleaved HWC:
// uint8/uint16 as round(clamp(v, 0, 1) * peak) (half to even, as numpy.rint), float32
// unclamped. One thread per output pixel, 32x8 blocks.
#include "srx_blend.cuh"

template <typename T>
__device__ __forceinline__ void blend_accumulate(const T* __restrict__ patches, int batch, int channels, int ph,
                                                 int pw, const int* __restrict__ offsets,
                                                 const float* __restrict__ wy, const float* __restrict__ wx,
                                                 float* __restrict__ canvas, float* __restrict__ weight,
                                                 int height, int width, int y0, int x0) {
    __shared__ unsigned int mask[SRX_BLEND_MASK_WORDS];
    const int lane = threadIdx.x;  // blockDim = (32, 8): one warp per block row
    const int warp = threadIdx.y;
    const int ry0 = y0 + blockIdx.y * SRX_BLEND_BLOCK_Y;
    const int rx0 = x0 + blockIdx.x * SRX_BLEND_BLOCK_X;
    const int words = min((batch + 31) / 32, SRX_BLEND_MASK_WORDS);
    for (int word = warp; word < words; word += SRX_BLEND_BLOCK_Y) {
        const int b = word * 32 + lane;
        bool hit = false;
        if (b < batch)
            hit = srx_blend_meets(__ldg(offsets + 2 * b), __ldg(offsets + 2 * b + 1), ph, pw, ry0, rx0,
                                  SRX_BLEND_BLOCK_Y, SRX_BLEND_BLOCK_X);
        const unsigned int bits = __ballot_sync(0xffffffffu, hit);
        if (lane == 0) mask[word] = bits;
    }
    __syncthreads();
    srx_blend_gather(mask, words, patches, offsets, channels, ph, pw, wy, wx, canvas, weight, height, width,
                     ry0 + threadIdx.y, rx0 + lane);
}

extern "C" __global__ void __launch_bounds__(SRX_BLEND_BLOCK_X * SRX_BLEND_BLOCK_Y)
    srx_blend_accumulate_f32(const float* __restrict__ patches, int batch, int channels, int ph, int pw,
                             const int* __restrict__ offsets, const float* __restrict__ wy,
                             const float* __restrict__ wx, float* __restrict__ canvas, float* __restrict__ weight,
                             int height, int width, int y0, int x0) {
    blend_accumulate(patches, batch, channels, ph, pw, offsets, wy, wx, canvas, weight, height, width, y0, x0);
}

extern "C" __global__ void __launch_bounds__(SRX_BLEND_BLOCK_X * SRX_BLEND_BLOCK_Y)
    srx_blend_accumulate_f16(const unsigned short* __restrict__ patches, int batch, int channels, int ph, int pw,
                             const int* __restrict__ offsets, const float* __restrict__ wy,
                             const float* __restrict__ wx, float* __restrict__ canvas, float* __restrict__ weight,
                             int height, int width, int y0, int x0) {
    blend_accumulate(patches, batch, channels, ph, pw, offsets, wy, wx, canvas, weight, height, width, y0, x0);
}

template <typename Out>
__device__ __forceinline__ void blend_finalize(const float* __restrict__ canvas, const float* __restrict__ weight,
                                               int channels, int height, int width, int top, int left, int out_h,
                                               int out_w, Out* __restrict__ out) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    srx_blend_finalize_pixel(canvas, weight, channels, height, width, top, left, out_w, out, y, x);
}

extern "C" __global__ void __launch_bounds__(256)
    srx_blend_finalize_u8(const float* __restrict__ canvas, const float* __restrict__ weight, int channels,
                          int height, int width, int top, int left, int out_h, int out_w,
                          unsigned char* __restrict__ out) {
    blend_finalize(canvas, weight, channels, height, width, top, left, out_h, out_w, out);
}

extern "C" __global__ void __launch_bounds__(256)
    srx_blend_finalize_u16(const float* __restrict__ canvas, const float* __restrict__ weight, int channels,
                           int height, int width, int top, int left, int out_h, int out_w,
                           unsigned short* __restrict__ out) {
    blend_finalize(canvas, weight, channels, height, width, top, left, out_h, out_w, out);
}

extern "C" __global__ void __launch_bounds__(256)
    srx_blend_finalize_f32(const float* __restrict__ canvas, const float* __restrict__ weight, int channels,
                           int height, int width, int top, int left, int out_h, int out_w,
                           float* __restrict__ out) {
    blend_finalize(canvas, weight, channels, height, width, top, left, out_h, out_w, out);
}
