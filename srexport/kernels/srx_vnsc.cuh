// VN+SC (variance normalisation + shift correlator): the per-element math shared by the
// fused CUDA kernel (srx_vnsc.cu) and the host twin (host_twin.cpp). The reference is
// srexport.models.discriminator.VNSC (models.md):
//   Y  = 255 (0.299 R + 0.587 G + 0.114 B)
//   mu = G(Y), s2 = G(Y^2) - mu^2       G: 7x7 Gaussian, sigma 1.17, replicate padding
//   N  = (Y - mu) / (sqrt(max(s2, 0)) + 1)
//   V[7(p+3) + (q+3)](i, j) = N(i, j) N(i+p, j+q), p, q in -3..3, N = 0 outside the image
// Like the reference, mu and s2 are evaluated on the differences to the centre pixel,
// d_k = Y(i + k) - Y(i) over the 49 taps g_k:
//   Y - mu = -sum_k g_k d_k,   s2 = sum_k g_k d_k^2 - (sum_k g_k d_k)^2
// (equal in exact arithmetic since the taps sum to 1; the literal one-pass form cancels
// catastrophically in float32 on bright flat areas). Every operation is the reference's,
// in its order and with its float32 rounding (IEEE sqrt and division), so the kernel
// reproduces the reference to the last bit of PyTorch's own vectorised sqrt (measured:
// 2e-7 relative).
#ifndef SRX_VNSC_CUH
#define SRX_VNSC_CUH

#include "srx_common.cuh"

#define SRX_VNSC_RADIUS 3  // Gaussian radius (7 taps)
#define SRX_VNSC_SHIFT 3   // shifts -3..3
#define SRX_VNSC_TAPS (2 * SRX_VNSC_RADIUS + 1)
#define SRX_VNSC_CHANNELS ((2 * SRX_VNSC_SHIFT + 1) * (2 * SRX_VNSC_SHIFT + 1))

// Luminance on a [0, 255] scale, with the reference's float32 operation order:
// ((0.299 R + 0.587 G) + 0.114 B) * 255, every product and sum rounded.
SRX_HD float srx_vnsc_luma(float r, float g, float b) {
    float s = srx_add(srx_mul(0.299f, r), srx_mul(0.587f, g));
    s = srx_add(s, srx_mul(0.114f, b));
    return srx_mul(255.0f, s);
}

// The 2D taps of the reference (gaussian_kernel(): outer product normalised in double,
// rounded to float), by |dy| and |dx|; the variance pass weights with these.
SRX_HD float srx_vnsc_tap2(int dy, int dx) {
    int a = dy < 0 ? -dy : dy, b = dx < 0 ? -dx : dx;
    switch (a * 4 + b) {
        case 0: return 1.167431623e-01f;
        case 1: return 8.102190495e-02f;
        case 2: return 2.708416432e-02f;
        case 3: return 4.360842984e-03f;
        case 4: return 8.102190495e-02f;
        case 5: return 5.623069406e-02f;
        case 6: return 1.879690960e-02f;
        case 7: return 3.026505234e-03f;
        case 8: return 2.708416432e-02f;
        case 9: return 1.879690960e-02f;
        case 10: return 6.283468567e-03f;
        case 11: return 1.011706190e-03f;
        case 12: return 4.360842984e-03f;
        case 13: return 3.026505234e-03f;
        case 14: return 1.011706190e-03f;
        default: return 1.628956234e-04f;
    }
}

// The two moments of the differences to the centre value yc over the 7x7 window whose
// top-left element is win[0] (row stride `stride`), in the reference's order and rounding:
// for dy, dx: d = Y - yc; t = g * d; md += t; md2 += t * d.
SRX_HD void srx_vnsc_moments(const float* win, int stride, float yc, float& md, float& md2) {
    float a = 0.0f, b = 0.0f;
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
    for (int dy = 0; dy < SRX_VNSC_TAPS; ++dy) {
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
        for (int dx = 0; dx < SRX_VNSC_TAPS; ++dx) {
            const float d = srx_sub(win[dy * stride + dx], yc);
            const float t = srx_mul(srx_vnsc_tap2(dy - SRX_VNSC_RADIUS, dx - SRX_VNSC_RADIUS), d);
            a = srx_add(a, t);
            b = srx_add(b, srx_mul(t, d));
        }
    }
    md = a;
    md2 = b;
}

// N = (Y - mu) / (sqrt(max(s2, 0)) + 1) = -md / (sqrt(max(md2 - md^2, 0)) + 1).
SRX_HD float srx_vnsc_normalise(float md, float md2) {
    const float s2 = srx_sub(md2, srx_mul(md, md));
    const float sd = srx_sqrt(srx_max(s2, 0.0f));
    return srx_div(-md, srx_add(sd, 1.0f));
}

// -- the fused kernel's tile schedule (shared with the host twin, which runs the same
// phases block by block) ----------------------------------------------------------------
// A block of 32x8 threads produces a 32-wide, 16-tall output tile (two rows per thread):
//   1. luminance of the tile plus a 6-pixel halo (3 for the Gaussian, 3 for the shifts),
//      read with replicate clamping:                                           ys[28][44]
//   2. for the tile plus the 3-pixel shift halo: the moments of the differences over the
//      7x7 window of ys, then N; 0 outside the image (zero padding of the shifts):
//                                                                              ns[22][38]
//   3. each output pixel multiplies its N by its 49 neighbours and writes 49 planes (a
//      warp writes 32 consecutive values of a plane: coalesced).
// Shared memory: (28*44 + 22*38) * 4 = 8,272 bytes per block.
#define SRX_VNSC_TILE_W 32
#define SRX_VNSC_TILE_H 16
#define SRX_VNSC_BLOCK_X 32
#define SRX_VNSC_BLOCK_Y 8
#define SRX_VNSC_HALO (SRX_VNSC_RADIUS + SRX_VNSC_SHIFT)
#define SRX_VNSC_YH (SRX_VNSC_TILE_H + 2 * SRX_VNSC_HALO)   // 28
#define SRX_VNSC_YW (SRX_VNSC_TILE_W + 2 * SRX_VNSC_HALO)   // 44
#define SRX_VNSC_NH (SRX_VNSC_TILE_H + 2 * SRX_VNSC_SHIFT)  // 22
#define SRX_VNSC_NW (SRX_VNSC_TILE_W + 2 * SRX_VNSC_SHIFT)  // 38

struct SrxVnscTile {
    float ys[SRX_VNSC_YH][SRX_VNSC_YW];
    float ns[SRX_VNSC_NH][SRX_VNSC_NW];
};

// Phases 1-2 split their elements over `nthreads` threads; thread `tid` does its share.
template <typename T>
SRX_HD void srx_vnsc_phase_luma(SrxVnscTile& t, const T* src, long long plane, int h, int w, int y0, int x0,
                                int tid, int nthreads) {
    for (int i = tid; i < SRX_VNSC_YH * SRX_VNSC_YW; i += nthreads) {
        const int r = i / SRX_VNSC_YW, c = i - r * SRX_VNSC_YW;
        const int gy = srx_clampi(y0 - SRX_VNSC_HALO + r, 0, h - 1);
        const int gx = srx_clampi(x0 - SRX_VNSC_HALO + c, 0, w - 1);
        const long long p = (long long)gy * w + gx;
        t.ys[r][c] = srx_vnsc_luma(srx_load(src, p), srx_load(src, plane + p), srx_load(src, 2 * plane + p));
    }
}

SRX_HD void srx_vnsc_phase_normalise(SrxVnscTile& t, int h, int w, int y0, int x0, int tid, int nthreads) {
    for (int i = tid; i < SRX_VNSC_NH * SRX_VNSC_NW; i += nthreads) {
        const int r = i / SRX_VNSC_NW, c = i - r * SRX_VNSC_NW;
        const int gy = y0 - SRX_VNSC_SHIFT + r, gx = x0 - SRX_VNSC_SHIFT + c;
        float v = 0.0f;
        if (gy >= 0 && gy < h && gx >= 0 && gx < w) {
            float md, md2;
            srx_vnsc_moments(&t.ys[r][c], SRX_VNSC_YW, t.ys[r + SRX_VNSC_RADIUS][c + SRX_VNSC_RADIUS], md, md2);
            v = srx_vnsc_normalise(md, md2);
        }
        t.ns[r][c] = v;
    }
}

// Phase 3 for thread (tx, ty): output rows ty, ty + 8 of the tile, column tx.
template <typename T>
SRX_HD void srx_vnsc_phase_products(const SrxVnscTile& t, T* dst, long long plane, int h, int w, int y0, int x0,
                                    int tx, int ty) {
    const int j = x0 + tx;
    for (int row = ty; row < SRX_VNSC_TILE_H; row += SRX_VNSC_BLOCK_Y) {
        const int i = y0 + row;
        if (i >= h || j >= w) continue;
        const float centre = t.ns[row + SRX_VNSC_SHIFT][tx + SRX_VNSC_SHIFT];
        long long o = (long long)i * w + j;
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
        for (int p = 0; p < 2 * SRX_VNSC_SHIFT + 1; ++p) {
#ifdef SRX_ON_DEVICE
#pragma unroll
#endif
            for (int q = 0; q < 2 * SRX_VNSC_SHIFT + 1; ++q) {  // channel 7p + q: shift (p - 3, q - 3)
                srx_store(dst, o, srx_mul(centre, t.ns[row + p][tx + q]));
                o += plane;
            }
        }
    }
}

#endif  // SRX_VNSC_CUH
