// Window blending: the per-pixel math and schedule pieces shared by the CUDA kernels
// (srx_blend.cu) and the host twin (host_twin.cpp). The reference is
// srexport.runtime.blend.Blender:
//   canvas[c, y, x] += patch[c, y - top, x - left] * window[y - top, x - left]
//   weight[y, x]    += window[y - top, x - left]
// with window = outer(wy, wx) in float32, and result = canvas / weight. Adding the patches
// of a batch to a canvas pixel in batch order gives exactly the float32 sums Blender gives.
#ifndef SRX_BLEND_CUH
#define SRX_BLEND_CUH

#include "srx_common.cuh"

#define SRX_BLEND_MAX_CHANNELS 4
#define SRX_BLEND_MAX_BATCH 1024  // patches per launch (the launch wrapper splits larger batches)
#define SRX_BLEND_MASK_WORDS (SRX_BLEND_MAX_BATCH / 32)
#define SRX_BLEND_BLOCK_X 32
#define SRX_BLEND_BLOCK_Y 8

// The window weight of patch pixel (ty, tx): float32 outer product, as numpy.outer.
SRX_HD float srx_window(const float* wy, const float* wx, int ty, int tx) {
    return srx_mul(srx_ldg(wy + ty), srx_ldg(wx + tx));
}

// Does a ph x pw patch at (top, left) meet the rh x rw rectangle at (ry0, rx0)?
SRX_HD bool srx_blend_meets(int top, int left, int ph, int pw, int ry0, int rx0, int rh, int rw) {
    return top < ry0 + rh && top + ph > ry0 && left < rx0 + rw && left + pw > rx0;
}

// Add patch `b`'s contribution to the canvas pixel (y, x) held in acc[0..channels) and
// wsum. Returns false when the patch does not cover the pixel.
template <typename T>
SRX_HD bool srx_blend_add(float* acc, float& wsum, const T* patches, int b, int channels, int ph, int pw,
                          int top, int left, const float* wy, const float* wx, int y, int x) {
    const int ty = y - top;
    const int tx = x - left;
    if (ty < 0 || ty >= ph || tx < 0 || tx >= pw) return false;
    const float w = srx_window(wy, wx, ty, tx);
    const long long plane = (long long)ph * pw;
    const long long base = (long long)b * channels * plane + (long long)ty * pw + tx;
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
    for (int c = 0; c < SRX_BLEND_MAX_CHANNELS; ++c) {  // constant trip count: acc stays in registers
        if (c < channels) acc[c] = srx_add(acc[c], srx_mul(srx_load(patches, base + c * plane), w));
    }
    wsum = srx_add(wsum, w);
    return true;
}

// The gather step of one canvas pixel: add, in batch order, the patches whose bits are set
// in mask[0..words) (the patches meeting the pixel's block) and that cover (y, x); the
// pixel is read and written once, by its owner only: no atomics, no races.
template <typename T>
SRX_HD void srx_blend_gather(const unsigned int* mask, int words, const T* patches, const int* offsets, int channels,
                             int ph, int pw, const float* wy, const float* wx, float* canvas, float* weight,
                             int height, int width, int y, int x) {
    if (y < 0 || x < 0 || y >= height || x >= width) return;
    const long long plane = (long long)height * width;
    const long long pix = (long long)y * width + x;
    float acc[SRX_BLEND_MAX_CHANNELS] = {0.0f, 0.0f, 0.0f, 0.0f};
    float wsum = 0.0f;
    bool loaded = false, touched = false;
    for (int word = 0; word < words; ++word) {
        unsigned int bits = mask[word];
        while (bits) {
            const int b = word * 32 + (srx_ffs(bits) - 1);
            bits &= bits - 1u;
            const int top = srx_ldg(offsets + 2 * b), left = srx_ldg(offsets + 2 * b + 1);
            if (y < top || y >= top + ph || x < left || x >= left + pw) continue;
            if (!loaded) {  // read the canvas pixel on its first covering patch only
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
                for (int c = 0; c < SRX_BLEND_MAX_CHANNELS; ++c)
                    if (c < channels) acc[c] = canvas[c * plane + pix];
                wsum = weight[pix];
                loaded = true;
            }
            touched |= srx_blend_add(acc, wsum, patches, b, channels, ph, pw, top, left, wy, wx, y, x);
        }
    }
    if (!touched) return;
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
    for (int c = 0; c < SRX_BLEND_MAX_CHANNELS; ++c)
        if (c < channels) canvas[c * plane + pix] = acc[c];
    weight[pix] = wsum;
}

// canvas / weight for one value (IEEE division, as numpy).
SRX_HD float srx_blend_value(float canvas, float weight) { return srx_div(canvas, weight); }

// round(clamp(v, 0, 1) * peak), half to even as numpy.rint; NaN (a pixel no patch
// covered: 0 / 0) maps to 0.
SRX_HD unsigned int srx_quantize(float v, float peak) {
    const float c = srx_min(srx_max(v, 0.0f), 1.0f);
    return (unsigned int)srx_rint(srx_mul(c, peak));
}

// Finalised stores: uint8 / uint16 quantized, float32 as is (unclamped).
SRX_HD void srx_finalize_store(unsigned char* out, long long i, float v) { out[i] = (unsigned char)srx_quantize(v, 255.0f); }
SRX_HD void srx_finalize_store(unsigned short* out, long long i, float v) {
    out[i] = (unsigned short)srx_quantize(v, 65535.0f);
}
SRX_HD void srx_finalize_store(float* out, long long i, float v) { out[i] = v; }

// One output pixel of the finalisation: canvas / weight at canvas pixel (y + top, x + left)
// written interleaved (HWC) at out[(y * out_w + x) * channels + c].
template <typename Out>
SRX_HD void srx_blend_finalize_pixel(const float* canvas, const float* weight, int channels, int height, int width,
                                     int top, int left, int out_w, Out* out, int y, int x) {
    const long long plane = (long long)height * width;
    const long long pix = (long long)(y + top) * width + (x + left);
    const float w = weight[pix];
    const long long o = ((long long)y * out_w + x) * channels;
    for (int c = 0; c < channels; ++c) srx_finalize_store(out, o + c, srx_blend_value(canvas[c * plane + pix], w));
}

#endif  // SRX_BLEND_CUH
