// Tile-consistent noise fields: the twin of srexport/runtime/noise.py, bit for bit.
//
// A field is a function of (seed, stream, row, column) in whole-image coordinates:
// counter (column + 2^31, row + 2^31, stream, 0) and key (seed low, seed high) go
// through Philox4x32-10; words 0 and 1 become uniforms (x + 0.5) * 2^-32 in double and a
// Box-Muller transform sqrt(-2 log u1) * cos(2 pi u2), rounded once to float32.
#include <cmath>

#include "internal.hpp"

namespace srexport {
namespace detail {

std::array<std::uint32_t, 4> philox4x32(std::array<std::uint32_t, 4> c, std::uint32_t k0, std::uint32_t k1,
                                        int rounds) {
    constexpr std::uint64_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < rounds; ++r) {
        const std::uint64_t p0 = M0 * c[0], p1 = M1 * c[2];
        const std::uint32_t hi0 = std::uint32_t(p0 >> 32), lo0 = std::uint32_t(p0);
        const std::uint32_t hi1 = std::uint32_t(p1 >> 32), lo1 = std::uint32_t(p1);
        c = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
        k0 += W0, k1 += W1;
    }
    return c;
}

}  // namespace detail

void normal_field(std::uint64_t seed, std::uint32_t stream, std::int64_t top, std::int64_t left, int height,
                  int width, float* out) {
    constexpr std::int64_t OFFSET = std::int64_t(1) << 31;  // signed coordinates -> uint32
    const double two_pi = 2.0 * M_PI;                        // numpy: (2.0 * np.pi) * u2
    const double inv = std::ldexp(1.0, -32);
    const std::uint32_t k0 = std::uint32_t(seed & 0xFFFFFFFFu), k1 = std::uint32_t(seed >> 32);
    for (int y = 0; y < height; ++y) {
        const std::uint32_t row = std::uint32_t(top + y + OFFSET);
        for (int x = 0; x < width; ++x) {
            const std::uint32_t col = std::uint32_t(left + x + OFFSET);
            const auto r = detail::philox4x32({col, row, stream, 0u}, k0, k1);
            const double u1 = (double(r[0]) + 0.5) * inv;
            const double u2 = (double(r[1]) + 0.5) * inv;
            out[std::size_t(y) * width + x] = float(std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2));
        }
    }
}

std::vector<float> normal_field(std::uint64_t seed, std::uint32_t stream, std::int64_t top, std::int64_t left,
                                int height, int width) {
    if (height < 0 || width < 0) detail::fail(Status::Argument, "noise field size must be >= 0");
    std::vector<float> out(std::size_t(height) * std::size_t(width));
    normal_field(seed, stream, top, left, height, width, out.data());
    return out;
}

}  // namespace srexport
