// Shared helpers for the sr-export kernels and their host twins.
//
// Everything in the kernels/*.cuh headers compiles three ways: with nvcc (device code),
// with NVRTC (device code, no standard headers) and with g++ (the host twin library that
// the tests drive). The per-element math uses explicitly rounded operations
// (srx_mul/srx_add/srx_sub/srx_div/srx_sqrt): nvcc never contracts them into FMAs
// and g++ compiles the twin with -ffp-contract=off, so a host twin and the device kernel
// produce bit-identical floats for the same evaluation order.
#ifndef SRX_COMMON_CUH
#define SRX_COMMON_CUH

#if defined(__CUDACC__)
#define SRX_HD __host__ __device__ __forceinline__
#define SRX_DEVICE_CODE 1
#else
#define __host__
#define __device__
#define __forceinline__ inline
#define SRX_HD inline
#endif

#if !defined(__CUDACC_RTC__)
#include <cmath>
#include <cstring>
#endif

// The CUDA device pass sees __CUDA_ARCH__; the host passes of nvcc and g++ do not.
#if defined(__CUDA_ARCH__)
#define SRX_ON_DEVICE 1
#endif

SRX_HD float srx_mul(float a, float b) {
#ifdef SRX_ON_DEVICE
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

SRX_HD float srx_add(float a, float b) {
#ifdef SRX_ON_DEVICE
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

SRX_HD float srx_sub(float a, float b) {
#ifdef SRX_ON_DEVICE
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

SRX_HD float srx_div(float a, float b) {
#ifdef SRX_ON_DEVICE
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

SRX_HD float srx_sqrt(float a) {
#ifdef SRX_ON_DEVICE
    return __fsqrt_rn(a);
#else
    return std::sqrt(a);
#endif
}

// max(a, 0) / min(a, 1) with NaN mapped to the bound (fmaxf/fminf semantics on both sides).
SRX_HD float srx_max(float a, float b) {
#ifdef SRX_ON_DEVICE
    return fmaxf(a, b);
#else
    return std::fmax(a, b);
#endif
}

SRX_HD float srx_min(float a, float b) {
#ifdef SRX_ON_DEVICE
    return fminf(a, b);
#else
    return std::fmin(a, b);
#endif
}

// Round half to even, as numpy.rint under the default rounding mode.
SRX_HD float srx_rint(float a) {
#ifdef SRX_ON_DEVICE
    return rintf(a);
#else
    return std::nearbyint(a);
#endif
}

// Read-only cached load on the device, plain load on the host.
template <typename T>
SRX_HD T srx_ldg(const T* p) {
#ifdef SRX_ON_DEVICE
    return __ldg(p);
#else
    return *p;
#endif
}

// Index (1-based) of the lowest set bit, 0 for 0, as CUDA's __ffs.
SRX_HD int srx_ffs(unsigned int v) {
#ifdef SRX_ON_DEVICE
    return __ffs((int)v);
#else
    return __builtin_ffs((int)v);
#endif
}

SRX_HD int srx_clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// IEEE binary16 <-> binary32 without cuda_fp16.h (NVRTC and g++ need no CUDA headers).
// Device: the hardware conversion instructions. Host: bit manipulation, round to
// nearest even, the same results as cvt.f32.f16 / cvt.rn.f16.f32 and numpy.float16.
SRX_HD float srx_half_to_float(unsigned short h) {
#ifdef SRX_ON_DEVICE
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    unsigned int exp = (h >> 10) & 0x1fu;
    unsigned int man = h & 0x3ffu;
    unsigned int bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (man << 13);  // inf / nan (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal half: normalise
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while ((man & 0x400u) == 0);
        bits = sign | ((unsigned int)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
#endif
}

SRX_HD unsigned short srx_float_to_half(float f) {
#ifdef SRX_ON_DEVICE
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    unsigned int bits;
    std::memcpy(&bits, &f, sizeof bits);
    unsigned int sign = (bits >> 16) & 0x8000u;
    unsigned int absv = bits & 0x7fffffffu;
    if (absv >= 0x7f800000u) {  // inf or nan
        return (unsigned short)(sign | 0x7c00u | (absv > 0x7f800000u ? 0x200u : 0u));
    }
    if (absv >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
        return (unsigned short)(sign | 0x7c00u);
    }
    if (absv < 0x38800000u) {  // below the smallest normal half: subnormal or zero
        if (absv < 0x33000000u) {  // < 2^-25: rounds to zero (2^-25 itself ties to 0)
            return (unsigned short)sign;
        }
        unsigned int exp = absv >> 23;
        unsigned int man = (absv & 0x7fffffu) | 0x800000u;
        unsigned int shift = 126u - exp;  // so that the result is man >> (shift) in units of 2^-24
        unsigned int half_man = man >> shift;
        unsigned int rem = man & ((1u << shift) - 1u);
        unsigned int halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (half_man & 1u))) half_man++;
        return (unsigned short)(sign | half_man);
    }
    unsigned int h = ((absv - 0x38000000u) >> 13);  // rebias exponent, truncate mantissa
    unsigned int rem = absv & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (unsigned short)(sign | h);
#endif
}

// Element loads/stores for the two storage types the kernels accept.
SRX_HD float srx_load(const float* p, long long i) { return p[i]; }
SRX_HD float srx_load(const unsigned short* p, long long i) { return srx_half_to_float(p[i]); }
SRX_HD void srx_store(float* p, long long i, float v) { p[i] = v; }
SRX_HD void srx_store(unsigned short* p, long long i, float v) { p[i] = srx_float_to_half(v); }

#endif  // SRX_COMMON_CUH
