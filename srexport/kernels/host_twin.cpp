// Host twins of the sr-export CUDA kernels, compiled by g++ into a small shared library
// (srexport.kernels.compiler.host_library) and driven from Python through ctypes
// (srexport.kernels.host). Each twin runs the kernel's own __host__ __device__ code from
// the .cuh headers with the kernel's schedule (same blocks, same culling, same phases,
// same evaluation order), one simulated thread after another. So the device results equal
// the twin's bit for bit (the tests marked `gpu` check exactly that), and the twin itself
// is checked against the NumPy / PyTorch references on any machine.
#include <algorithm>
#include <memory>
#include <vector>

#include "srx_blend.cuh"
#include "srx_vnsc.cuh"

#define SRX_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

// srx_blend_accumulate_*: grid of 32x8 blocks over the bounding box (y0, x0, bh, bw);
// per block the ballot mask of the patches meeting it, then the per-pixel gather.
template <typename T>
void blend_accumulate(const T* patches, int batch, int channels, int ph, int pw, const int* offsets, const float* wy,
                      const float* wx, float* canvas, float* weight, int height, int width, int y0, int x0, int bh,
                      int bw) {
    unsigned int mask[SRX_BLEND_MASK_WORDS];
    const int words = std::min((batch + 31) / 32, SRX_BLEND_MASK_WORDS);
    for (int by = 0; by < bh; by += SRX_BLEND_BLOCK_Y) {
        for (int bx = 0; bx < bw; bx += SRX_BLEND_BLOCK_X) {
            const int ry0 = y0 + by, rx0 = x0 + bx;
            for (int word = 0; word < words; ++word) {  // what the warps' ballots produce
                unsigned int bits = 0;
                for (int lane = 0; lane < 32; ++lane) {
                    const int b = word * 32 + lane;
                    if (b < batch && srx_blend_meets(offsets[2 * b], offsets[2 * b + 1], ph, pw, ry0, rx0,
                                                     SRX_BLEND_BLOCK_Y, SRX_BLEND_BLOCK_X))
                        bits |= 1u << lane;
                }
                mask[word] = bits;
            }
            for (int ty = 0; ty < SRX_BLEND_BLOCK_Y; ++ty)
                for (int tx = 0; tx < SRX_BLEND_BLOCK_X; ++tx)
                    srx_blend_gather(mask, words, patches, offsets, channels, ph, pw, wy, wx, canvas, weight, height,
                                     width, ry0 + ty, rx0 + tx);
        }
    }
}

template <typename Out>
void blend_finalize(const float* canvas, const float* weight, int channels, int height, int width, int top, int left,
                    int out_h, int out_w, Out* out) {
    for (int y = 0; y < out_h; ++y)
        for (int x = 0; x < out_w; ++x)
            srx_blend_finalize_pixel(canvas, weight, channels, height, width, top, left, out_w, out, y, x);
}

// srx_vnsc_*: grid (ceil(w / 32), ceil(h / 16), n); each block runs the three phases.
template <typename T>
void vnsc(const T* in, int n, int h, int w, T* out) {
    const long long plane = (long long)h * w;
    std::unique_ptr<SrxVnscTile> tile(new SrxVnscTile());
    for (int img = 0; img < n; ++img) {
        const T* src = in + (long long)img * 3 * plane;
        T* dst = out + (long long)img * SRX_VNSC_CHANNELS * plane;
        for (int y0 = 0; y0 < h; y0 += SRX_VNSC_TILE_H) {
            for (int x0 = 0; x0 < w; x0 += SRX_VNSC_TILE_W) {
                srx_vnsc_phase_luma(*tile, src, plane, h, w, y0, x0, 0, 1);
                srx_vnsc_phase_normalise(*tile, h, w, y0, x0, 0, 1);
                for (int ty = 0; ty < SRX_VNSC_BLOCK_Y; ++ty)
                    for (int tx = 0; tx < SRX_VNSC_BLOCK_X; ++tx)
                        srx_vnsc_phase_products(*tile, dst, plane, h, w, y0, x0, tx, ty);
            }
        }
    }
}

}  // namespace

SRX_EXPORT int srx_host_abi_version() { return 3; }

SRX_EXPORT int srx_host_blend_max_batch() { return SRX_BLEND_MAX_BATCH; }

SRX_EXPORT int srx_host_blend_max_channels() { return SRX_BLEND_MAX_CHANNELS; }

SRX_EXPORT int srx_host_vnsc_shared_bytes() { return (int)sizeof(SrxVnscTile); }

SRX_EXPORT void srx_host_blend_accumulate_f32(const float* patches, int batch, int channels, int ph, int pw,
                                              const int* offsets, const float* wy, const float* wx, float* canvas,
                                              float* weight, int height, int width, int y0, int x0, int bh, int bw) {
    blend_accumulate(patches, batch, channels, ph, pw, offsets, wy, wx, canvas, weight, height, width, y0, x0, bh,
                     bw);
}

SRX_EXPORT void srx_host_blend_accumulate_f16(const unsigned short* patches, int batch, int channels, int ph,
                                              int pw, const int* offsets, const float* wy, const float* wx,
                                              float* canvas, float* weight, int height, int width, int y0, int x0,
                                              int bh, int bw) {
    blend_accumulate(patches, batch, channels, ph, pw, offsets, wy, wx, canvas, weight, height, width, y0, x0, bh,
                     bw);
}

SRX_EXPORT void srx_host_blend_finalize_u8(const float* canvas, const float* weight, int channels, int height,
                                           int width, int top, int left, int out_h, int out_w, unsigned char* out) {
    blend_finalize(canvas, weight, channels, height, width, top, left, out_h, out_w, out);
}

SRX_EXPORT void srx_host_blend_finalize_u16(const float* canvas, const float* weight, int channels, int height,
                                            int width, int top, int left, int out_h, int out_w, unsigned short* out) {
    blend_finalize(canvas, weight, channels, height, width, top, left, out_h, out_w, out);
}

SRX_EXPORT void srx_host_blend_finalize_f32(const float* canvas, const float* weight, int channels, int height,
                                            int width, int top, int left, int out_h, int out_w, float* out) {
    blend_finalize(canvas, weight, channels, height, width, top, left, out_h, out_w, out);
}

SRX_EXPORT void srx_host_vnsc_f32(const float* in, int n, int h, int w, float* out) { vnsc(in, n, h, w, out); }

SRX_EXPORT void srx_host_vnsc_f16(const unsigned short* in, int n, int h, int w, unsigned short* out) {
    vnsc(in, n, h, w, out);
}

SRX_EXPORT void srx_host_vnsc_taps(float* taps2) {
    for (int dy = 0; dy < SRX_VNSC_TAPS; ++dy)
        for (int dx = 0; dx < SRX_VNSC_TAPS; ++dx)
            taps2[dy * SRX_VNSC_TAPS + dx] = srx_vnsc_tap2(dy - SRX_VNSC_RADIUS, dx - SRX_VNSC_RADIUS);
}

SRX_EXPORT void srx_host_vnsc_luma(const float* rgb, long long count, float* y) {
    for (long long i = 0; i < count; ++i) y[i] = srx_vnsc_luma(rgb[i], rgb[count + i], rgb[2 * count + i]);
}

SRX_EXPORT void srx_host_half_to_float(const unsigned short* h, long long count, float* f) {
    for (long long i = 0; i < count; ++i) f[i] = srx_half_to_float(h[i]);
}

SRX_EXPORT void srx_host_float_to_half(const float* f, long long count, unsigned short* h) {
    for (long long i = 0; i < count; ++i) h[i] = srx_float_to_half(f[i]);
}
