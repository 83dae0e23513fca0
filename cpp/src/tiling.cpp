// Tiling, windows, blending and padding: the twins of srexport/runtime/tiler.py,
// blend.py and padding.py. Float32 products and sums in the Python order (the library
// is compiled with -ffp-contract=off, so no fused multiply-adds change the last bits).
#include <algorithm>
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

std::vector<int> axis_cuts(const std::vector<int>& starts, int patch, int length) {
    // Tile i owns [cuts[i], cuts[i + 1]): each cut in the middle of its two tiles' overlap, so
    // with an overlap of at least 2 * halo every owned pixel lies at least a halo away from the
    // edges of its tile that are not image edges.
    std::vector<int> cuts{0};
    for (std::size_t i = 1; i < starts.size(); ++i)
        cuts.push_back(starts[i] + (starts[i - 1] + patch - starts[i]) / 2);
    cuts.push_back(length);
    return cuts;
}

int split_pad(int extra, const std::string& align) {
    if (align == "split") return (extra + 1) / 2;
    if (align == "end") return 0;
    fail(Status::Shape, "unknown pad_align '" + align + "' (end or split)");
}

int legal_patch(int requested, const ShapeRules& rules) {
    if (requested < rules.min_size)
        fail(Status::Shape, "patch " + std::to_string(requested) + " is smaller than the model's minimum " +
                                std::to_string(rules.min_size));
    return rules.legal_at_least(requested);
}

namespace {
void check_image(int height, int width) {
    if (height < 1 || width < 1)
        fail(Status::Shape, "empty image (" + std::to_string(height) + "x" + std::to_string(width) + ")");
}

// One patch covering the whole image is cheaper than several overlapping ones.
std::pair<int, int> fit(int height, int width, int patch_h, int patch_w, const ShapeRules& rules) {
    const int ph = legal_patch(patch_h, rules), pw = legal_patch(patch_w, rules);
    return {std::min(ph, rules.legal_at_least(height)), std::min(pw, rules.legal_at_least(width))};
}

TilePlan base_plan(int height, int width, int ph, int pw, const ShapeRules& rules) {
    TilePlan plan;
    plan.height = height, plan.width = width, plan.patch_h = ph, plan.patch_w = pw;
    plan.extra_h = std::max(0, ph - height), plan.extra_w = std::max(0, pw - width);
    plan.before_h = split_pad(plan.extra_h, rules.pad_align);
    plan.before_w = split_pad(plan.extra_w, rules.pad_align);
    return plan;
}
}  // namespace

TilePlan plan_tiles(int height, int width, int patch_h, int patch_w, int overlap, const ShapeRules& rules) {
    check_image(height, width);
    const int lh = legal_patch(patch_h, rules), lw = legal_patch(patch_w, rules);
    if (overlap < 0 || overlap >= std::min(lh, lw))
        fail(Status::Shape, "overlap " + std::to_string(overlap) + " must be >= 0 and smaller than the patch (" +
                                std::to_string(lh) + "x" + std::to_string(lw) + ")");
    const auto [ph, pw] = fit(height, width, patch_h, patch_w, rules);
    TilePlan plan = base_plan(height, width, ph, pw, rules);
    const auto rows = axis_starts(height + plan.extra_h, ph, overlap);
    const auto cols = axis_starts(width + plan.extra_w, pw, overlap);
    for (int top : rows)
        for (int left : cols) plan.tiles.emplace_back(top, left);
    return plan;
}

int crop_overlap(const ShapeRules& rules) {
    if (!rules.halo)
        fail(Status::Shape, "crop stitching needs a finite receptive field (the model's halo is unknown)");
    return 2 * *rules.halo;
}

bool crop_patch_ok(int patch_h, int patch_w, const ShapeRules& rules) {
    return rules.halo && std::min(legal_patch(patch_h, rules), legal_patch(patch_w, rules)) > 2 * *rules.halo;
}

TilePlan plan_crop(int height, int width, int patch_h, int patch_w, const ShapeRules& rules) {
    check_image(height, width);
    const int overlap = crop_overlap(rules);
    const auto [ph, pw] = fit(height, width, patch_h, patch_w, rules);
    for (const auto& [p, length] : {std::pair<int, int>{ph, height}, std::pair<int, int>{pw, width}})
        if (p < length && p <= overlap)
            fail(Status::Shape, "patch " + std::to_string(p) + " is too small for crop stitching: it must exceed "
                                "twice the halo (" + std::to_string(overlap) + "); use a larger patch or stitch blend");
    TilePlan plan = base_plan(height, width, ph, pw, rules);
    const auto rows = axis_starts(height + plan.extra_h, ph, overlap);
    const auto cols = axis_starts(width + plan.extra_w, pw, overlap);
    const auto row_cuts = axis_cuts(rows, ph, height + plan.extra_h);
    const auto col_cuts = axis_cuts(cols, pw, width + plan.extra_w);
    for (std::size_t i = 0; i < rows.size(); ++i)
        for (std::size_t j = 0; j < cols.size(); ++j) {
            plan.tiles.emplace_back(rows[i], cols[j]);
            plan.owned.push_back({row_cuts[i], row_cuts[i + 1], col_cuts[j], col_cuts[j + 1]});
        }
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

std::vector<float> CpuBlender::result(int top, int left, int height, int width) {
    if (top < 0 || left < 0 || top + height > height_ || left + width > width_)
        fail(Status::Internal, "result region outside the canvas");
    std::vector<float> out(std::size_t(channels_) * height * width);
    const std::size_t cplane = std::size_t(height_) * width_;
    for (int c = 0; c < channels_; ++c)
        for (int y = 0; y < height; ++y)
            for (int x = 0; x < width; ++x) {
                const std::size_t i = std::size_t(top + y) * width_ + left + x;
                out[(std::size_t(c) * height + y) * width + x] = canvas_[c * cplane + i] / weight_[i];
            }
    return out;
}

CropStitcher::CropStitcher(int channels, const TilePlan& plan, int scale)
    : channels_(channels), s_(scale), plan_(plan),
      canvas_(std::size_t(channels) * scale * plan.height * scale * plan.width) {
    for (std::size_t i = 0; i < plan.tiles.size(); ++i)
        index_.push_back({{scale * plan.tiles[i].first, scale * plan.tiles[i].second}, i});
    std::sort(index_.begin(), index_.end());
}

void CropStitcher::add(const float* patches, int n, const std::vector<std::pair<int, int>>& offsets) {
    const TilePlan& p = plan_;
    const int s = s_, oph = s * p.patch_h, opw = s * p.patch_w, oh = s * p.height, ow = s * p.width;
    const std::size_t plane = std::size_t(oph) * opw, cplane = std::size_t(oh) * ow;
    for (int b = 0; b < n; ++b) {
        const auto key = offsets[std::size_t(b)];
        const auto found = std::lower_bound(index_.begin(), index_.end(), std::make_pair(key, std::size_t(0)));
        if (found == index_.end() || found->first != key) fail(Status::Internal, "patch at no tile of the plan");
        const std::size_t index = found->second;
        const int top = p.tiles[index].first, left = p.tiles[index].second;
        const Rect& r = p.owned[index];
        // The owned rectangle within the image (the plan's coordinates include the padding).
        const int y0 = std::max(r.top, p.before_h), y1 = std::min(r.bottom, p.before_h + p.height);
        const int x0 = std::max(r.left, p.before_w), x1 = std::min(r.right, p.before_w + p.width);
        if (y1 <= y0 || x1 <= x0) continue;
        const float* patch = patches + std::size_t(b) * channels_ * plane;
        const int width = s * (x1 - x0);
        for (int c = 0; c < channels_; ++c)
            for (int y = s * y0; y < s * y1; ++y) {
                const float* src = patch + c * plane + std::size_t(y - s * top) * opw + (s * x0 - s * left);
                float* dst = canvas_.data() + c * cplane + std::size_t(y - s * p.before_h) * ow + (s * x0 - s * p.before_w);
                std::copy(src, src + width, dst);
            }
    }
}

std::vector<float> CropStitcher::result(int top, int left, int height, int width) {
    // The canvas holds the image only: the caller asks for the image's region of the padded plan.
    if (top != s_ * plan_.before_h || left != s_ * plan_.before_w || height != s_ * plan_.height ||
        width != s_ * plan_.width)
        fail(Status::Internal, "crop stitcher asked for another region than the image");
    return std::move(canvas_);
}

namespace {
// numpy.pad(mode="reflect"), any pad length on either side: the reflection is periodic
// with period 2 (n - 1) (index -k mirrors to k).
int reflect_index(int i, int n, bool edge) {
    if (i >= 0 && i < n) return i;
    if (edge || n == 1) return i < 0 ? 0 : n - 1;
    const int m = 2 * (n - 1);
    int j = i % m;
    if (j < 0) j += m;
    return j < n ? j : m - j;
}
}  // namespace

std::vector<float> reflect_pad(const float* planes, int channels, int height, int width, int top, int bottom,
                               int left, int right) {
    const int oh = height + top + bottom, ow = width + left + right;
    const bool edge = std::min(height, width) <= 1;  // numpy: "reflect" if min(H, W) > 1 else "edge"
    std::vector<float> out(std::size_t(channels) * oh * ow);
    std::vector<int> cols(static_cast<std::size_t>(ow));
    for (int x = 0; x < ow; ++x) cols[std::size_t(x)] = reflect_index(x - left, width, edge);
    for (int c = 0; c < channels; ++c)
        for (int y = 0; y < oh; ++y) {
            const float* src = planes + (std::size_t(c) * height + reflect_index(y - top, height, edge)) * width;
            float* dst = out.data() + (std::size_t(c) * oh + y) * ow;
            if (left == 0 && right == 0) {
                std::copy(src, src + width, dst);
                continue;
            }
            for (int x = 0; x < ow; ++x) dst[x] = src[cols[std::size_t(x)]];
        }
    return out;
}

}  // namespace detail
}  // namespace srexport
