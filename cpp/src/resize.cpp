// PIL's bicubic resampling of a mode "F" (float32) image, as srexport/runtime/resize.py
// calls it: Image.fromarray(plane).resize((w, h), Image.BICUBIC). Same coefficients
// (a = -0.5, support 2 x max(1, in/out), normalised in double), same two passes
// (horizontal over the rows the vertical pass needs, then vertical), double
// accumulation and a float32 store after each pass, so results match bit for bit.
#include <cmath>

#include "internal.hpp"

namespace srexport {
namespace detail {
namespace {

double bicubic_filter(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

struct Coeffs {
    int ksize = 0;
    std::vector<int> bounds;  // (xmin, count) per output pixel
    std::vector<double> k;    // ksize per output pixel
};

Coeffs precompute(int in_size, int out_size) {
    const float in0 = 0.0f, in1 = float(in_size);
    double filterscale, scale;
    filterscale = scale = double(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    const double support = 2.0 * filterscale;
    Coeffs c;
    c.ksize = int(std::ceil(support)) * 2 + 1;
    c.bounds.resize(std::size_t(out_size) * 2);
    c.k.assign(std::size_t(out_size) * c.ksize, 0.0);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = int(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = int(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double* k = &c.k[std::size_t(xx) * c.ksize];
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            const double w = bicubic_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x)
            if (ww != 0.0) k[x] /= ww;
        c.bounds[std::size_t(xx) * 2] = xmin;
        c.bounds[std::size_t(xx) * 2 + 1] = xmax;
    }
    return c;
}

}  // namespace

void bicubic_plane(const float* in, int height, int width, float* out, int out_height, int out_width) {
    if (height < 1 || width < 1 || out_height < 1 || out_width < 1) fail(Status::Argument, "bicubic: empty image");
    const bool need_h = out_width != width, need_v = out_height != height;
    Coeffs vert = precompute(height, out_height);
    const int first = vert.bounds[0];
    const int last = vert.bounds[std::size_t(out_height) * 2 - 2] + vert.bounds[std::size_t(out_height) * 2 - 1];
    std::vector<float> temp;
    const float* src = in;
    int src_w = width;
    if (need_h) {
        Coeffs hor = precompute(width, out_width);
        for (int i = 0; i < out_height; ++i) vert.bounds[std::size_t(i) * 2] -= first;
        const int rows = last - first;
        temp.resize(std::size_t(rows) * out_width);
        for (int yy = 0; yy < rows; ++yy) {
            const float* row = in + std::size_t(yy + first) * width;
            for (int xx = 0; xx < out_width; ++xx) {
                const int xmin = hor.bounds[std::size_t(xx) * 2], xmax = hor.bounds[std::size_t(xx) * 2 + 1];
                const double* k = &hor.k[std::size_t(xx) * hor.ksize];
                double ss = 0.0;
                for (int x = 0; x < xmax; ++x) ss += row[x + xmin] * k[x];
                temp[std::size_t(yy) * out_width + xx] = float(ss);
            }
        }
        src = temp.data();
        src_w = out_width;
    }
    if (need_v) {
        for (int yy = 0; yy < out_height; ++yy) {
            const int ymin = vert.bounds[std::size_t(yy) * 2], ymax = vert.bounds[std::size_t(yy) * 2 + 1];
            const double* k = &vert.k[std::size_t(yy) * vert.ksize];
            for (int xx = 0; xx < src_w; ++xx) {
                double ss = 0.0;
                for (int y = 0; y < ymax; ++y) ss += src[std::size_t(y + ymin) * src_w + xx] * k[y];
                out[std::size_t(yy) * src_w + xx] = float(ss);
            }
        }
    } else {
        // Only the horizontal pass (or none): its rows are the output rows.
        const std::size_t n = std::size_t(out_height) * out_width;
        for (std::size_t i = 0; i < n; ++i) out[i] = src[i];
    }
}

}  // namespace detail
}  // namespace srexport
