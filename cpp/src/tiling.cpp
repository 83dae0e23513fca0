// Tiling, windows, blending and padding: the twins of srexport/runtime/tiler.py,
// blend.py and padding.py. Float32 products and sums in the Python order (the library
// is compiled with -ffp-contract=off, so no fused multiply-adds change the last bits).
#include <cmath>

#include "internal.hpp"

namespace srexport {
namespace detail {

std::vector<int> axis_starts(int length, int patch, int overlap) {
    if (length <= patch) return {0};
    const int stride = patch - overlap;
    std::vector<int> starts;
    for (int s = 0; s < length - patch; s += stride) starts.push_back(s);
    starts.push_back(length - patch);
    return starts;
}

namespace {
int legal_patch(int requested, const ShapeRules& rules) {
    if (requested < rules.min_size)
        fail(Status::Shape, "patch " + std::to_string(requested) + " is smaller than the model's minimum " +
                                std::to_string(rules.min_size));
    return rules.legal_at_least(requested);
}
}  // namespace

TilePlan plan_tiles(int height, int width, int patch_h, int patch_w, int overlap, const ShapeRules& rules) {
    if (height < 1 || width < 1)
        fail(Status::Shape, "empty image (" + std::to_string(height) + "x" + std::to_string(width) + ")");
    int ph = legal_patch(patch_h, rules), pw = legal_patch(patch_w, rules);
    if (overlap < 0 || overlap >= std::min(ph, pw))
        fail(Status::Shape, "overlap " + std::to_string(overlap) + " must be >= 0 and smaller than the patch (" +
                                std::to_string(ph) + "x" + std::to_string(pw) + ")");
    // One patch covering the whole image is cheaper than several overlapping ones.
    ph = std::min(ph, rules.legal_at_least(height));
    pw = std::min(pw, rules.legal_at_least(width));
    TilePlan plan;
    plan.height = height, plan.width = width, plan.patch_h = ph, plan.patch_w = pw;
    plan.extra_h = std::max(0, ph - height), plan.extra_w = std::max(0, pw - width);
    const auto rows = axis_starts(height + plan.extra_h, ph, overlap);
    const auto cols = axis_starts(width + plan.extra_w, pw, overlap);
    for (int top : rows)
        for (int left : cols) plan.tiles.emplace_back(top, left);
    return plan;
}

bool known_window(const std::string& kind) { return kind == "hamming" || kind == "bartlett" || kind == "none"; }

std::vector<float> window_1d(const std::string& kind, int length) {
    if (!known_window(kind))
        fail(Status::Argument, "unknown window '" + kind + "' (windows: hamming, bartlett, none)");
    std::vector<float> w(std::size_t(std::max(length, 0)));
    for (int i = 0; i < length; ++i) {
        const double t = (double(i) + 0.5) / length;
        double v = 1.0;
        if (kind == "hamming") v = 0.54 - 0.46 * std::cos((2.0 * M_PI) * t);
        else if (kind == "bartlett") v = 1.0 - std::fabs(2.0 * t - 1.0);
        w[std::size_t(i)] = float(v);
    }
    return w;
}

CpuBlender::CpuBlender(int channels, int height, int width, std::vector<float> wy, std::vector<float> wx)
    : channels_(channels), height_(height), width_(width), ph_(int(wy.size())), pw_(int(wx.size())) {
    window_.resize(wy.size() * wx.size());
    for (int y = 0; y < ph_; ++y)
        for (int x = 0; x < pw_; ++x) window_[std::size_t(y) * pw_ + x] = wy[std::size_t(y)] * wx[std::size_t(x)];
    canvas_.assign(std::size_t(channels) * height * width, 0.0f);
    weight_.assign(std::size_t(height) * width, 0.0f);
}

void CpuBlender::add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) {
    const std::size_t plane = std::size_t(ph_) * pw_, cplane = std::size_t(height_) * width_;
    for (int b = 0; b < n; ++b) {
        const int top = offsets[std::size_t(b)].first, left = offsets[std::size_t(b)].second;
        if (top < 0 || left < 0 || top + ph_ > height_ || left + pw_ > width_)
            fail(Status::Internal, "patch outside the canvas");
        const float* patch = patches + std::size_t(b) * channels_ * plane;
        for (int c = 0; c < channels_; ++c) {
            for (int y = 0; y < ph_; ++y) {
                float* row = canvas_.data() + c * cplane + std::size_t(top + y) * width_ + left;
                const float* src = patch + c * plane + std::size_t(y) * pw_;
                const float* win = window_.data() + std::size_t(y) * pw_;
                for (int x = 0; x < pw_; ++x) row[x] += src[x] * win[x];
            }
        }
        for (int y = 0; y < ph_; ++y) {
            float* row = weight_.data() + std::size_t(top + y) * width_ + left;
            const float* win = window_.data() + std::size_t(y) * pw_;
            for (int x = 0; x < pw_; ++x) row[x] += win[x];
        }
    }
}

std::vector<float> CpuBlender::result(int height, int width) {
    std::vector<float> out(std::size_t(channels_) * height * width);
    const std::size_t cplane = std::size_t(height_) * width_;
    for (int c = 0; c < channels_; ++c)
        for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x) {
                const std::size_t i = std::size_t(y) * width_ + x;
                out[(std::size_t(c) * height + y) * width + x] = canvas_[c * cplane + i] / weight_[i];
            }
    return out;
}

namespace {
// numpy.pad(mode="reflect") on the high side, any pad length: the reflection is periodic
// with period 2 (n - 1).
int reflect_index(int i, int n, bool edge) {
    if (i < n) return i;
    if (edge || n == 1) return n - 1;
    const int m = 2 * (n - 1), j = i % m;
    return j < n ? j : m - j;
}
}  // namespace

std::vector<float> reflect_pad(const float* planes, int channels, int height, int width, int bottom, int right) {
    const int oh = height + bottom, ow = width + right;
    const bool edge = std::min(height, width) <= 1;  // numpy: "reflect" if min(H, W) > 1 else "edge"
    std::vector<float> out(std::size_t(channels) * oh * ow);
    std::vector<int> cols(static_cast<std::size_t>(ow));
    for (int x = 0; x < ow; ++x) cols[std::size_t(x)] = reflect_index(x, width, edge);
    for (int c = 0; c < channels; ++c)
        for (int y = 0; y < oh; ++y) {
            const float* src = planes + (std::size_t(c) * height + reflect_index(y, height, edge)) * width;
            float* dst = out.data() + (std::size_t(c) * oh + y) * ow;
            for (int x = 0; x < ow; ++x) dst[x] = src[cols[std::size_t(x)]];
        }
    return out;
}

}  // namespace detail
}  // namespace srexport
